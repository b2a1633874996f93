"""The baby chat Space (spaces/baby_chat): its functions on a real tiny baby, then the app itself served on
loopback with tiny models from the local hub (one repo, two revisions), driven through gradio_client."""

import functools
import importlib.util
import os
import re
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import HUB_TOKEN, SESSION_DIR

SPACE_DIR = Path(__file__).resolve().parents[1] / "spaces" / "baby_chat"
sys.path.insert(0, str(SPACE_DIR))
import babychat as bc  # noqa: E402

MOTHER = "*MOT: what is that ?"


# ------------------------------------------------------------------------------------------------ helpers
def load_local(folder):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


def perturb(src: Path, dst: Path, *, scale: float = 0.02, seed: int = 1) -> Path:
    """A copy of the baby whose weights moved a little (a stand-in for a later checkpoint)."""
    import torch

    model, tokenizer = load_local(src)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale * (p.std() if p.numel() > 1 else 1.0))
    model.save_pretrained(dst)
    tokenizer.save_pretrained(dst)
    return dst


@functools.cache
def publish_chat_models(baby: Path, eval_dir: Path) -> dict:
    """Push the baby to one repo twice (main + a perturbed `checkpoint-2`) and the eval split; once per session."""
    from hub_tools.hub.publish import push_folder

    repo = "space-tests/tiny-baby-chat"
    main = push_folder(baby, repo)
    ckpt = push_folder(perturb(baby, SESSION_DIR / "space-chat" / "checkpoint-2"), repo, revision="checkpoint-2")
    data = push_folder(eval_dir, "space-tests/child-dpo-preferences-eval", repo_type="dataset")
    from huggingface_hub import HfApi

    commits = {b.name: b.target_commit for b in HfApi().list_repo_refs(repo).branches}
    assert commits["main"] == main.commit_oid or main.commit_oid is None
    assert commits["checkpoint-2"] == ckpt.commit_oid or ckpt.commit_oid is None
    return {"repo": repo, "commits": commits, "dataset": data.repo_id}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_app(env: dict[str, str]):
    """Import spaces/baby_chat/app.py as the Space runtime does (with `env` set) and serve its `demo`."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        spec = importlib.util.spec_from_file_location(f"baby_chat_app_{free_port()}", SPACE_DIR / "app.py")
        app = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(app)
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    port = free_port()
    app.demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    return app, f"http://127.0.0.1:{port}"


def texts(history) -> list[str]:
    """Chat messages as `role: text` (gradio 6 messages carry content blocks)."""
    return [f"{m['role']}: {' '.join(b['text'] for b in m['content'])}" for m in history]


# ------------------------------------------------------------------------------------------ configuration
def test_parse_model_list_revisions_labels_and_errors(tmp_path):
    specs = bc.parse_model_list(f" ns/baby , ns/baby-dpo@checkpoint-2000,{tmp_path}, ns/baby ")
    assert [(s.source, s.revision) for s in specs] == [
        ("ns/baby", None),
        ("ns/baby-dpo", "checkpoint-2000"),
        (str(tmp_path), None),
        ("ns/baby", None),
    ]
    assert [s.label for s in specs] == ["baby", "baby-dpo@checkpoint-2000", tmp_path.name, "baby (2)"]
    assert specs[2].is_local and not specs[0].is_local
    for bad in ["", " , ", "ns/baby@", "@main"]:
        with pytest.raises(bc.SpaceConfigError, match="model"):
            bc.parse_model_list(bad)


def test_space_config_from_env_else_models_yaml(tmp_path):
    shipped = bc.read_space_config(env={})
    assert len(shipped.models) == 3 and shipped.models[0].label == "baseline"
    assert shipped.examples_dataset and shipped.models[1].beta == 0.1

    yaml_file = tmp_path / "models.yaml"
    yaml_file.write_text(
        "models:\n  - repo_id: a/base\n  - repo_id: a/dpo\n    beta: 0.5\nexamples:\n  dataset: a/ev\n"
    )
    from_file = bc.read_space_config(env={}, path=yaml_file)
    assert [(m.source, m.beta) for m in from_file.models] == [("a/base", 0.1), ("a/dpo", 0.5)]
    env = {bc.MODELS_ENV: "b/base@v1,b/dpo", bc.EXAMPLES_ENV: "b/ev"}
    from_env = bc.read_space_config(env=env, path=yaml_file)
    assert [(m.source, m.revision) for m in from_env.models] == [("b/base", "v1"), ("b/dpo", None)]
    assert from_env.examples_dataset == "b/ev"

    yaml_file.write_text("models:\n  - revision: main\n")
    with pytest.raises(bc.SpaceConfigError, match=r"models\[0\] needs a `repo_id`"):
        bc.read_space_config(env={}, path=yaml_file)


# --------------------------------------------------------------------------------------- prompt and stops
def test_clean_line_tags_empties_and_cuts():
    assert bc.clean_line("  \n ", bc.MOTHER_TAG) == ("", "")
    assert bc.clean_line("*MOT:", bc.MOTHER_TAG) == ("", "")
    assert bc.clean_line("what is\nthat ?", bc.MOTHER_TAG) == ("*MOT: what is that ?", "")
    assert bc.clean_line("*FAT: look !", bc.MOTHER_TAG) == ("*FAT: look !", "")
    line, notice = bc.clean_line("ba " * 200, bc.MOTHER_TAG, max_chars=50)
    assert line.startswith("*MOT: ba ba") and len(line) <= len("*MOT: ") + 50
    assert "cut to the first 50" in notice


def test_stop_rules_cut_at_tags_and_new_lines_and_hold_back_partial_tags():
    assert bc.cut_answer(" it is a dog . *MOT: no") == (" it is a dog . ", True)
    assert bc.cut_answer(" a ball\nmore") == (" a ball", True)
    assert bc.cut_answer(" a ball") == (" a ball", False)
    assert bc.visible_answer(" a ball *MO") == "a ball"
    assert bc.visible_answer(" a ball *") == "a ball"
    assert bc.visible_answer(" a ball *CHI: x") == "a ball"
    assert bc.visible_answer(" 2 * 3") == "2 * 3"


def test_build_prompt_keeps_newest_turns_within_the_context(tiny_baby):
    _, tokenizer = load_local(tiny_baby)
    turns = [MOTHER, "*CHI: a dog .", "*MOT: a big dog ?", "*CHI: yes .", "*MOT: where is it going ?"]
    whole = bc.build_prompt(turns, tokenizer, max_tokens=500)
    assert whole.text == " ".join(turns) + " *CHI:" and whole.dropped_turns == 0 and whole.cut_tokens == 0
    assert whole.ids[0] == tokenizer.bos_token_id

    trimmed = bc.build_prompt(turns, tokenizer, max_tokens=len(whole.ids) - 3)
    assert trimmed.dropped_turns >= 1 and len(trimmed.ids) <= len(whole.ids) - 3
    assert trimmed.text.endswith("*MOT: where is it going ? *CHI:") and not trimmed.text.startswith(MOTHER)

    cut = bc.build_prompt(["*MOT: " + "look at the doggy " * 40], tokenizer, max_tokens=20)
    assert len(cut.ids) == 20 and cut.cut_tokens > 0 and cut.ids[0] == tokenizer.bos_token_id
    assert cut.text.endswith("*CHI:")


# ---------------------------------------------------------------------------------------------- generation
def test_stream_answer_streams_and_matches_greedy_generate(tiny_baby):
    import torch

    model, tokenizer = load_local(tiny_baby)
    for mother in [MOTHER, "*MOT: do you want some milk ?", "*MOT: where is the ball ?"]:
        prompt = bc.build_prompt([mother], tokenizer, max_tokens=400)
        steps = list(bc.stream_answer(model, tokenizer, prompt.ids, bc.Sampling(max_new_tokens=24)))
        assert steps, "the baby said nothing at all"
        assert len(steps) <= 24
        assert all(later.startswith(earlier) for earlier, later in zip(steps, steps[1:], strict=False))
        final = steps[-1]
        assert "\n" not in final and not bc.STOP.search(final)
        # The same answer as transformers' own greedy decoding, cut by the same stop rule.
        out = model.generate(torch.tensor([prompt.ids]), max_new_tokens=24, do_sample=False)
        reference = tokenizer.decode(out[0, len(prompt.ids) :], skip_special_tokens=True)
        assert final == bc.cut_answer(reference)[0].strip()


def test_sampling_is_reproducible_by_seed_and_bounded(tiny_baby):
    model, tokenizer = load_local(tiny_baby)
    ids = bc.build_prompt([MOTHER], tokenizer, max_tokens=400).ids

    def sample(seed, **kw):
        settings = bc.Sampling(do_sample=True, seed=seed, max_new_tokens=12, **kw)
        return bc.generate_answer(model, tokenizer, ids, settings)

    assert sample(3, temperature=1.5) == sample(3, temperature=1.5)
    assert len({sample(s, temperature=1.5) for s in range(6)}) > 1, "different seeds never changed the answer"
    greedy = bc.generate_answer(model, tokenizer, ids, bc.Sampling(max_new_tokens=12))
    assert sample(3, top_p=0.05) == greedy  # a nucleus of one token is greedy
    one = bc.generate_answer(model, tokenizer, ids, bc.Sampling(max_new_tokens=1))
    assert len(tokenizer(one, add_special_tokens=False)["input_ids"]) <= 2
    for bad in [{"temperature": 0}, {"top_p": 1.5}, {"max_new_tokens": 0}]:
        with pytest.raises(ValueError, match=next(iter(bad))):
            bc.Sampling(**bad)


# ------------------------------------------------------------------------------------------------- scoring
def test_score_answers_agrees_with_the_scorer_and_gives_dpo_rewards(tiny_baby, tmp_path):
    from hub_tools.scoring import Scorer

    tuned = perturb(tiny_baby, tmp_path / "tuned", scale=0.05)
    specs = bc.with_labels([bc.ModelSpec(str(tiny_baby), label="base"), bc.ModelSpec(str(tuned), beta=0.5)])
    store = bc.ModelStore()
    local = bc.Revision(bc.NO_REVISION, None)
    loaded = [store.get(s, local) for s in specs]
    assert store.get(specs[0], local) is loaded[0] and store.loaded() == 2  # loaded once, shared

    a, b = "*CHI: it looks like a gun .", "*CHI: you do it like that ."
    result = bc.score_answers(specs, loaded, MOTHER, a, b)
    assert list(result) == ["base", "tuned"]
    for spec, folder in zip(specs, [tiny_baby, tuned], strict=True):
        ref = Scorer.from_pretrained(str(folder))
        logp_a, logp_b = ref.conditional_scores([MOTHER, MOTHER], [a, b], reduction="sum")
        mean_a, _ = ref.conditional_scores([MOTHER, MOTHER], [a, b], reduction="mean")
        got = result[spec.label]
        assert got["logp_a"] == pytest.approx(logp_a, abs=1e-4) and got["logp_b"] == pytest.approx(logp_b, abs=1e-4)
        assert got["logp_per_token_a"] == pytest.approx(mean_a, abs=1e-4)
        assert got["prefers"] == ("a" if logp_a > logp_b else "b")
    base, dpo = result["base"], result["tuned"]
    assert "dpo_reward_a" not in base
    assert dpo["dpo_reward_a"] == pytest.approx(0.5 * (dpo["logp_a"] - base["logp_a"]))
    assert dpo["dpo_reward_margin"] == pytest.approx(dpo["dpo_reward_a"] - dpo["dpo_reward_b"])
    assert dpo["dpo_reward_a"] != 0


def test_read_examples_from_an_eval_folder(preference_dirs):
    config = bc.SpaceConfig(models=[], examples_dataset=str(preference_dirs.eval), examples_count=5)
    examples = bc.read_examples(config)
    assert len(examples) == 5 and len(set(examples)) == 5
    for mother, chosen, rejected in examples:
        assert mother and chosen and rejected and not mother.startswith("*")
    missing = bc.SpaceConfig(models=[], examples_dataset=str(preference_dirs.eval), examples_split="test")
    with pytest.raises(bc.SpaceConfigError, match="no data/test-"):
        bc.read_examples(missing)


def test_redact_removes_hub_tokens():
    env = {"HF_TOKEN": HUB_TOKEN}
    assert HUB_TOKEN not in bc.redact(f"401 for token {HUB_TOKEN}", env)
    assert "hf_abcdefghijklmnopqrstuvwxyz" not in bc.redact("hf_abcdefghijklmnopqrstuvwxyz", env)


# -------------------------------------------------------------------------------------- the served app
@pytest.fixture(scope="module")
def chat_app(local_hub, tiny_baby, preference_dirs):
    from gradio_client import Client

    hub = publish_chat_models(tiny_baby, preference_dirs.eval)
    repo = hub["repo"]
    env = {bc.MODELS_ENV: f"{repo},{repo}@checkpoint-2", bc.EXAMPLES_ENV: hub["dataset"]}
    app, url = launch_app({**env, "BABYHUB_SPACE_CONCURRENCY": "2"})
    yield app, url, Client(url, verbose=False), hub
    app.demo.close()


def say(client, line: str):
    """Submit a mother line as the textbox does; returns (textbox, notice, *histories)."""
    return client.predict(line, api_name="/add_turn")


def answer(client, i: int, history, revision: str, **sampling):
    """Stream column i's answer; returns (every streamed update, final history, status)."""
    job = client.submit(history, revision, api_name=f"/answer_{i}", **sampling)
    updates = [texts(h)[-1] for h, _ in job]
    final, status = job.result()
    return updates, final, status


