"""Build the DPO preference datasets from the dialogue minimal-pair CSVs, as Hub-ready folders.

    babyhub data build --pairs ../shared/data/minpairs/len_pairs_no_overlap_1.csv \\
        --tok-pairs ../shared/data/minpairs/tok_pairs_no_overlap_1.csv --out build/data

writes three folders, each a README.md card + data/train-00000-of-00001.parquet with columns
prompt/chosen/rejected (the published convention, see ../shared/data/README.md):

    child-dpo-preferences              rows [0, train_rows) of the word-length-matched CSV
    child-dpo-preferences-eval         its remaining rows
    child-dpo-preferences-eval-tokens  rows [train_rows, ...) of the token-length-matched CSV (if given)

Everything is read and validated before anything is written; the folders are built in a staging folder
inside the output folder and renamed into place, so a failed build leaves no half-written dataset behind.
"""

import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from hub_tools.data.minpairs import SAMPLE_PAIRS, SAMPLE_TRAIN_ROWS, MinimalPair, in_rows, read_minimal_pairs
from hub_tools.dialogue import strip_tag
from hub_tools.errors import BabyhubError

TRAIN_NAME = "child-dpo-preferences"
EVAL_NAME = "child-dpo-preferences-eval"
EVAL_TOKENS_NAME = "child-dpo-preferences-eval-tokens"
PUBLISHED_TRAIN_ROWS = 18_000
TEXT_FORMATS = ("tags", "plain")
COLUMNS = ("prompt", "chosen", "rejected")


def read_preferences(name: str, revision: str | None = None, split: str = "train"):
    """One split of a preference dataset (folder or Hub id), checked for prompt/chosen/rejected."""
    import datasets

    try:
        dataset = datasets.load_dataset(name, revision=revision)
    except Exception as err:  # datasets raises many types; all mean "cannot read this dataset"
        raise BabyhubError(
            f"cannot load dataset {name}{'@' + revision if revision else ''}: {err}. Pass a folder built by "
            "`babyhub data build` or a Hub dataset id."
        ) from err
    if split not in dataset:
        raise BabyhubError(f"{name} has no split {split!r} (splits: {list(dataset)}).")
    rows = dataset[split]
    missing = set(COLUMNS) - set(rows.column_names)
    if missing:
        raise BabyhubError(
            f"{name}: columns {sorted(missing)} are missing; a preference dataset has prompt, chosen, rejected."
        )
    return rows


@dataclass
class Leakage:
    """How much of an evaluation split also occurs in the training split (counted in evaluation rows)."""

    train_name: str
    train_rows: int
    prompt_rows: int  # eval rows whose prompt occurs in train
    unique_prompts: int  # distinct such prompts
    pair_rows: int  # eval rows whose (prompt, chosen) occurs in train
    removed: int = 0  # rows dropped by dedupe_eval


@dataclass
class SplitSummary:
    name: str
    folder: Path
    num_rows: int
    source: Path
    skipped: dict[str, int] = field(default_factory=dict)
    leakage: Leakage | None = None


@dataclass
class BuildReport:
    out_dir: Path
    text_format: str
    splits: dict[str, SplitSummary]
    seconds: float = 0.0

    @property
    def train(self) -> Path:
        return self.splits[TRAIN_NAME].folder

    @property
    def eval(self) -> Path:
        return self.splits[EVAL_NAME].folder

    @property
    def eval_tokens(self) -> Path | None:
        split = self.splits.get(EVAL_TOKENS_NAME)
        return split.folder if split else None

    def summary(self) -> str:
        """A few lines for the terminal: rows per folder, skipped rows, leakage."""
        lines = [
            f"built {len(self.splits)} datasets in {self.out_dir} ({self.seconds:.1f} s, format {self.text_format})"
        ]
        for split in self.splits.values():
            skipped = sum(split.skipped.values())
            line = f"  {split.name}: {split.num_rows:,} rows"
            if skipped:
                line += (
                    f", {skipped} invalid rows skipped ({', '.join(f'{k}: {v}' for k, v in split.skipped.items())})"
                )
            lines.append(line)
            if split.leakage:
                leak = split.leakage
                lines.append(
                    f"    overlap with {leak.train_name}: {leak.prompt_rows:,} rows share a prompt "
                    f"({leak.unique_prompts:,} distinct), {leak.pair_rows:,} rows share (prompt, chosen)"
                    + (f"; {leak.removed:,} removed by --dedupe-eval" if leak.removed else "")
                )
        return "\n".join(lines)


