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
    assert set(evaluation.MINPAIR_METHODS) == set(scoring.METHODS) | set(scoring.LEGACY_METHODS)
    assert set(evaluation.BLIMP_METHODS) == set(scoring.SEQUENCE_METHODS)
    assert "sequence_sum_bow_legacy" in evaluation.BLIMP_METHODS


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
    # Each accuracy comes with Wilson's 95 % interval, recomputed here from the counts.
    from hub_tools.stats import wilson_interval

    for r in out["results"]:
        low, high = wilson_interval(round(r["accuracy"] * r["n"]), r["n"])
        assert (r["ci95_low"], r["ci95_high"], r["interval"]) == (low, high, "wilson")
        assert r["ci95_low"] <= r["accuracy"] <= r["ci95_high"] and r["ci95_high"] - r["ci95_low"] > 0.1  # 48 pairs


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
    assert list(rows[0]) == evaluation.SWEEP_COLUMNS
    assert all(float(r["ci95_low"]) <= float(r["accuracy"]) <= float(r["ci95_high"]) for r in rows)
    assert [(r["revision"], r["step"], r["method"]) for r in rows] == [
        ("checkpoint-10", "10", "sequence_mean"),
        ("checkpoint-20", "20", "sequence_mean"),
        ("main", "", "sequence_mean"),
    ]
    assert len({r["accuracy"] for r in rows}) == 1  # the same weights on every branch
    assert open(out["plot"], "rb").read(8) == b"\x89PNG\r\n\x1a\n" and out["plots"] == [out["plot"]]
    # Each revision's card gained the result in its model-index and kept everything else.
    api = HfApi()
    for revision in ("main", "checkpoint-10", "checkpoint-20"):
        card = ModelCard.load(hf_hub_download(swept_repo, "README.md", revision=revision))
        assert card.text.strip() == "# A baby\n\nKeep this text."
        assert card.data.license == "apache-2.0" and card.data.tags == ["babyhub"]
        result, low, high = card.data.eval_results
        assert result.metric_config == "sequence_mean"
        assert result.metric_value == round(float(rows[0]["accuracy"]), 4)
        # The interval's bounds sit beside the accuracy as metrics of their own.
        assert (low.metric_type, high.metric_type) == ("accuracy_ci95_low", "accuracy_ci95_high")
        assert (low.metric_value, high.metric_value) == tuple(
            round(float(rows[0][k]), 4) for k in ("ci95_low", "ci95_high")
        )
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
    assert again["pushed"] == {"checkpoint-10": None} and again["pull_requests"] == {}


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
    # The macro-average's interval is a seeded stratified bootstrap; each paradigm has its own (Wilson).
    assert result["interval"] == "stratified bootstrap"
    assert result["ci95_low"] <= result["accuracy"] <= result["ci95_high"]
    assert set(result["paradigm_ci95"]) == set(result["paradigms"])
    assert out == run_json(capsys, "eval", "blimp", "--model", str(tiny_baby), "--suite", str(suite), "--lower-case",
                           "--json")  # fmt: skip
    assert main(["eval", "blimp", "--model", str(tiny_baby), "--suite", str(suite)]) == 0
    table = capsys.readouterr().out
    assert "causative" in table and "sequence_sum_bow" in table and "95 % intervals: stratified bootstrap" in table
    # The original's scoring (minicons 0.3.8's beginning-of-word correction) is offered for BLiMP.
    legacy = run_json(capsys, "eval", "blimp", "--model", str(tiny_baby), "--suite", str(suite), "--lower-case",
                      "--method", "sequence_sum_bow_legacy", "--json")  # fmt: skip
    assert legacy["results"][0]["method"] == "sequence_sum_bow_legacy"


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


@pytest.fixture(scope="module")
def moved_baby(tiny_baby, tmp_path_factory):
    """A second model: the baby with its weights moved (so it disagrees with the baby on some pairs)."""
    from tests.test_baby_chat import perturb

    return perturb(tiny_baby, tmp_path_factory.mktemp("moved") / "baby", scale=0.5, seed=3)