def test_app_streams_each_column_and_switches_revision(chat_app):
    app, _, client, hub = chat_app
    _, notice, history_0, history_1 = say(client, "what is that ?")
    assert notice == "" and texts(history_0) == texts(history_1) == [f"user: {MOTHER}"]

    # Both columns stream at once, each on its own (two jobs in flight, concurrency limit 2).
    jobs = [
        client.submit(history_0, "main", api_name="/answer_0"),
        client.submit(history_1, "checkpoint-2", api_name="/answer_1"),
    ]
    results = []
    for job in jobs:
        updates = [texts(h)[-1] for h, _ in job]
        final, status = job.result()
        assert len(updates) >= 2, "the answer came in one piece, not streamed"
        assert texts(final)[-1].startswith("assistant: *CHI: ") and texts(final)[-1] == updates[-1]
        assert len(texts(final)[-1]) > len("assistant: *CHI: ")
        results.append((final, status))
    assert hub["commits"]["main"][:7] in results[0][1]
    assert hub["commits"]["checkpoint-2"][:7] in results[1][1]

    # Switch column 0 to checkpoint-2: it now answers exactly as column 1 (same weights, greedy).
    note = client.predict("checkpoint-2", api_name="/revision_0")
    assert hub["commits"]["checkpoint-2"][:7] in note and "M parameters" in note
    _, switched, status = answer(client, 0, history_0, "checkpoint-2")
    assert texts(switched) == texts(results[1][0])
    assert hub["commits"]["checkpoint-2"][:7] in status
    with pytest.raises(Exception, match="checkpoint-9"):
        client.predict(history_0, "checkpoint-9", api_name="/answer_0")

    # A second mother turn goes under each column's own conversation, which is the next prompt.
    _, _, more_0, more_1 = client.predict("and where ?", results[0][0], results[1][0], api_name="/add_turn")
    assert texts(more_0)[:2] == texts(results[0][0]) and texts(more_1)[-1] == "user: *MOT: and where ?"
    _, final, _ = answer(client, 0, more_0, "main")
    assert len(texts(final)) == 4 and texts(final)[-1].startswith("assistant: *CHI:")


