"""Reading and validating minimal-pair CSVs: every malformed-row kind, its message, and --skip-invalid counts."""

from pathlib import Path

import pandas as pd
import pytest

from hub_tools.cli import main
from hub_tools.data.minpairs import PROBLEMS, SAMPLE_PAIRS, InvalidRow, MinimalPair, read_minimal_pairs
from hub_tools.errors import BabyhubError
from tests.conftest import LEN_PAIRS

VALID = Path(__file__).parent / "data" / "pairs_valid.csv"
T = "\t"

# kind -> (the bad data row 3, the field the message must name, a fragment of the problem it must state)
BAD_ROWS = {
    "missing_column": (f"3,*MOT: are you hungry ?{T}*CHI: yes .", "negpair", "fewer fields than the header"),
    "extra_column": (
        f"3,*MOT: hi ?{T}*CHI: yes .,*MOT: hi ?{T}*CHI: no .,oops",
        "#4",
        "more fields than the header",
    ),
    "tab_count": (
        f"3,*MOT: are you hungry ? *CHI: yes .,*MOT: are you hungry ?{T}*CHI: no .",
        "pospair",
        "found 0 tabs",
    ),
    "empty_turn": (f"3,*MOT: are you hungry ?{T}*CHI: ,*MOT: are you hungry ?{T}*CHI: no .", "pospair", "empty turn"),
    "missing_tag": (
        f"3,*MOT: are you hungry ?{T}*CHI: yes .,*MOT: are you hungry ?{T}no more .",
        "negpair",
        "speaker tag",
    ),
    "prompt_mismatch": (
        f"3,*MOT: are you hungry ?{T}*CHI: yes .,*MOT: are you tired ?{T}*CHI: no .",
        "negpair",
        "differs from the one in `pospair`",
    ),
    "undecodable": (
        f"3,*MOT: are you hungry ?{T}*CHI: caf\udcc3 .,*MOT: are you hungry ?{T}*CHI: no .",
        "pospair",
        "UTF-8",
    ),
}


def _write_csv(path: Path, replacements: dict[int, str]) -> Path:
    """The valid fixture with some data rows replaced by bad ones (undecodable text written as raw bytes)."""
    lines = VALID.read_text(encoding="utf-8").splitlines()
    for row, text in replacements.items():
        lines[row + 1] = text
    path.write_bytes("\n".join(lines).encode("utf-8", errors="surrogateescape") + b"\n")
    return path


def test_valid_fixture_reads_into_stripped_records():
    read = read_minimal_pairs(VALID)
    assert read.rows_read == 8 and read.skipped == {}
    assert read.pairs[1] == MinimalPair(1, "*MOT: look , a bird !", "*CHI: bird fly away .", "*CHI: my shoe fell .")
    # trailing whitespace is stripped; a non-MOT caregiver tag is kept as data
    assert read.pairs[3].rejected == "*CHI: no more bath ."
    assert read.pairs[2].prompt == "*FAT: where is your hat ?"


def test_real_csv_reads_without_problems_and_matches_pandas(shared_data):
    read = read_minimal_pairs(LEN_PAIRS)
    assert read.rows_read == 25_548 and len(read.pairs) == 25_548 and read.skipped == {}
    # an independent reading: pandas' CSV parser, split at the tab
    frame = pd.read_csv(LEN_PAIRS, index_col=0, keep_default_na=False)
    for i in (0, 1, 17_999, 18_000, 25_547):
        pos, neg = frame.iloc[i]["pospair"].split("\t"), frame.iloc[i]["negpair"].split("\t")
        assert read.pairs[i] == MinimalPair(i, pos[0].strip(), pos[1].strip(), neg[1].strip())


@pytest.mark.parametrize("kind", sorted(BAD_ROWS))
def test_each_malformed_row_kind_stops_the_build_and_writes_nothing(kind, tmp_path, capsys):
    text, column, fragment = BAD_ROWS[kind]
    bad = _write_csv(tmp_path / f"{kind}.csv", {3: text})
    with pytest.raises(InvalidRow) as caught:
        read_minimal_pairs(bad)
    err = caught.value
    assert (err.kind, err.row, err.line, err.column) == (kind, 3, 5, column)
    message = str(err)
    for part in (str(bad), "line 5", "data row 3", f"field {column!r}", fragment, PROBLEMS[kind][1]):
        assert part in message
    assert "--skip-invalid" not in message  # the library names the value, never a flag

    # the CLI: exit code 2, the same message with the flag that skips such rows, and no output folder at all
    out = tmp_path / "out"
    assert main(["data", "build", "--pairs", str(bad), "--out", str(out), "--train-rows", "4"]) == 2
    err = capsys.readouterr().err
    assert message in err and "--skip-invalid" in err
    assert not out.exists()


def test_failed_rebuild_leaves_the_previous_build_untouched(tmp_path):
    out = tmp_path / "out"
    assert main(["data", "build", "--pairs", str(VALID), "--out", str(out), "--train-rows", "5"]) == 0
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    bad = _write_csv(tmp_path / "bad.csv", {6: BAD_ROWS["prompt_mismatch"][0].replace("3,", "6,", 1)})
    assert main(["data", "build", "--pairs", str(bad), "--out", str(out), "--train-rows", "5"]) == 2
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before


def test_skip_invalid_counts_every_kind(tmp_path):
    # rows 0..6 bad (one of each kind), row 7 valid
    kinds = sorted(BAD_ROWS)
    bad = _write_csv(tmp_path / "all.csv", {i: BAD_ROWS[k][0].replace("3,", f"{i},", 1) for i, k in enumerate(kinds)})
    with pytest.raises(InvalidRow):
        read_minimal_pairs(bad)
    read = read_minimal_pairs(bad, skip_invalid=True)
    assert read.skipped == {k: 1 for k in kinds}
    assert read.skipped_total == 7 and read.rows_read == 8
    assert [p.row for p in read.pairs] == [7]
    assert sorted(read.skipped_rows) == [(i, k) for i, k in enumerate(kinds)]


def test_file_level_problems_are_errors_even_with_skip_invalid(tmp_path):
    header = tmp_path / "header.csv"
    header.write_text(",pos,negpair\n0,a,b\n", encoding="utf-8")
    with pytest.raises(BabyhubError, match=r"header\.csv: line 1 \(header\) lacks the column\(s\) 'pospair'"):
        read_minimal_pairs(header, skip_invalid=True)
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(BabyhubError, match="empty"):
        read_minimal_pairs(empty, skip_invalid=True)
    with pytest.raises(BabyhubError, match="no such file"):
        read_minimal_pairs(tmp_path / "missing.csv")


def test_packaged_sample_is_valid_and_made_up(shared_data):
    read = read_minimal_pairs(SAMPLE_PAIRS)
    assert read.rows_read == 300 and read.skipped == {}
    # written for babyhub, not copied: none of its exchanges occurs in the real data
    real = {(p.prompt, p.chosen) for p in read_minimal_pairs(LEN_PAIRS).pairs}
    assert not real & {(p.prompt, p.chosen) for p in read.pairs}
