"""`babyhub demo --quick` end to end on a cut-down input, against the session's local hub."""

import json

import pytest

from hub_tools.cli import main
from tests.conftest import BLIMP_DIR, HUB_URL

NAMESPACE = "demo-test"
MODELS = ["baby-llama", "baby-llama-dpo-real", "baby-llama-dpo-synthetic"]
DATASETS = ["child-dpo-preferences", "child-dpo-preferences-eval", "child-dpo-preferences-synthetic"]
SPACES = ["dialogue_minpairs", "baby-chat"]
# Small budgets so the whole study runs in about a minute; the stages and code paths are those of --quick.
CUT_DOWN = [
    "--baby-steps", "30", "--dpo-steps", "4", "--save-steps", "2", "--synthetic-rows", "32",
    "--eval-pairs", "40", "--checkpoint-eval-pairs", "16", "--blimp-pairs", "8",
]  # fmt: skip


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


def test_demo_publishes_everything_and_reruns_as_a_no_op(local_hub, tmp_path, blimp_subset, capsys):
    from huggingface_hub import DatasetCard, HfApi, ModelCard

    argv = ["demo", "--quick", "--workdir", str(tmp_path / "demo"), "--namespace", NAMESPACE,
            "--blimp", str(blimp_subset), *CUT_DOWN]  # fmt: skip
    assert main(argv) == 0
    first = capsys.readouterr().out

    api = HfApi()
    state = hub_state(api)
    # Every model has main plus a branch per saved checkpoint (4 steps, saving every 2), each with its card.
    for name in MODELS[1:]:
        repo_id = f"{NAMESPACE}/{name}"
        assert {b for (_, r, b) in state if r == repo_id} == {"main", "checkpoint-2", "checkpoint-4"}
        for branch in ("checkpoint-2", "checkpoint-4", "main"):
            card = load_card(ModelCard, repo_id, branch)
            assert card.data.base_model, f"{repo_id}@{branch}: card without base_model"
            assert api.file_exists(repo_id, "model.safetensors", revision=branch)
    baseline_card = load_card(ModelCard, f"{NAMESPACE}/baby-llama")
    # Evaluation results went into the cards as model-index entries.
    assert baseline_card.data.eval_results, "the baseline card has no evaluation results"
    for name in DATASETS:
        card = load_card(DatasetCard, f"{NAMESPACE}/{name}", repo_type="dataset")
        assert card.data.configs, f"{name}: card without configs"
    synthetic = load_card(DatasetCard, f"{NAMESPACE}/child-dpo-preferences-synthetic", repo_type="dataset")
    assert "stand-in-teacher" in synthetic.data.tags and "Stand-in teacher" in synthetic.text
    for name in SPACES:
        assert api.file_exists(f"{NAMESPACE}/{name}", "app.py", repo_type="space")
        assert api.file_exists(f"{NAMESPACE}/{name}", "scoring.py", repo_type="space")

    # The results table has the three models, with a min-pair and a BLiMP accuracy each.
    rows = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert [r["model"] for r in rows] == ["baseline (bootstrapped baby)", "DPO real", "DPO synthetic"]
    for row in rows:
        assert 0.0 <= row["minpairs_eval"] <= 1.0 and row["minpairs_eval_n"] == 40
        assert 0.0 <= row["blimp"] <= 1.0 and row["blimp_n"] == 40
    table = (tmp_path / "demo" / "results.md").read_text()
    assert all(r["model"] in table for r in rows) and table in first
    assert f"{HUB_URL}/spaces/{NAMESPACE}/baby-chat" in first

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
    ],
)
def test_demo_rejects_bad_input_and_creates_nothing(extra, message, tmp_path, capsys):
    workdir = tmp_path / "demo"
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
