"""The `babyhub data build` and `babyhub push` commands, end to end (push through the local hub)."""

import datasets
import pytest
from huggingface_hub import HfApi

from hub_tools.cli import main
from hub_tools.data.preferences import EVAL_NAME, TRAIN_NAME
from tests.test_minpairs import BAD_ROWS, VALID, _write_csv

# `data synthesize` with a training folder and a teacher that are never reached: the flags are checked first.
SYNTHESIZE = ["data", "synthesize", "--train", "{tmp}", "--teacher", "x/y", "--out", "{tmp}/out"]


def load_rows(path: str) -> list[dict]:
    return datasets.load_dataset(path)["train"].to_list()


def test_build_without_pairs_uses_the_made_up_sample(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["data", "build", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "made-up sample" in printed and f"{TRAIN_NAME}: 240 rows" in printed and f"{EVAL_NAME}: 60 rows" in printed
    assert len(load_rows(str(out / TRAIN_NAME))) == 240
    assert "**Made-up data.**" in (out / TRAIN_NAME / "README.md").read_text()


def test_build_flags_reach_the_build(tmp_path, capsys):
    # row 6 is invalid; row 7 repeats row 0 (a training row), so --dedupe-eval removes it from eval
    row0 = VALID.read_text(encoding="utf-8").splitlines()[1]
    bad = _write_csv(tmp_path / "bad.csv", {6: BAD_ROWS["empty_turn"][0].replace("3,", "6,", 1), 7: "7" + row0[1:]})
    out = tmp_path / "out"
    argv = [
        "data",
        "build",
        "--pairs",
        str(bad),
        "--out",
        str(out),
        "--train-rows",
        "4",
        "--format",
        "plain",
        "--skip-invalid",
        "--dedupe-eval",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "format plain" in printed and "1 invalid rows skipped (empty_turn: 1)" in printed
    assert "1 removed by --dedupe-eval" in printed
    assert load_rows(str(out / EVAL_NAME)) == [
        {"prompt": "what does a cow say ?", "chosen": "moo !", "rejected": "again !"},
        {"prompt": "do you want to go outside ?", "chosen": "yeah I go swing .", "rejected": "Daddy has it ."},
    ]


def test_push_loads_through_the_hub_and_a_repush_makes_no_commit(local_hub, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["data", "build", "--pairs", str(VALID), "--out", str(out), "--train-rows", "5"]) == 0
    folder = out / TRAIN_NAME
    repo_id = "babyhub-tests/data-push-train"
    assert main(["push", str(folder), "--repo-id", repo_id, "--repo-type", "dataset"]) == 0
    assert "as commit" in capsys.readouterr().out
    # the real datasets client, through HF_ENDPOINT, reads exactly the local rows
    assert load_rows(repo_id) == load_rows(str(folder))
    api = HfApi()
    commits = len(api.list_repo_commits(repo_id, repo_type="dataset"))
    assert main(["push", str(folder), "--repo-id", repo_id, "--repo-type", "dataset"]) == 0
    assert "already up to date" in capsys.readouterr().out
    assert len(api.list_repo_commits(repo_id, repo_type="dataset")) == commits
    card = api.hf_hub_download(repo_id, "README.md", repo_type="dataset")
    assert open(card, encoding="utf-8").read() == (folder / "README.md").read_text(encoding="utf-8")


def test_push_private(local_hub, tmp_path):
    out = tmp_path / "out"
    assert main(["data", "build", "--pairs", str(VALID), "--out", str(out), "--train-rows", "5"]) == 0
    repo_id = "babyhub-tests/data-push-private"
    assert main(["push", str(out / EVAL_NAME), "--repo-id", repo_id, "--repo-type", "dataset", "--private"]) == 0
    assert HfApi().dataset_info(repo_id).private is True


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["push", "{tmp}/missing", "--repo-id", "a/b"], "is not a folder"),
        (["push", "{tmp}", "--repo-id", "no-namespace"], "must be NAMESPACE/NAME"),
    ],
)
def test_push_rejects_bad_arguments(argv, message, tmp_path, capsys):
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        # Zero is refused, not taken for the default.
        (["data", "build", "--train-rows", "0", "--out", "{tmp}/out"], "--train-rows must be at least 1 (got 0)"),
        ([*SYNTHESIZE, "--max-words", "0"], "--max-words must be at least 1 (got 0)"),
        ([*SYNTHESIZE, "--limit", "0"], "--limit must be at least 1 (got 0)"),
        ([*SYNTHESIZE, "--top-k", "0"], "--top-k must be at least 1 (got 0)"),
        # The sampling and format flags are checked too.
        ([*SYNTHESIZE, "--top-p", "1.5"], "--top-p must be in (0, 1] (1 keeps every token), got 1.5"),
        ([*SYNTHESIZE, "--top-p", "0"], "--top-p must be in (0, 1]"),
        ([*SYNTHESIZE, "--temperature", "-0.1"], "--temperature must be at least 0 (0 is greedy), got -0.1"),
        ([*SYNTHESIZE, "--temperature", "warm"], "--temperature must be a number, got 'warm'"),
        ([*SYNTHESIZE, "--max-new-tokens", "0"], "--max-new-tokens must be at least 1 (got 0)"),
        ([*SYNTHESIZE, "--prompt-style", "poem"], "--prompt-style invalid choice: 'poem'"),
        ([*SYNTHESIZE, "--format", "xml"], "--format invalid choice: 'xml'"),
    ],
)
def test_bad_flag_values_are_refused_and_nothing_is_written(argv, message, tmp_path, capsys):
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_push_refuses_to_overwrite_a_branch_unless_asked(local_hub, tmp_path, capsys):
    from huggingface_hub import HfApi, hf_hub_download

    repo_id, folder = "babyhub-tests/push-branch", tmp_path / "folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("first\n")
    base = ["push", str(folder), "--repo-id", repo_id, "--repo-type", "model", "--revision", "experiment"]
    assert main(base) == 0
    (folder / "notes.txt").write_text("second\n")
    assert main(base) == 2
    assert "already holds other content" in capsys.readouterr().err
    path = hf_hub_download(repo_id, "notes.txt", revision="experiment")
    assert open(path).read() == "first\n"  # the branch is untouched
    assert main([*base, "--overwrite-branch"]) == 0
    commits = HfApi().list_repo_commits(repo_id, revision="experiment")
    path = hf_hub_download(repo_id, "notes.txt", revision="experiment")
    assert open(path).read() == "second\n" and len(commits) == 3  # initial, first push, overwrite