def test_compare_scores_both_models_on_the_same_pairs(capsys, tiny_baby, moved_baby, eval_csv):
    from hub_tools.stats import compare_paired, mcnemar_p_value

    out = run_json(capsys, "eval", "compare", "--model", str(moved_baby), "--model", str(tiny_baby),
                   "--data", str(eval_csv), "--method", "sequence_mean", "answer_sum", "--json")  # fmt: skip
    assert out["model_a"] == str(moved_baby) and [c["method"] for c in out["comparisons"]] == [
        "sequence_mean",
        "answer_sum",
    ]
    # Each model's accuracy and interval are those `babyhub eval minpairs` gives it.
    for model, side in ((moved_baby, "a"), (tiny_baby, "b")):
        alone = run_json(capsys, "eval", "minpairs", "--model", str(model), "--data", str(eval_csv),
                         "--method", "sequence_mean", "answer_sum", "--json")["results"]  # fmt: skip
        for c, r in zip(out["comparisons"], alone, strict=True):
            assert (c[f"accuracy_{side}"], c[f"ci95_low_{side}"], c[f"ci95_high_{side}"]) == (
                r["accuracy"], r["ci95_low"], r["ci95_high"]
            )  # fmt: skip
    for c in out["comparisons"]:
        assert c["n"] == N_ROWS and c["difference_interval"] == "newcombe"
        assert c["difference"] == pytest.approx(c["accuracy_a"] - c["accuracy_b"])
        assert c["ci95_low"] <= c["difference"] <= c["ci95_high"]
        assert c["both_right"] + c["a_right_b_wrong"] + c["a_wrong_b_right"] + c["both_wrong"] == N_ROWS
        assert c["p_value"] == mcnemar_p_value(c["a_right_b_wrong"], c["a_wrong_b_right"])
    assert sum(c["a_right_b_wrong"] + c["a_wrong_b_right"] for c in out["comparisons"]) > 0, "the models never differ"
    # A model against itself: no discordant pair, no difference, p = 1.
    same = run_json(capsys, "eval", "compare", "--model", str(tiny_baby), "--model", str(tiny_baby),
                    "--data", str(eval_csv), "--json")["comparisons"]  # fmt: skip
    (c,) = same
    assert (c["difference"], c["p_value"], c["a_right_b_wrong"], c["a_wrong_b_right"]) == (0.0, 1.0, 0, 0)
    expected = compare_paired([True] * 3, [True] * 3)  # the interval keeps a width without discordant pairs
    assert c["ci95_low"] < 0 < c["ci95_high"] and expected.ci95_low < 0
    # The table says what A and B are and shows the difference with its interval and McNemar's p.
    argv = ["eval", "compare", "--model", str(moved_baby), "--model", str(tiny_baby), "--data", str(eval_csv)]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert f"A = {moved_baby}" in table and "McNemar p" in table and "discordant pairs" in table
    assert "p = " in table or "p < 0.001" in table


def test_compare_with_blimp_pools_equal_paradigms(capsys, tiny_baby, moved_baby, tmp_path):
    suite = tmp_path / "blimp"
    suite.mkdir()
    for name in ("anaphor_number_agreement", "causative"):
        lines = (BLIMP_DIR / f"{name}.txt").read_text().splitlines()[:20]
        (suite / f"{name}.txt").write_text("\n".join(lines) + "\n")
    out = run_json(capsys, "eval", "compare", "--model", str(moved_baby), "--model", str(tiny_baby),
                   "--suite", str(suite), "--lower-case", "--json")  # fmt: skip
    (c,) = out["comparisons"]
    assert (c["dataset"], c["method"], c["n"], c["pooled_equals_macro"]) == ("blimp", "sequence_sum_bow", 20, True)
    # Equal paradigms: the pooled difference is the difference of the macro-averages.
    assert c["difference"] == pytest.approx(c["accuracy_a"] - c["accuracy_b"])


@pytest.mark.parametrize(
    ("models", "extra", "message"),
    [
        (1, [], "--model given 1 time(s): give it exactly twice, the model to judge (A) then the reference (B)"),
        (3, [], "--model given 3 time(s)"),
        (2, ["--no-data"], "nothing to compare on: give --data (minimal pairs) and/or --suite (BLiMP)"),
        (2, ["--model-b", "babyhub/x@bad..rev"], "--model 'babyhub/x@bad..rev':"),
        (2, ["--data", "missing.csv"], "--data missing.csv: file not found"),
    ],
)
def test_compare_user_errors(capsys, tiny_baby, eval_csv, models, extra, message):
    argv = ["eval", "compare"]
    for _ in range(models):
        argv += ["--model", str(tiny_baby)]
    if "--model-b" in extra:
        argv = ["eval", "compare", "--model", str(tiny_baby), "--model", extra[1]]
        extra = []
    if "--no-data" not in extra and "--data" not in extra:
        argv += ["--data", str(eval_csv)]
    argv += [a for a in extra if a != "--no-data"]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_create_pr_needs_push_results(capsys, tiny_baby, eval_csv):
    argv = ["eval", "minpairs", "--model", str(tiny_baby), "--data", str(eval_csv), "--create-pr"]
    assert main(argv) == 2
    assert "--create-pr proposes the results of --push-results: add --push-results" in capsys.readouterr().err


def test_push_results_with_create_pr_opens_a_pull_request_and_prints_its_url(capsys, swept_repo, eval_csv):
    from huggingface_hub import HfApi, ModelCard, hf_hub_download

    argv = ["eval", "minpairs", "--model", swept_repo, "--revision", "checkpoint-20", "--data", str(eval_csv),
            "--method", "answer_mean", "--push-results", "--create-pr"]  # fmt: skip
    before = HfApi().list_repo_refs(swept_repo).branches
    assert main(argv) == 0
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if line.startswith("opened pull request ")]
    url = line.split()[3]
    number = int(url.rstrip("/").rsplit("/", 1)[1])
    proposed = ModelCard.load(hf_hub_download(swept_repo, "README.md", revision=f"refs/pr/{number}"))
    assert {r.metric_config for r in proposed.data.eval_results} >= {"answer_mean"}
    # The branch itself is untouched until the owner merges.
    assert HfApi().list_repo_refs(swept_repo).branches == before
    current = ModelCard.load(hf_hub_download(swept_repo, "README.md", revision="checkpoint-20"))
    assert "answer_mean" not in {r.metric_config for r in current.data.eval_results or []}
