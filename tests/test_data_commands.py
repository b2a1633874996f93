"""The `babyhub data build` and `babyhub push` commands, end to end (push through the local hub)."""

import datasets
import pytest
from huggingface_hub import HfApi

from hub_tools.cli import main
from hub_tools.data.preferences import EVAL_NAME, TRAIN_NAME
from tests.test_minpairs import BAD_ROWS, VALID, _write_csv


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
        (["data", "build", "--train-rows", "0", "--out", "{tmp}/out"], "--train-rows must be at least 1 (got 0)"),
        (
            ["data", "synthesize", "--train", "{tmp}", "--teacher", "x/y", "--max-words", "0", "--out", "{tmp}/out"],
            "--batch-size, --max-words and --limit must be at least 1",
        ),
    ],
)
def test_zero_is_refused_not_taken_for_the_default(argv, message, tmp_path, capsys):
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
