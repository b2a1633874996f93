"""Read and validate the dialogue minimal-pair CSVs (CHILDES, communicative-baby DPO format).

Format (see ../shared/data/README.md): a header `,pospair,negpair`, the first column a row index;
`pospair` is `<caregiver turn>\\t<the child's real answer>`, `negpair` the same caregiver turn, a tab,
and a length-matched child answer from elsewhere. Turns carry their CHILDES speaker tag (`*MOT:`,
`*CHI:`); the caregiver tag is treated as data.

Every row is validated. By default the first bad row stops the read with a message naming the file,
the line, the row and the field; with `skip_invalid=True` bad rows are skipped and counted by kind
(the kinds are the keys of PROBLEMS), so a card can say exactly what was left out.
"""

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from hub_tools.dialogue import speaker_of, strip_tag
from hub_tools.errors import BabyhubError

REQUIRED_COLUMNS = ("pospair", "negpair")
# A small made-up CSV in the same format, for the offline demo and tests (not CHILDES data).
SAMPLE_PAIRS = Path(__file__).resolve().parent / "sample_data" / "sample_pairs.csv"
SAMPLE_TRAIN_ROWS = 240

# kind -> (what is wrong, what to do). The kinds are stable: cards and reports count skipped rows by them.
PROBLEMS = {
    "undecodable": ("contains bytes that are not valid UTF-8", "re-save the file as UTF-8"),
    "missing_column": ("has fewer fields than the header", "add the missing field (quote fields that contain commas)"),
    "extra_column": (
        "has more fields than the header",
        'quote fields that contain commas ("...") or remove the extra field',
    ),
    "tab_count": (
        "does not contain exactly one tab between the caregiver turn and the child turn",
        "write the field as `*MOT: <utterance>\\t*CHI: <utterance>` with exactly one tab",
    ),
    "empty_turn": ("has an empty turn", "fill in the utterance or remove the row"),
    "missing_tag": (
        "has a turn without a speaker tag",
        "start the turn with its CHILDES speaker tag, e.g. `*CHI: ` or `*MOT: `",
    ),
    "prompt_mismatch": (
        "has a caregiver turn in `negpair` that differs from the one in `pospair`",
        "use the same caregiver turn in both fields",
    ),
}
# Lone surrogates come from bytes that are not UTF-8 (read with errors="surrogateescape").
_UNDECODABLE = re.compile("[\udc80-\udcff]")


@dataclass(frozen=True)
class MinimalPair:
    """One dialogue minimal pair; `row` is the 0-based data row of the CSV (the published split index)."""

    row: int
    prompt: str
    chosen: str
    rejected: str


@dataclass
class MinimalPairsRead:
    """The valid pairs of a CSV, and how many rows of each problem kind were skipped."""

    pairs: list[MinimalPair]
    rows_read: int = 0
    skipped_rows: list[tuple[int, str]] = field(default_factory=list)  # (data row, kind)

    @property
    def skipped(self) -> dict[str, int]:
        """Skipped rows per problem kind."""
        return self.skipped_in(0, None)

    @property
    def skipped_total(self) -> int:
        return len(self.skipped_rows)

    def skipped_in(self, lo: int, hi: int | None) -> dict[str, int]:
        """Skipped rows per problem kind among the data rows [lo, hi) (hi None: to the end)."""
        counts: dict[str, int] = {}
        for row, kind in self.skipped_rows:
            if in_rows(row, lo, hi):
                counts[kind] = counts.get(kind, 0) + 1
        return counts


def in_rows(row: int, lo: int, hi: int | None) -> bool:
    """Whether data row `row` is in [lo, hi) (hi None: to the end): how splits are cut by CSV row number."""
    return row >= lo and (hi is None or row < hi)