def format_pair(pair: MinimalPair, text_format: str) -> dict[str, str]:
    """One dataset row in the chosen text convention (tags kept, or plain utterances)."""
    if text_format == "plain":
        return {
            "prompt": strip_tag(pair.prompt),
            "chosen": strip_tag(pair.chosen),
            "rejected": strip_tag(pair.rejected),
        }
    return {"prompt": pair.prompt, "chosen": pair.chosen, "rejected": pair.rejected}


def measure_leakage(train: list[dict], evaluation: list[dict], train_name: str = TRAIN_NAME) -> Leakage:
    """Count evaluation rows whose prompt, or (prompt, chosen) pair, also occurs in training."""
    prompts = {row["prompt"] for row in train}
    pairs = {(row["prompt"], row["chosen"]) for row in train}
    shared = [row["prompt"] for row in evaluation if row["prompt"] in prompts]
    return Leakage(
        train_name=train_name,
        train_rows=len(train),
        prompt_rows=len(shared),
        unique_prompts=len(set(shared)),
        pair_rows=sum((row["prompt"], row["chosen"]) in pairs for row in evaluation),
    )


def drop_train_pairs(train: list[dict], evaluation: list[dict]) -> list[dict]:
    """The evaluation rows whose (prompt, chosen) pair does not occur in training."""
    pairs = {(row["prompt"], row["chosen"]) for row in train}
    return [row for row in evaluation if (row["prompt"], row["chosen"]) not in pairs]


def file_sha256(*paths: Path) -> str:
    """SHA-256 of the files' bytes, one after the other, read 1 MiB at a time."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for block in iter(lambda handle=handle: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def data_file_for(rows: list[dict]) -> str:
    """The parquet path of a split, named after a fingerprint of its rows.

    datasets 5.2 caches `load_dataset(local_folder)` under the folder's name and the card's `data_files`
    *patterns*, not the files' content: two different folders called child-dpo-preferences with `data/train-*`
    would share one cache entry and the second load would silently return the first one's rows. Naming the
    file after its content makes the card's `data_files` differ exactly when the rows differ.
    """
    digest = hashlib.sha256(json.dumps(rows, ensure_ascii=False, sort_keys=True).encode("utf-8")).hexdigest()
    return f"data/train-{digest[:16]}.parquet"


def write_dataset_folder(folder: Path, rows: list[dict], card, data_file: str) -> Path:
    """Write a Hub-layout dataset folder: README.md (the card) + the rows as one parquet file at data_file."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hub_tools.cards.dataset_card import write_card

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    columns = {name: [row[name] for row in rows] for name in rows[0]} if rows else {c: [] for c in COLUMNS}
    features = datasets.Features({name: datasets.Value("string") for name in columns})
    # The schema carries the datasets Features metadata, as Dataset.to_parquet writes it (minus its progress bar).
    pq.write_table(pa.table(columns, schema=features.arrow_schema), folder / data_file)
    write_card(card, folder)
    return folder


def install_folders(staging: Path, out_dir: Path, names: list[str]) -> None:
    """Move built folders from staging into out_dir, replacing older builds of the same name."""
    for name in names:
        target = out_dir / name
        if target.exists():
            target.rename(staging / f"{name}.old")
        (staging / name).rename(target)


def source_and_train_rows(pairs_csv: str | Path | None, train_rows: int | None = None) -> tuple[Path, int]:
    """The CSV a build reads and the number of rows [0, N) that form its training split.

    Without a CSV: babyhub's small made-up sample (for demos and first looks, never research) and its 240
    training rows; with one, the published 18,000 rows, unless `train_rows` says otherwise.
    """
    if pairs_csv is None:
        return SAMPLE_PAIRS, SAMPLE_TRAIN_ROWS if train_rows is None else train_rows
    return Path(pairs_csv), PUBLISHED_TRAIN_ROWS if train_rows is None else train_rows


def _rows_description(name: str, train_rows: int, rows_read: int) -> str:
    if name == TRAIN_NAME:
        return f"rows 0–{train_rows - 1:,} of the source file"
    return f"rows {train_rows:,}–{rows_read - 1:,} of the source file"


