"""train_dpo.py end to end on the tiny baby and the local hub: every checkpoint on its branch with its card,
a flaky hub losing nothing, and a killed run resumed from its Hub branch."""

import os
import signal
import subprocess
import sys
import time
import warnings

import pandas as pd
import pytest
import torch
from huggingface_hub import HfApi, ModelCard, hf_hub_download
from transformers import AutoModelForCausalLM

import train_dpo
from hub_tools.data.preferences import read_preferences
from hub_tools.errors import BabyhubError
from hub_tools.hub import publish
from hub_tools.paths import RECIPES, REPO_ROOT
from hub_tools.training import checkpoints, checks, trainer

STEPS, SAVE = 6, 2
BRANCHES = {"checkpoint-2", "checkpoint-4", "checkpoint-6"}


def _args(baby, data, out, repo=None, *extra):
    args = [
        "--config", str(RECIPES / "tiny-cpu.yaml"),
        "--model_name_or_path", str(baby),
        "--dataset_name", str(data),
        "--output_dir", str(out),
        "--max_steps", str(STEPS),
        "--save_steps", str(SAVE),
        "--logging_steps", "1",
        "--disable_tqdm", "true",
    ]  # fmt: skip
    if repo:
        args += ["--push_to_hub", "--hub_model_id", repo]
    return args + list(extra)


def _branches(repo):
    return {b.name for b in HfApi().list_repo_refs(repo).branches}


def _card(repo, revision):
    return ModelCard.load(hf_hub_download(repo, "README.md", revision=revision))


def _base_weights(baby):
    return AutoModelForCausalLM.from_pretrained(baby).state_dict()


def test_every_checkpoint_lands_on_its_branch_with_its_card(
    local_hub, tiny_baby, small_train_dir, preference_dirs, tmp_path
):
    repo = "babyhub-tests/dpo-every-checkpoint"
    out = tmp_path / "run"
    extra = ["--eval_dataset_name", str(preference_dirs.eval), "--eval_max_pairs", "24"]
    assert train_dpo.run(_args(tiny_baby, small_train_dir, out, repo, *extra)) == 0

    assert _branches(repo) == BRANCHES | {"main"}
    metrics = pd.read_csv(out / "logs" / "training_metrics.csv")
    assert list(metrics.columns[:2]) == ["step", "loss"] and set(range(1, STEPS + 1)) <= set(metrics["step"])
    base = _base_weights(tiny_baby)
    for revision in sorted(BRANCHES) + ["main"]:
        step = STEPS if revision == "main" else int(revision.split("-")[1])
        model = AutoModelForCausalLM.from_pretrained(repo, revision=revision)
        assert any(not torch.equal(p, base[n]) for n, p in model.state_dict().items()), revision
        files = set(HfApi().list_repo_files(repo, revision=revision))
        assert "optimizer.pt" not in files and "model.safetensors" in files
        card = _card(repo, revision)
        assert f"step | {step} |" in card.text
        row = metrics[(metrics["step"] == step) & metrics["loss"].notna()].iloc[0]
        assert f"| loss | {row['loss']:.4f} |" in card.text
        assert f"| rewards/margins | {row['rewards/margins']:.4f} |" in card.text
        assert "*MOT: what is that ? *CHI:" in card.text and f'revision = "{repo}", "{revision}"' in card.text
        result = card.data.eval_results[0]
        assert result.metric_type == "accuracy" and 0 <= result.metric_value <= 1
        assert all(f"/tree/{b}" in card.text for b in BRANCHES if int(b.split("-")[1]) <= step)
        assert os.environ["HF_TOKEN"] not in card.text
    main_files = set(HfApi().list_repo_files(repo))
    assert {"plots/loss.png", "plots/rewards.png", "logs/training_metrics.csv"} <= main_files
    assert not any(f.startswith(("checkpoint-", ".push")) for f in main_files)


