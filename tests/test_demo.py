"""`babyhub demo --quick` end to end on a cut-down input, against the session's local hub."""

import json

import pytest

from hub_tools.cli import main
from tests.conftest import BLIMP_DIR, HUB_URL

NAMESPACE = "demo-test"
MODELS = [
    "baby-llama", "baby-llama-dpo-real", "baby-llama-dpo-synthetic", "baby-llama-dpo-real-seed43",
    "baby-llama-dpo-synthetic-seed43", "teacher",
]  # fmt: skip
DATASETS = ["child-dpo-preferences", "child-dpo-preferences-eval", "child-dpo-preferences-synthetic"]
SPACES = ["dialogue_minpairs", "baby-chat"]
# Small budgets so the whole study runs in a minute or two; the stages and code paths are those of --quick, with
# two seeds per DPO model and a tiny GGUF teacher (written by the test, converted and published by the demo).
CUT_DOWN = [
    "--baby-steps", "30", "--dpo-steps", "4", "--save-steps", "2", "--synthetic-rows", "32",
    "--eval-pairs", "40", "--checkpoint-eval-pairs", "16", "--blimp-pairs", "8", "--seeds", "2",
]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_gguf_teacher(tmp_path_factory):
    """A tiny llama GGUF with a chat template (tests/test_teacher.py writes it with the `gguf` package)."""
    from tests.test_teacher import write_tiny_gguf

    path = tmp_path_factory.mktemp("teacher") / "tiny-teacher.Q4_1.gguf"
    write_tiny_gguf(path)
    return path