def test_app_refresh_revisions_offers_checkpoints_pushed_after_start(chat_app, tiny_baby):
    from hub_tools.hub.publish import push_folder

    _, _, client, hub = chat_app
    _, _, history, _ = say(client, "where is the ball ?")
    with pytest.raises(Exception, match="checkpoint-4"):
        client.predict(history, "checkpoint-4", api_name="/answer_0")
    # A checkpoint pushed while the Space runs (as training does) is offered after a refresh.
    folder = perturb(tiny_baby, SESSION_DIR / "space-chat" / "checkpoint-4", seed=4)
    pushed = push_folder(folder, hub["repo"], revision="checkpoint-4")
    *menus, note_0, note_1 = client.predict("main", "checkpoint-2", api_name="/refresh_revisions")
    assert [menu["value"] for menu in menus] == ["main", "checkpoint-2"]  # each column keeps its choice
    assert hub["commits"]["main"][:7] in note_0 and hub["commits"]["checkpoint-2"][:7] in note_1
    for menu in menus:
        assert [value for _, value in menu["choices"]] == ["main", "checkpoint-2", "checkpoint-4"]
        assert f"checkpoint-4 · {pushed.commit_oid[:7]}" in [label for label, _ in menu["choices"]]
    _, final, status = answer(client, 0, history, "checkpoint-4")
    assert pushed.commit_oid[:7] in status and texts(final)[-1].startswith("assistant: *CHI: ")