def test_a_flaky_hub_loses_no_checkpoint_and_training_goes_on(
    local_hub, tiny_baby, small_train_dir, tmp_path, monkeypatch
):
    monkeypatch.setattr(publish, "BACKOFF_BASE", 0.05)
    monkeypatch.setattr(checkpoints, "RETRY_WAIT", 0.0)
    # On top of the hub's faults, checkpoint-4's push crashes 3 times in a row: the queue moves on to
    # checkpoint-6 and tries checkpoint-4 again after training.
    real_push, crashes = publish.push_folder, {"checkpoint-4": 3}

    def crashing_push(folder, repo_id, **kwargs):
        if crashes.get(kwargs.get("revision"), 0) > 0:
            crashes[kwargs["revision"]] -= 1
            raise RuntimeError("push process crashed")
        return real_push(folder, repo_id, **kwargs)

    monkeypatch.setattr(publish, "push_folder", crashing_push)
    repo = "babyhub-tests/dpo-flaky-hub"
    local_hub.faults.clear()
    local_hub.faults.add("commit", "503", times=3)
    local_hub.faults.add("lfs_upload", "drop", times=1)
    local_hub.faults.add("commit", "drop_after", times=1)
    try:
        # Another seed than the other tests: new weights, so the hub cannot answer "already stored" to the upload.
        assert train_dpo.run(_args(tiny_baby, small_train_dir, tmp_path / "run", repo, "--seed", "7")) == 0
        fired = list(local_hub.faults.fired)
    finally:
        local_hub.faults.clear()
    assert len(fired) == 5 and crashes == {"checkpoint-4": 0}
    assert _branches(repo) == BRANCHES | {"main"}
    for revision in BRANCHES:
        assert f"step | {revision.split('-')[1]} |" in _card(repo, revision).text


def test_killed_run_resumes_from_its_hub_branch(local_hub, tiny_baby, small_train_dir, tmp_path):
    repo = "babyhub-tests/dpo-killed"
    cmd = [sys.executable, "-m", "hub_tools", "train", *_args(tiny_baby, small_train_dir, tmp_path / "a", repo)]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while "trainer_state.json" not in _files_or_empty(repo, "checkpoint-2"):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint branch after 240 s"
            time.sleep(0.05)
        # From now on the hub answers 503 to every commit: the run cannot finish its pushes (it waits for its
        # queue before exiting), so the kill below always lands in the middle of the run, however fast it trains.
        local_hub.faults.add("commit", "503", times=10_000)
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        local_hub.faults.clear()
    assert proc.returncode == -signal.SIGKILL
    assert "main" not in _branches(repo) or "config.json" not in _files_or_empty(repo, "main")
    out = tmp_path / "b"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert (
            train_dpo.run(
                _args(tiny_baby, small_train_dir, out, repo, "--resume_from_checkpoint", f"{repo}@checkpoint-2")
            )
            == 0
        )
    # Moving the schedule on is deliberate: torch's "lr_scheduler.step() before optimizer.step()" is not shown.
    assert not [w for w in caught if "lr_scheduler.step()" in str(w.message)]
    assert _branches(repo) == BRANCHES | {"main"}
    card = _card(repo, "main")
    assert f"step | {STEPS} |" in card.text
    metrics = pd.read_csv(out / "logs" / "training_metrics.csv")
    # The resumed run's log starts with the rows of the checkpoint it came from and continues the step count.
    assert sorted(metrics.loc[metrics["loss"].notna(), "step"]) == list(range(1, STEPS + 1))
    # A Hub branch has no optimizer state, but the learning-rate schedule goes on where it was (linear decay).
    learning_rate = metrics.set_index("step")["learning_rate"].dropna()
    assert learning_rate[3] == pytest.approx(5e-5 * (1 - 2 / STEPS))


def _files_or_empty(repo, revision):
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    try:
        return set(HfApi().list_repo_files(repo, revision=revision))
    except (RepositoryNotFoundError, RevisionNotFoundError):
        return set()


def _branches_or_empty(repo):
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        return _branches(repo)
    except RepositoryNotFoundError:
        return set()