@pytest.fixture(scope="module")
def blimp_subset(tmp_path_factory):
    """Five real BLiMP paradigms (first 8 pairs each are scored)."""
    folder = tmp_path_factory.mktemp("blimp")
    for path in sorted(BLIMP_DIR.glob("*.txt"))[:5]:
        (folder / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    return folder


def load_card(card_class, repo_id: str, revision: str = "main", repo_type: str = "model"):
    from huggingface_hub import hf_hub_download

    return card_class.load(hf_hub_download(repo_id, "README.md", repo_type=repo_type, revision=revision))


def hub_state(api) -> dict:
    """Every branch of every demo repo and the commit count behind it."""
    state = {}
    for repo_type, names in (("model", MODELS), ("dataset", DATASETS), ("space", SPACES)):
        for name in names:
            repo_id = f"{NAMESPACE}/{name}"
            for branch in api.list_repo_refs(repo_id, repo_type=repo_type).branches:
                commits = api.list_repo_commits(repo_id, repo_type=repo_type, revision=branch.name)
                state[(repo_type, repo_id, branch.name)] = len(commits)
    return state


def test_demo_publishes_everything_and_reruns_as_a_no_op(local_hub, tmp_path, blimp_subset, tiny_gguf_teacher, capsys):
    from huggingface_hub import DatasetCard, HfApi, ModelCard

    argv = ["demo", "--quick", "--workdir", str(tmp_path / "demo"), "--namespace", NAMESPACE,
            "--blimp", str(blimp_subset), "--teacher", str(tiny_gguf_teacher), *CUT_DOWN]  # fmt: skip
    assert main(argv) == 0
    first = capsys.readouterr().out

    api = HfApi()
    state = hub_state(api)
    # Every DPO model (two seeds each) has main plus a branch per saved checkpoint (4 steps, saving every 2).
    for name in MODELS[1:5]:
        repo_id = f"{NAMESPACE}/{name}"
        assert {b for (_, r, b) in state if r == repo_id} == {"main", "checkpoint-2", "checkpoint-4"}
        for branch in ("checkpoint-2", "checkpoint-4", "main"):
            card = load_card(ModelCard, repo_id, branch)
            assert card.data.base_model, f"{repo_id}@{branch}: card without base_model"
            assert api.file_exists(repo_id, "model.safetensors", revision=branch)
    baseline_card = load_card(ModelCard, f"{NAMESPACE}/baby-llama")
    # Evaluation results went into the cards as model-index entries: each accuracy and its interval's bounds.
    metrics = {(r.dataset_name, r.metric_type) for r in baseline_card.data.eval_results}
    assert {(f"{NAMESPACE}/child-dpo-preferences-eval", t) for t in ("accuracy", "accuracy_ci95_low",
            "accuracy_ci95_high")} <= metrics  # fmt: skip
    assert ("BLiMP", "accuracy_ci95_low") in metrics
    for name in DATASETS:
        card = load_card(DatasetCard, f"{NAMESPACE}/{name}", repo_type="dataset")
        assert card.data.configs, f"{name}: card without configs"
    # The teacher was converted from the GGUF and published; the synthetic card names it, at its commit.
    teacher_card = load_card(ModelCard, f"{NAMESPACE}/teacher")
    assert "gguf-dequantized" in teacher_card.data.tags
    teacher_commit = api.repo_info(f"{NAMESPACE}/teacher").sha
    synthetic = load_card(DatasetCard, f"{NAMESPACE}/child-dpo-preferences-synthetic", repo_type="dataset")
    assert "stand-in-teacher" not in synthetic.data.tags and "Stand-in" not in synthetic.text
    assert f"| teacher | `{NAMESPACE}/teacher` |" in synthetic.text
    assert f"| teacher revision | `{teacher_commit}` |" in synthetic.text
    assert "| prompt style | `chat`" in synthetic.text and "| temperature | 0.7 |" in synthetic.text
    for name in SPACES:
        assert api.file_exists(f"{NAMESPACE}/{name}", "app.py", repo_type="space")
        assert api.file_exists(f"{NAMESPACE}/{name}", "scoring.py", repo_type="space")

    # The results: every model and seed with each accuracy's interval; each DPO run against the baseline.
    results = json.loads((tmp_path / "demo" / "results.json").read_text())
    rows = results["models"]
    assert [(r["model"], r["seed"]) for r in rows] == [
        ("baseline (bootstrapped baby)", None), ("DPO real", 42), ("DPO real", 43), ("DPO synthetic", 42),
        ("DPO synthetic", 43),
    ]  # fmt: skip
    for row in rows:
        assert set(row["results"]) == {"minpairs_eval", "blimp"}
        for column, n in (("minpairs_eval", 40), ("blimp", 40)):
            cell = row["results"][column]
            assert cell["n"] == n and cell["ci95_low"] <= cell["accuracy"] <= cell["ci95_high"]
    comparisons = results["comparisons"]
    assert len(comparisons) == 4 * 2  # (2 models x 2 seeds) x (min-pairs, BLiMP)
    for c in comparisons:
        assert c["model_b"] == f"{NAMESPACE}/baby-llama" and c["n"] == 40 and 0 < c["p_value"] <= 1
        assert c["ci95_low"] <= c["difference"] <= c["ci95_high"]
        own = next(r for r in rows if (r["name"], r["seed"]) == (c["name"], c["seed"]))["results"][c["column"]]
        assert c["accuracy_a"] == own["accuracy"]
    # The two seeds' spread, beside the per-pair intervals.
    from statistics import fmean, stdev

    (real,) = [s for s in results["seeds"] if (s["name"], s["column"]) == ("dpo-real", "minpairs_eval")]
    values = [r["results"]["minpairs_eval"]["accuracy"] for r in rows if r["name"] == "dpo-real"]
    assert real["seeds"] == [42, 43] and real["accuracy"]["mean"] == pytest.approx(fmean(values))
    assert real["accuracy"]["sd"] == pytest.approx(stdev(values))
    assert set(results["timings"]) >= {"data", "baby", "teacher", "synthetic", "evaluate", "spaces"}
    table = (tmp_path / "demo" / "results.md").read_text()
    assert table.strip() in first and "mean ± sd, 2 seeds" in table and "McNemar" in table
    assert "dialogue min-pairs, word-matched (40 pairs)" in table
    first_real = next(r for r in rows if r["name"] == "dpo-real")["results"]["minpairs_eval"]
    assert "{accuracy:.4f} [{ci95_low:.4f}, {ci95_high:.4f}]".format(**first_real) in table
    assert f"{HUB_URL}/spaces/{NAMESPACE}/baby-chat" in first and f"{HUB_URL}/{NAMESPACE}/teacher" in first

    # A second run skips every stage and makes no commit anywhere.
    assert main(argv) == 0
    second = capsys.readouterr().out
    assert "nothing ran" in second
    assert hub_state(api) == state


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--pairs", "{tmp}/missing.csv"], "--pairs {tmp}/missing.csv: no such file"),
        (["--blimp", "{tmp}/no-blimp"], "--blimp {tmp}/no-blimp: no such folder"),
        (["--dpo-steps", "0"], "--dpo-steps must be at least 1"),
        (["--seeds", "0"], "--seeds must be at least 1"),
        (["--teacher", "{tmp}/nowhere"], "--teacher {tmp}/nowhere: no such file or folder; give a transformers model"),
        (["--teacher", "{tmp}"], "--teacher {tmp} has no config.json: give a transformers model folder or a GGUF"),
        (["--teacher", "{tmp}/model.bin"], "--teacher {tmp}/model.bin is not a .gguf file"),
    ],
)
def test_demo_rejects_bad_input_and_creates_nothing(extra, message, tmp_path, capsys):
    workdir = tmp_path / "demo"
    (tmp_path / "model.bin").write_bytes(b"\0")
    argv = ["demo", "--quick", "--workdir", str(workdir), *[a.format(tmp=tmp_path) for a in extra]]
    assert main(argv) == 2
    assert message.format(tmp=tmp_path) in capsys.readouterr().err
    assert not workdir.exists()


