"""`babyhub eval minpairs|blimp` end to end: a real tiny baby, real rows, the local hub, cards and sweeps."""

import csv
import json

import pytest

from hub_tools import evaluation, scoring
from hub_tools.cli import main
from tests.conftest import BLIMP_DIR
from tests.test_evaluation import write_eval_csv

N_ROWS = 48


@pytest.fixture(scope="module")
def eval_csv(tmp_path_factory):
    return write_eval_csv(tmp_path_factory.mktemp("eval-data") / "eval48.csv", N_ROWS)


@pytest.fixture(scope="module")
def swept_repo(local_hub, tiny_baby, tmp_path_factory):
    """A model repo with main, two checkpoint branches and a card with other metadata on each revision."""
    from hub_tools.hub.publish import push_files, push_folder

    repo = "babyhub/eval-commands-sweep"
    push_folder(tiny_baby, repo)
    for branch in ("checkpoint-20", "checkpoint-10"):
        push_folder(tiny_baby, repo, revision=branch)
    card = "---\nlicense: apache-2.0\ntags:\n- babyhub\n---\n\n# A baby\n\nKeep this text.\n"
    for revision in ("main", "checkpoint-10", "checkpoint-20"):
        push_files({"README.md": card.encode()}, repo, revision=revision)
    return repo


def run_json(capsys, *argv):
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_method_choices_are_the_scorers(capsys):
    assert set(evaluation.MINPAIR_METHODS) == set(scoring.METHODS)
    assert set(evaluation.BLIMP_METHODS) < set(scoring.METHODS)


def test_minpairs_json_on_a_local_model(capsys, tiny_baby, eval_csv):
    out = run_json(
        capsys,
        "eval",
        "minpairs",
        "--model",
        str(tiny_baby),
        "--data",
        str(eval_csv),
        "--json",
        "--method",
        "sequence_mean",
        "answer_sum",
    )
    assert [(r["revision"], r["dataset"], r["method"], r["n"]) for r in out["results"]] == [
        ("main", "eval48", "sequence_mean", N_ROWS),
        ("main", "eval48", "answer_sum", N_ROWS),
    ]
    # The numbers are the scorer's: recompute one directly.
    from hub_tools.evaluation import read_minpairs_data

    data = read_minpairs_data(str(eval_csv))
    chosen, rejected = scoring.score_minimal_pairs(
        scoring.Scorer.from_pretrained(str(tiny_baby)), data.prompts, data.chosen, data.rejected, method="answer_sum"
    )
    assert out["results"][1]["accuracy"] == scoring.compare_pairs(chosen, rejected)["accuracy"]


def test_all_revisions_writes_csv_and_plot_and_pushes_results(capsys, swept_repo, eval_csv, tmp_path):
    from huggingface_hub import HfApi, ModelCard, hf_hub_download

    out = run_json(
        capsys,
        "eval",
        "minpairs",
        "--model",
        swept_repo,
        "--all-revisions",
        "--data",
        str(eval_csv),
        "--output-dir",
        str(tmp_path),
        "--push-results",
        "--json",
    )
    assert [(r["revision"], r["step"]) for r in out["results"]] == [
        ("checkpoint-10", 10),
        ("checkpoint-20", 20),
        ("main", None),
    ]
    with open(out["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert [(r["revision"], r["step"], r["method"]) for r in rows] == [
        ("checkpoint-10", "10", "sequence_mean"),
        ("checkpoint-20", "20", "sequence_mean"),
        ("main", "", "sequence_mean"),
    ]
    assert len({r["accuracy"] for r in rows}) == 1  # the same weights on every branch
    assert open(out["plot"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    # Each revision's card gained the result in its model-index and kept everything else.
    api = HfApi()
    for revision in ("main", "checkpoint-10", "checkpoint-20"):
        card = ModelCard.load(hf_hub_download(swept_repo, "README.md", revision=revision))
        assert card.text.strip() == "# A baby\n\nKeep this text."
        assert card.data.license == "apache-2.0" and card.data.tags == ["babyhub"]
        (result,) = card.data.eval_results
        assert result.metric_config == "sequence_mean"
        assert result.metric_value == round(float(rows[0]["accuracy"]), 4)
        assert "config.json" in api.list_repo_files(swept_repo, revision=revision)  # nothing else touched
    # The same results again: no new commit.
    again = run_json(
        capsys,
        "eval",
        "minpairs",
        "--model",
        swept_repo,
        "--revision",
        "checkpoint-10",
        "--data",
        str(eval_csv),
        "--push-results",
        "--json",
    )
    assert again["pushed"] == {"checkpoint-10": None}


def test_blimp_table_per_paradigm_and_macro_average(capsys, tiny_baby, tmp_path):
    suite = tmp_path / "blimp"
    suite.mkdir()
    for name in ("anaphor_number_agreement", "causative"):
        lines = (BLIMP_DIR / f"{name}.txt").read_text().splitlines()[:30]
        (suite / f"{name}.txt").write_text("\n".join(lines) + "\n")
    out = run_json(capsys, "eval", "blimp", "--model", str(tiny_baby), "--suite", str(suite), "--lower-case", "--json")
    (result,) = out["results"]
    assert set(result["paradigms"]) == {"anaphor_number_agreement", "causative"} and result["n"] == 30
    assert result["accuracy"] == pytest.approx(sum(result["paradigms"].values()) / 2)
    assert main(["eval", "blimp", "--model", str(tiny_baby), "--suite", str(suite)]) == 0
    table = capsys.readouterr().out
    assert "causative" in table and "sequence_sum_bow" in table


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--all-revisions"], "is a local folder"),
        (["--data", "missing.csv"], "missing.csv: file not found"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
    ],
)
def test_user_errors_exit_2_with_a_message(capsys, tiny_baby, eval_csv, extra, message):
    argv = ["eval", "minpairs", "--model", str(tiny_baby), "--data", str(eval_csv), *extra]
    if "--data" in extra:
        argv = ["eval", "minpairs", "--model", str(tiny_baby), *extra]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_unknown_revision_is_a_clear_error(capsys, swept_repo, eval_csv):
    argv = ["eval", "minpairs", "--model", swept_repo, "--revision", "checkpoint-999", "--data", str(eval_csv)]
    assert main(argv) == 2
    assert "could not load model babyhub/eval-commands-sweep at revision checkpoint-999" in capsys.readouterr().err


def test_push_results_needs_a_hub_model(capsys, tiny_baby, eval_csv):
    argv = ["eval", "minpairs", "--model", str(tiny_baby), "--data", str(eval_csv), "--push-results"]
    assert main(argv) == 2
    assert f"--push-results needs a Hub model id: --model {tiny_baby} is a local folder" in capsys.readouterr().err