def test_a_fresh_run_refuses_a_repo_with_checkpoints(local_hub, tiny_baby, small_train_dir, tmp_path):
    repo = "babyhub-tests/dpo-taken"
    publish.push_folder(tiny_baby, repo, revision="checkpoint-2")
    with pytest.raises(BabyhubError, match="already has checkpoint branches"):
        train_dpo.run(_args(tiny_baby, small_train_dir, tmp_path / "run", repo))


def test_yaml_then_cli_flags_and_cpu_safety(tmp_path):
    script, config, model = train_dpo.parse_args(
        ["--config", str(RECIPES / "tiny-cpu.yaml"), "--learning_rate", "0.001", "--push_to_hub",
         "--hub_model_id", "me/run", "--output_dir", str(tmp_path), "--bf16", "true"]
    )  # fmt: skip
    assert config.learning_rate == 0.001  # CLI over YAML
    assert config.beta == 0.1 and config.save_steps == 200 and script.fuse_gradient_accumulation  # YAML over defaults
    assert model.model_name_or_path == "out/baby-llama"
    assert (config.bf16, config.fp16, config.gradient_checkpointing) == (False, False, False)  # no GPU here
    assert config.push_checkpoints and not config.push_to_hub  # our queue pushes, never the Trainer


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dataset_name", "d", "--push_to_hub"], "--push_to_hub needs --hub_model_id"),
        (["--config", "recipes/nope.yaml"], "no such file"),
        (["--model_name_or_path", "m"], "--dataset_name is required"),
        (["--dataset_name", "d", "--padding_free", "true"], "padding_free is disabled"),
        (["--dataset_name", "d", "--hub_model_id", "me/a/b"], r"--hub_model_id: invalid repo id 'me/a/b'"),
        (["--dataset_name", "d", "--hub_model_id", "me/bad..name"], "--hub_model_id: invalid repo id 'me/bad..name'"),
    ],
)
def test_bad_arguments_say_what_to_fix(argv, message, tmp_path):
    with pytest.raises(BabyhubError, match=message):
        train_dpo.parse_args([*argv, "--output_dir", str(tmp_path)])


def test_tokenization_checks_count_max_length_drops_and_refuse_merged_prompts(tiny_baby, small_train_dir):
    from datasets import Dataset
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_baby)
    train = checks.with_turn_separator(read_preferences(str(small_train_dir), None, "train"))
    assert train[0]["chosen"].startswith(" *CHI:")
    lengths = [len(tokenizer(p)["input_ids"]) for p in train["prompt"]]
    kept, report = checks.check_tokenization(train, tokenizer, max_length=12)
    assert report.dropped_by_max_length == sum(n >= 12 for n in lengths) > 0
    assert report.kept == len(kept) == report.rows - report.dropped_by_max_length
    assert all(len(tokenizer(p)["input_ids"]) < 12 for p in kept["prompt"])

    merged = Dataset.from_dict({"prompt": ["*MOT: what is th"], "chosen": ["at ?"], "rejected": [" *CHI: no ."]})
    with pytest.raises(BabyhubError, match="row 0, chosen"):
        checks.check_tokenization(merged, tokenizer, max_length=None)

    tokenizer.eos_token = None
    with pytest.raises(BabyhubError, match="no EOS token"):
        checks.check_tokenizer(tokenizer, "baby")