class InvalidRow(BabyhubError):
    """A row of a minimal-pair CSV that does not follow the format."""

    def __init__(self, path: Path, line: int, row: int, column: str, kind: str, detail: str = ""):
        problem, fix = PROBLEMS[kind]
        where = f"{path}: line {line} (data row {row}), field {column!r}"
        detail = f" ({detail})" if detail else ""
        super().__init__(f"{where} {problem}{detail}: {fix}. Nothing was written.")
        self.path, self.line, self.row, self.column, self.kind = path, line, row, column, kind


def _split_turns(path: Path, line: int, row: int, column: str, text: str) -> tuple[str, str]:
    """Split one field into (caregiver turn, child turn), both stripped and checked."""
    if text.count("\t") != 1:
        raise InvalidRow(path, line, row, column, "tab_count", f"found {text.count(chr(9))} tabs")
    turns = tuple(t.strip() for t in text.split("\t"))
    for which, turn in zip(("caregiver", "child"), turns, strict=True):
        if not turn or not strip_tag(turn):
            raise InvalidRow(path, line, row, column, "empty_turn", f"{which} turn {turn!r}")
        if speaker_of(turn) is None:
            raise InvalidRow(path, line, row, column, "missing_tag", f"{which} turn {_short(turn)!r}")
    return turns


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_row(path: Path, line: int, row: int, header: list[str], values: list[str]) -> MinimalPair:
    for column, value in zip(header, values, strict=False):
        bad = _UNDECODABLE.search(value)
        if bad:
            raise InvalidRow(
                path, line, row, column or "index", "undecodable", f"byte 0x{ord(bad.group()) - 0xDC00:02x}"
            )
    if len(values) < len(header):
        missing = ", ".join(repr(c) for c in header[len(values) :])
        raise InvalidRow(path, line, row, header[len(values)], "missing_column", f"missing {missing}")
    if len(values) > len(header):
        raise InvalidRow(path, line, row, f"#{len(header) + 1}", "extra_column", f"{len(values)} fields")
    fields = dict(zip(header, values, strict=True))
    prompt, chosen = _split_turns(path, line, row, "pospair", fields["pospair"])
    negative_prompt, rejected = _split_turns(path, line, row, "negpair", fields["negpair"])
    if negative_prompt != prompt:
        raise InvalidRow(
            path, line, row, "negpair", "prompt_mismatch", f"{_short(negative_prompt)!r} vs {_short(prompt)!r}"
        )
    return MinimalPair(row=row, prompt=prompt, chosen=chosen, rejected=rejected)


def read_minimal_pairs(path: str | Path, *, skip_invalid: bool = False) -> MinimalPairsRead:
    """Read a minimal-pair CSV into MinimalPair records (caregiver turn, real answer, mismatched answer).

    Raises BabyhubError (an InvalidRow) on the first bad row unless `skip_invalid`, in which case bad rows are
    left out and counted per kind in `.skipped`. A missing file or a header without `pospair`/`negpair` is
    always an error: there is nothing to skip to.
    """
    path = Path(path)
    if not path.is_file():
        raise BabyhubError(
            f"{path}: no such file; pass the path of a minimal-pair CSV (e.g. len_pairs_no_overlap_1.csv)."
        )
    pairs: list[MinimalPair] = []
    skipped_rows: list[tuple[int, str]] = []
    # surrogateescape keeps undecodable bytes as lone surrogates, so they are reported per row, not per file.
    with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise BabyhubError(f"{path}: the file is empty; expected a header `,pospair,negpair` and data rows.")
        header = [h.strip() for h in header]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise BabyhubError(
                f"{path}: line 1 (header) lacks the column(s) {', '.join(map(repr, missing))}; "
                f"found {header}. The header must be `,pospair,negpair`. Nothing was written."
            )
        row = -1
        for values in reader:
            if not values:  # a blank line is not a row (csv yields [] for it)
                continue
            row += 1
            try:
                pairs.append(_check_row(path, reader.line_num, row, header, values))
            except InvalidRow as err:
                if not skip_invalid:
                    raise
                skipped_rows.append((row, err.kind))
    return MinimalPairsRead(pairs=pairs, rows_read=row + 1, skipped_rows=skipped_rows)