def build_preference_datasets(
    pairs_csv: str | Path | None,
    out_dir: str | Path,
    *,
    tok_pairs_csv: str | Path | None = None,
    train_rows: int | None = None,
    text_format: str = "tags",
    skip_invalid: bool = False,
    dedupe_eval: bool = False,
) -> BuildReport:
    """Build child-dpo-preferences (+ -eval, + -eval-tokens) under out_dir; see the module docstring.

    Args:
        pairs_csv: the word-length-matched minimal-pair CSV; None builds from babyhub's made-up sample.
        out_dir: the folder that receives the dataset folders (created; older builds of them are replaced).
        tok_pairs_csv: the token-length-matched CSV, for the `-eval-tokens` split (optional).
        train_rows: rows [0, N) of each CSV form the training split (default: 18,000 as published; 240 for the
            sample); the rest is for evaluation.
        text_format: `tags` (keep the CHILDES speaker tags, as published) or `plain`.
        skip_invalid: skip invalid rows and count them per kind in the cards, instead of stopping at the first.
        dedupe_eval: drop evaluation rows whose (prompt, chosen) pair also occurs in training.

    Returns:
        A `BuildReport`: each split's folder, rows, skipped rows and overlap with training.
    """
    from hub_tools.cards.dataset_card import render_preference_card

    start = time.perf_counter()
    pairs_csv, train_rows = source_and_train_rows(pairs_csv, train_rows)
    if text_format not in TEXT_FORMATS:
        raise BabyhubError(f"unknown text format {text_format!r}: use one of {', '.join(TEXT_FORMATS)}.")
    if train_rows < 1:
        raise BabyhubError(f"the training split must have at least 1 row (asked for {train_rows}).")
    out_dir = Path(out_dir)
    sources = [(pairs_csv, [TRAIN_NAME, EVAL_NAME])]
    if tok_pairs_csv is not None:
        sources.append((Path(tok_pairs_csv), [EVAL_TOKENS_NAME]))

    # 1. read and validate every source before writing anything
    reads = {path: read_minimal_pairs(path, skip_invalid=skip_invalid) for path, _ in sources}
    for path, _ in sources:
        if reads[path].rows_read <= train_rows:
            raise BabyhubError(
                f"{path} has {reads[path].rows_read} data rows, not more than the {train_rows} training rows asked "
                "for: nothing would be left for evaluation. Ask for fewer training rows."
            )

    # 2. split by the published rule: the source row number decides, so a skipped row never shifts the split
    ranges = {name: (0, train_rows) if name == TRAIN_NAME else (train_rows, None) for _, names in sources
              for name in names}  # fmt: skip
    rows = {
        name: [format_pair(p, text_format) for p in reads[path].pairs if in_rows(p.row, *ranges[name])]
        for path, names in sources
        for name in names
    }

    # 3. measure leakage of each evaluation split against training; dedupe_eval drops shared (prompt, chosen)
    leakage: dict[str, Leakage] = {}
    for name in rows:
        if name == TRAIN_NAME:
            continue
        leakage[name] = measure_leakage(rows[TRAIN_NAME], rows[name])
        if dedupe_eval:
            kept = drop_train_pairs(rows[TRAIN_NAME], rows[name])
            leakage[name].removed = len(rows[name]) - len(kept)
            rows[name] = kept

    # 4. build every folder in a staging folder beside the output, then rename into place
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=out_dir))
    splits: dict[str, SplitSummary] = {}
    try:
        for path, names in sources:
            read, sha256 = reads[path], file_sha256(path)
            for name in names:
                skipped = read.skipped_in(*ranges[name])
                data_file = data_file_for(rows[name])
                card = render_preference_card(
                    "training" if name == TRAIN_NAME else "evaluation",
                    rows[name],
                    path,
                    made_up=path.resolve() == SAMPLE_PAIRS.resolve(),
                    rows_read=read.rows_read,
                    rows_description=_rows_description(name, train_rows, read.rows_read),
                    token_matched=name == EVAL_TOKENS_NAME,
                    train_rows=train_rows,
                    text_format=text_format,
                    sha256=sha256,
                    skipped=skipped,
                    leakage=leakage.get(name),
                    family=list(rows),
                    data_file=data_file,
                )
                write_dataset_folder(staging / name, rows[name], card, data_file)
                splits[name] = SplitSummary(name, out_dir / name, len(rows[name]), path, skipped, leakage.get(name))
        install_folders(staging, out_dir, list(splits))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return BuildReport(out_dir, text_format, splits, time.perf_counter() - start)