def test_packed_pairs_give_trl_log_probs_metrics_and_gradients(tiny_baby, small_train_dir):
    import copy

    from transformers import AutoTokenizer
    from trl.trainer.dpo_trainer import DataCollatorForPreference
    from trl.trainer.utils import add_fused_lm_head

    tokenizer = AutoTokenizer.from_pretrained(tiny_baby)
    train = checks.with_turn_separator(read_preferences(str(small_train_dir), None, "train"))
    ids = lambda text: tokenizer(text)["input_ids"]  # noqa: E731
    examples = [
        {
            "prompt_ids": ids(r["prompt"]),
            "chosen_ids": ids(r["chosen"]) + [tokenizer.eos_token_id],
            "rejected_ids": ids(r["rejected"]) + [tokenizer.eos_token_id],
        }
        for r in train.select(range(16))
    ]
    batch = DataCollatorForPreference(pad_token_id=tokenizer.pad_token_id)(examples)
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    outputs = ("log_probs", "entropy", "mean_logits", "is_top1", "log_sum_sq_probs")
    trl_model = AutoModelForCausalLM.from_pretrained(tiny_baby, dtype=torch.float32)
    packed_model = copy.deepcopy(trl_model)
    for model in (trl_model, packed_model):
        add_fused_lm_head(model, outputs=outputs)
    trainer.add_packed_lm_head(packed_model, outputs)

    packed = trainer.pack_pairs(batch["input_ids"], batch["attention_mask"], labels)
    assert packed is not None and packed[0].numel() < batch["input_ids"].numel()  # prompt once, less padding
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "use_cache": False}
    expected = trl_model(**inputs, labels=labels, fused_lm_head=True)
    got = packed_model(**inputs, labels=labels, fused_lm_head=True)
    for name in ("log_probs", "entropy", "mean_logits", "log_sum_sq_probs"):
        torch.testing.assert_close(getattr(got, name), getattr(expected, name), rtol=1e-5, atol=1e-4, msg=name)
    assert torch.equal(got.is_top1, expected.is_top1) and torch.equal(got.label_mask, expected.label_mask)
    weights = torch.linspace(-1, 1, labels.size(0))  # any loss of the sequence log-probs: the same gradient
    (expected.log_probs.sum(1) * weights).sum().backward()
    (got.log_probs.sum(1) * weights).sum().backward()
    for (name, p), q in zip(trl_model.named_parameters(), packed_model.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-5, msg=name)

    # Chosen and rejected rows with different prompts are not pairs: TRL's head takes the batch
    swapped = torch.cat([batch["input_ids"][:16], batch["input_ids"][16:].roll(1, 0)])
    assert trainer.pack_pairs(swapped, batch["attention_mask"], labels) is None


def test_errors_name_the_flag_the_value_came_from(tiny_baby, small_train_dir, tmp_path):
    # Library code names the value; the recipe adds the flag it came from (never another command's flag).
    nowhere = str(tmp_path / "nowhere")
    cases = [
        (["--model_name_or_path", nowhere], f"--model_name_or_path {nowhere}: cannot load its tokenizer"),
        (["--dataset_name", nowhere], f"--dataset_name {nowhere}: no such file or folder"),
        (["--resume_from_checkpoint", "me/run"], "--resume_from_checkpoint 'me/run': not a folder, and not"),
    ]
    for extra, message in cases:
        with pytest.raises(BabyhubError) as caught:
            train_dpo.run(_args(tiny_baby, small_train_dir, tmp_path / "run", None, *extra))
        assert str(caught.value).startswith(message), str(caught.value)
    assert not (tmp_path / "run").exists()  # nothing written before the arguments hold

    # As a user runs it: the message names --eval_dataset_name and the value, exit status 2.
    argv = _args(tiny_baby, small_train_dir, tmp_path / "run", None, "--eval_dataset_name", nowhere)
    done = subprocess.run([sys.executable, "train_dpo.py", *argv], cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 2, done.stderr[-2000:]
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith(f"train_dpo.py: error: --eval_dataset_name {nowhere}: no such file or folder"), error
    assert "--data " not in error


def test_every_babyhub_argument_is_declared_with_its_help():
    import dataclasses

    import trl

    from hub_tools.training.config import BabyDPOConfig, BabyScriptArguments

    for ours, theirs in ((BabyScriptArguments, trl.ScriptArguments), (BabyDPOConfig, trl.DPOConfig)):
        inherited = {f.name for f in dataclasses.fields(theirs)}
        own = [f for f in dataclasses.fields(ours) if f.name not in inherited]
        assert own and all(f.metadata.get("help") for f in own), ours
    assert "push_checkpoints" in {f.name for f in own}  # declared, not set on the side in __post_init__
    assert BabyDPOConfig.__name__ != trl.DPOConfig.__name__