def test_synthesize_names_the_train_flag_for_a_missing_split(tmp_path, capsys):
    argv = ["data", "synthesize", "--train", str(tmp_path / "nowhere"), "--teacher", "x/y", "--out", str(tmp_path)]
    assert main(argv) == 2
    assert f"--train {tmp_path / 'nowhere'}: no such folder" in capsys.readouterr().err


def test_synthesize_flags_reach_the_synthesis_and_its_card(tiny_baby, small_train_dir, tmp_path, capsys):
    """The original's recipe from the command line: completion prompt, no filter, plain, case kept, sampling."""
    from huggingface_hub import DatasetCard

    out = tmp_path / "synthetic"
    argv = ["data", "synthesize", "--train", str(small_train_dir), "--teacher", str(tiny_baby), "--out", str(out),
            "--limit", "6", "--batch-size", "4", "--prompt-style", "completion", "--no-filter", "--format", "plain",
            "--keep-case", "--temperature", "0.9", "--top-p", "0.8", "--top-k", "20",
            "--max-new-tokens", "12"]  # fmt: skip
    assert main(argv) == 0
    assert "completion prompt" in capsys.readouterr().out
    rows = load_rows(str(out))
    assert len(rows) == 6  # no filter: one row per training row
    assert not any(r["prompt"].startswith("*") or r["chosen"].startswith("*") for r in rows)  # plain
    card = DatasetCard.load(out / "README.md").text
    settings = ["| temperature | 0.9 |", "| top_p | 0.8 |", "| top_k | 20 |", "| max new tokens | 12 |",
                "| batch size | 4 |", "case kept", "off: every row kept", "`plain`",
                "original's plain completion"]  # fmt: skip
    for setting in settings:
        assert setting in card, setting