def test_app_refresh_revisions_reports_a_repo_that_is_gone(local_hub, tiny_baby):
    from gradio_client import Client
    from huggingface_hub import HfApi

    from hub_tools.hub.publish import push_folder

    repo = push_folder(tiny_baby, "space-tests/tiny-baby-gone").repo_id
    app, url = launch_app({bc.MODELS_ENV: repo, bc.EXAMPLES_ENV: ""})
    try:
        HfApi().delete_repo(repo)
        with pytest.raises(Exception, match=r"cannot list the revisions of 'space-tests/tiny-baby-gone'"):
            Client(url, verbose=False).predict("main", api_name="/refresh_revisions")
    finally:
        app.demo.close()


def test_app_sampling_seed_regenerate_and_clear(chat_app):
    _, _, client, _ = chat_app
    _, _, history, _ = say(client, "do you want some milk ?")
    settings = {"mode": "sample", "temperature": 1.5, "top_p": 1.0, "seed": 7}
    _, first, _ = answer(client, 1, history, "checkpoint-2", **settings)
    _, again, _ = answer(client, 1, history, "checkpoint-2", **settings)
    assert texts(first) == texts(again)
    # Regenerate drops the last answer of every column, so the columns answer the same line again.
    dropped = client.predict(first, first, api_name="/regenerate")
    assert [texts(h) for h in dropped] == [texts(history)] * 2
    cleared = client.predict(api_name="/clear")
    assert cleared[0] == [] and cleared[1] == []
    # Nothing to answer (the last message is the child's): the column is left as it is.
    unchanged = client.predict(first, "checkpoint-2", api_name="/answer_1")
    assert not isinstance(unchanged[0], list)