def test_demo_hub_binds_a_free_port_when_the_asked_one_is_taken(tmp_path, monkeypatch):
    import os
    import socket
    import urllib.request
    import warnings

    from hub_tools.study.demo import start_hub

    monkeypatch.delenv("HF_ENDPOINT")  # no hub given: the demo starts its own (the variables are restored after)
    monkeypatch.setenv("HF_TOKEN", os.environ["HF_TOKEN"])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # this test session imported huggingface_hub for its own hub
            endpoint, hub = start_hub(tmp_path, port)
        try:
            assert hub.port != port and endpoint == f"http://127.0.0.1:{hub.port}" == os.environ["HF_ENDPOINT"]
            token = (tmp_path / "hub" / "tokens").read_text().split()[0]
            assert os.environ["HF_TOKEN"] == token
            request = urllib.request.Request(f"{endpoint}/api/whoami-v2", headers={"authorization": f"Bearer {token}"})
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 200
        finally:
            hub.stop()


def test_plan_overrides_keep_the_rest_and_refuse_zero():
    from dataclasses import replace

    from hub_tools.errors import BabyhubError
    from hub_tools.study.demo import FULL, QUICK, make_plan

    assert make_plan(True, dpo_steps=7, save_steps=None) == replace(QUICK, dpo_steps=7)
    assert make_plan(False) == FULL
    with pytest.raises(BabyhubError, match="the plan's dpo_steps must be at least 1, got 0"):
        make_plan(True, dpo_steps=0)


def test_the_fetched_teacher_keeps_its_hub_id_and_others_take_the_namespace(tmp_path):
    from huggingface_hub import ModelCard, ModelCardData

    from hub_tools.data.teacher import TEACHER_ID
    from hub_tools.study.demo import teacher_repo_id

    converted = tmp_path / "teacher"
    converted.mkdir()
    data = ModelCardData(base_model=TEACHER_ID, base_model_relation="quantized")
    ModelCard.from_template(data).save(converted / "README.md")
    assert teacher_repo_id(converted, "ns") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    (mine := tmp_path / "my-teacher").mkdir()
    assert teacher_repo_id(mine, "ns") == "ns/my-teacher"
    ModelCard.from_template(ModelCardData(base_model=TEACHER_ID, base_model_relation="finetune")).save(
        mine / "README.md"
    )
    assert teacher_repo_id(mine, "ns") == "ns/my-teacher"  # a fine-tune is not the model itself


def _results(seeds: list[int]) -> dict:
    """Results of two models (a baseline and DPO real) in the shape stage_evaluate gives, with made-up numbers."""
    from dataclasses import asdict

    from hub_tools.stats import summarize_seeds

    cell = {"accuracy": 0.5, "ci95_low": 0.49, "ci95_high": 0.51, "n": 7548, "method": "sequence_mean"}
    rows = [
        {"model": "baseline (bootstrapped baby)", "name": "baseline", "seed": None, "results": {"minpairs_eval": cell}}
    ]
    comparisons = []
    for k, seed in enumerate(seeds):
        accuracy = 0.6 + k / 100
        rows.append({"model": "DPO real", "name": "dpo-real", "seed": seed,
                     "results": {"minpairs_eval": {**cell, "accuracy": accuracy, "ci95_low": accuracy - 0.01,
                                                   "ci95_high": accuracy + 0.01}}})  # fmt: skip
        comparisons.append({"model": "DPO real", "name": "dpo-real", "seed": seed, "column": "minpairs_eval",
                            "difference": accuracy - 0.5, "ci95_low": accuracy - 0.51, "ci95_high": accuracy - 0.49,
                            "p_value": 0.0004 if k else 0.0123})  # fmt: skip
    values = [r["results"]["minpairs_eval"]["accuracy"] for r in rows[1:]]
    seeds_rows = [{"model": "DPO real", "name": "dpo-real", "column": "minpairs_eval", "seeds": seeds,
                   "accuracy": asdict(summarize_seeds(values)),
                   "difference": asdict(summarize_seeds([v - 0.5 for v in values]))}]  # fmt: skip
    columns = {"minpairs_eval": "dialogue min-pairs, word-matched (7,548 pairs)"}
    return {"models": rows, "comparisons": comparisons, "seeds": seeds_rows, "settings": {"columns": columns}}


def test_results_table_shows_intervals_p_values_and_the_spread_across_seeds():
    from hub_tools.study.demo import results_table

    table = results_table(_results([42, 43]))
    lines = table.splitlines()
    assert "| baseline (bootstrapped baby) | – | 0.5000 [0.4900, 0.5100] |" in lines
    assert "| DPO real | 43 | 0.6100 [0.6000, 0.6200] |" in lines
    assert "| DPO real | mean ± sd, 2 seeds | 0.6050 ± 0.0071 |" in lines
    assert "| DPO real | 42 | +0.1000 [+0.0900, +0.1100], p = 0.012 |" in lines
    assert "| DPO real | 43 | +0.1100 [+0.1000, +0.1200], p < 0.001 |" in lines
    assert "| DPO real | mean ± sd, 2 seeds | +0.1050 ± 0.0071 |" in lines
    assert "Wilson's interval" in table and "Newcombe" in table and "McNemar" in table
    single = results_table(_results([42]))
    assert "| mean ± sd" not in single and "`--seeds N` trains each N times" in single
