"""`build_preference_datasets` on the real CSVs: the published convention row for row, leakage, formats, atomicity."""

import datasets
import pandas as pd
import pytest

from hub_tools.data.preferences import (
    EVAL_NAME,
    EVAL_TOKENS_NAME,
    TRAIN_NAME,
    build_preference_datasets,
    read_preferences,
)
from hub_tools.errors import BabyhubError
from tests.conftest import LEN_PAIRS, TOK_PAIRS
from tests.test_minpairs import BAD_ROWS, VALID, _write_csv


def published_rule(csv_path, lo, hi=None) -> list[dict]:
    """The README's rule, implemented independently with pandas: rows [lo, hi), each side stripped."""
    frame = pd.read_csv(csv_path, index_col=0, keep_default_na=False).iloc[lo:hi]
    pos = frame["pospair"].str.split("\t", expand=True)
    neg = frame["negpair"].str.split("\t", expand=True)
    return pd.DataFrame(
        {"prompt": pos[0].str.strip(), "chosen": pos[1].str.strip(), "rejected": neg[1].str.strip()}
    ).to_dict("records")


def load_rows(folder) -> list[dict]:
    return datasets.load_dataset(str(folder))["train"].to_list()


def test_real_build_reproduces_the_published_splits(preference_dirs):
    train, evaluation, tokens = (
        load_rows(f) for f in (preference_dirs.train, preference_dirs.eval, preference_dirs.eval_tokens)
    )
    assert (len(train), len(evaluation), len(tokens)) == (18_000, 7_548, 7_520)
    assert train == published_rule(LEN_PAIRS, 0, 18_000)
    assert evaluation == published_rule(LEN_PAIRS, 18_000)
    assert tokens == published_rule(TOK_PAIRS, 18_000)
    assert train[0] == {
        "prompt": "*MOT: what is that ?",
        "chosen": "*CHI: it looks like a gun .",
        "rejected": "*CHI: you do it like that .",
    }


def test_leakage_report_on_the_real_data(preference_dirs):
    leak = preference_dirs.splits[EVAL_NAME].leakage
    assert (leak.prompt_rows, leak.pair_rows, leak.removed) == (1_525, 39, 0)
    assert preference_dirs.splits[TRAIN_NAME].leakage is None
    card = (preference_dirs.eval / "README.md").read_text()
    assert "**1,525**" in card and "**39**" in card
    summary = preference_dirs.summary()
    assert "1,525 rows share a prompt" in summary and "39 rows share (prompt, chosen)" in summary


def test_small_train_dir_is_the_first_200_training_rows(small_train_dir, preference_dirs):
    assert small_train_dir.name == TRAIN_NAME and (small_train_dir / "README.md").is_file()
    assert load_rows(small_train_dir) == load_rows(preference_dirs.train)[:200]


def test_plain_format_and_dedupe_eval(tmp_path, shared_data):
    report = build_preference_datasets(LEN_PAIRS, tmp_path / "out", text_format="plain", dedupe_eval=True)
    train, evaluation = load_rows(report.train), load_rows(report.eval)
    assert len(train) == 18_000 and len(evaluation) == 7_548 - 39
    assert train[0] == {
        "prompt": "what is that ?",
        "chosen": "it looks like a gun .",
        "rejected": "you do it like that .",
    }
    # one convention for every split: no speaker tag anywhere
    assert not any(v.startswith("*") and ":" in v[:6] for row in train + evaluation for v in row.values())
    assert not {(r["prompt"], r["chosen"]) for r in train} & {(r["prompt"], r["chosen"]) for r in evaluation}
    assert report.splits[EVAL_NAME].leakage.removed == 39
    card = (report.eval / "README.md").read_text()
    assert "`--dedupe-eval`: the 39 rows" in card and "`--format plain`" in card
    assert not (tmp_path / "out" / EVAL_TOKENS_NAME).exists()


def test_skipped_rows_keep_the_split_positional_and_are_recorded(tmp_path):
    bad = _write_csv(tmp_path / "bad.csv", {2: BAD_ROWS["tab_count"][0].replace("3,", "2,", 1)})
    with pytest.raises(BabyhubError):
        build_preference_datasets(bad, tmp_path / "strict", train_rows=5)
    assert not (tmp_path / "strict").exists()
    report = build_preference_datasets(bad, tmp_path / "out", train_rows=5, skip_invalid=True)
    # row 2 is skipped; rows 5..7 still form the evaluation split
    assert len(load_rows(report.train)) == 4 and len(load_rows(report.eval)) == 3
    assert report.splits[TRAIN_NAME].skipped == {"tab_count": 1} and report.splits[EVAL_NAME].skipped == {}
    assert "| tab_count | 1 |" in (report.train / "README.md").read_text()
    assert "1 invalid rows skipped (tab_count: 1)" in report.summary()


def test_rebuild_replaces_and_leaves_no_staging(tmp_path):
    out = tmp_path / "out"
    build_preference_datasets(VALID, out, train_rows=6)
    report = build_preference_datasets(VALID, out, train_rows=4)
    assert sorted(p.name for p in out.iterdir()) == [TRAIN_NAME, EVAL_NAME]
    assert len(load_rows(report.train)) == 4 and len(load_rows(report.eval)) == 4


def test_too_many_train_rows_is_an_error(tmp_path):
    with pytest.raises(
        BabyhubError, match=r"has 8 data rows, not more than the 8 training rows asked for.*fewer training rows"
    ):
        build_preference_datasets(VALID, tmp_path / "out", train_rows=8)
    with pytest.raises(BabyhubError, match="unknown text format 'xml'"):
        build_preference_datasets(VALID, tmp_path / "out", train_rows=4, text_format="xml")
    assert not (tmp_path / "out").exists()


def test_read_preferences_checks_the_split_and_the_columns(small_train_dir, tmp_path):
    # The one reader of a preference split (train_dpo, the baby bootstrap and synthesis all use it).
    rows = read_preferences(str(small_train_dir))
    assert rows.num_rows == 200 and {"prompt", "chosen", "rejected"} <= set(rows.column_names)
    with pytest.raises(BabyhubError, match=r"has no split 'test' \(splits: \['train'\]\)"):
        read_preferences(str(small_train_dir), split="test")
    no_rejected = tmp_path / "no-rejected"
    no_rejected.mkdir()
    pd.DataFrame({"prompt": ["*MOT: hi ."], "chosen": ["*CHI: hi ."]}).to_parquet(no_rejected / "train.parquet")
    with pytest.raises(BabyhubError, match=r"columns \['rejected'\] are missing"):
        read_preferences(str(no_rejected))
    with pytest.raises(BabyhubError, match=r"cannot load dataset .*missing.*Pass a folder built by"):
        read_preferences(str(tmp_path / "missing"))