def test_app_score_agrees_with_the_scorer(chat_app, preference_dirs):
    import pandas as pd

    from hub_tools.scoring import Scorer, score_minimal_pairs

    _, _, client, hub = chat_app
    row = pd.read_parquet(next(preference_dirs.eval.glob("data/*.parquet"))).iloc[0]
    result = client.predict(bc.strip_tag(row.prompt), bc.strip_tag(row.chosen), row.rejected, api_name="/score")
    repo = hub["repo"]
    assert list(result) == ["tiny-baby-chat", "tiny-baby-chat@checkpoint-2"]
    for label, revision in zip(result, ["main", "checkpoint-2"], strict=True):
        ref = Scorer.from_pretrained(repo, revision=hub["commits"][revision])
        # `babyhub eval minpairs --method answer_sum` on the same pair.
        (logp_a,), (logp_b,) = score_minimal_pairs(
            ref, [row.prompt], [row.chosen], [row.rejected], method="answer_sum"
        )
        got = result[label]
        assert got["commit"] == hub["commits"][revision]
        assert got["logp_a"] == pytest.approx(logp_a, abs=1e-4) and got["logp_b"] == pytest.approx(logp_b, abs=1e-4)
        assert got["prefers"] == ("a" if logp_a > logp_b else "b")
    assert "dpo_reward_a" not in result["tiny-baby-chat"]
    dpo = result["tiny-baby-chat@checkpoint-2"]
    assert dpo["dpo_reward_b"] == pytest.approx(0.1 * (dpo["logp_b"] - result["tiny-baby-chat"]["logp_b"]))

    # The revisions scored are the ones chosen in the dropdowns (both on checkpoint-2: no DPO reward left).
    same = client.predict(row.prompt, row.chosen, row.rejected, "checkpoint-2", "checkpoint-2", api_name="/score")
    assert same["tiny-baby-chat@checkpoint-2"]["dpo_reward_a"] == pytest.approx(0.0, abs=1e-6)
    assert client.predict("", "", "", api_name="/score") == {}
    with pytest.raises(Exception, match="answer_b"):
        client.predict("what is that ?", "a dog .", "  ", api_name="/score")


def test_app_robustness_empty_long_shared_models_no_token(chat_app):
    import httpx

    app, url, client, _ = chat_app
    # Empty input does nothing: the textbox and the histories are left as they are (gradio's skip update).
    empty = say(client, "   ")
    assert all(not isinstance(v, list) for v in empty)
    textbox, notice, history, _ = say(client, "look " * 200)
    assert textbox == "" and "cut to the first" in notice
    assert len(texts(history)[-1]) <= len("user: *MOT: ") + bc.MAX_LINE_CHARS
    # Queue bounds and one concurrency group for the model work.
    assert app.demo._queue.max_size == app.QUEUE_SIZE
    model_fns = [
        f for f in app.demo.fns.values() if re.fullmatch(r"score|(answer|revision)_\d+(_\d+)?", f.api_name or "")
    ]
    assert len(model_fns) == 7  # two answer chains (say, regenerate) and a revision switch per column, and score
    assert model_fns and {f.concurrency_id for f in model_fns} == {app.CPU_GROUP}
    # No token reaches the page, its config or its API description.
    for path in ["/", "/config", "/gradio_api/info"]:
        page = httpx.get(url + path, timeout=30).text
        assert HUB_TOKEN not in page and "hf_babyhub" not in page


def test_app_twenty_concurrent_requests_complete(chat_app):
    app, _, client, _ = chat_app
    _, _, history, _ = say(client, "where is the ball ?")
    with ThreadPoolExecutor(max_workers=20) as pool:
        futures = [
            pool.submit(client.predict, history, "main", api_name="/answer_0")
            if k % 2
            else pool.submit(client.predict, "where is the ball ?", "there .", "a cat .", api_name="/score")
            for k in range(20)
        ]
        results = [f.result(timeout=120) for f in futures]
    assert len(results) == 20
    answers = {texts(r[0])[-1] for r in results[1::2]}
    assert len(answers) == 1 and next(iter(answers)).startswith("assistant: *CHI:")  # greedy: one answer
    scores = [r["tiny-baby-chat"]["logp_a"] for r in results[::2]]
    assert max(scores) - min(scores) < 1e-4
