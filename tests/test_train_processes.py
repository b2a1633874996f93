"""train_dpo.py on two CPU processes (torchrun, gloo) against the local hub: the main process alone writes and
pushes, the result equals one process at the same effective batch, a resume reads one download, and a failure on
any process ends the run without a hang and without losing a saved checkpoint."""

import json
import os
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
from huggingface_hub import HfApi, ModelCard, hf_hub_download
from safetensors.torch import load_file

import train_dpo
from hub_tools.paths import REPO_ROOT
from hub_tools.training import launch
from hub_tools.training.config import optimizer_steps_per_epoch
from hub_tools.training.processes import Processes
from tests.fixtures.data import SMALL_TRAIN_ROWS
from tests.test_train_dpo import BRANCHES, STEPS
from tests.test_train_dpo import _args as train_dpo_args

# Large enough that 6 steps move the weights far more than float rounding does.
LEARNING_RATE = "2e-4"
TIMEOUT = 300  # seconds a launch may take on a loaded 2-core machine


def _args(baby, data, out, repo=None, *extra):
    """test_train_dpo's arguments (same steps and checkpoints) with a learning rate that moves the weights."""
    return train_dpo_args(baby, data, out, repo, "--learning_rate", LEARNING_RATE, *extra)


def _torchrun(script, argv, **kwargs):
    """Two CPU processes of one thread each (two ranks fit two cores), as a user launches them."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script), *argv]
    return subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT, **kwargs)


def _commits(repo):
    """Each branch's commit titles, newest first."""
    api = HfApi()
    return {
        b.name: [c.title for c in api.list_repo_commits(repo, revision=b.name)]
        for b in api.list_repo_refs(repo).branches
    }


def _losses(out):
    metrics = pd.read_csv(out / "logs" / "training_metrics.csv")
    return metrics.loc[metrics["loss"].notna(), ["step", "loss"]]


@pytest.fixture(scope="module")
def one_process_run(local_hub, tiny_baby, small_train_dir, tmp_path_factory):
    """One process at the same effective batch as two: 4 x 8 (fused into one micro-batch of 32), pushed."""
    out = tmp_path_factory.mktemp("one-process")
    repo = "babyhub-tests/dpo-one-process"
    argv = _args(tiny_baby, small_train_dir, out, repo, "--gradient_accumulation_steps", "8")
    assert train_dpo.run(argv) == 0
    return out, repo


def test_two_processes_push_each_checkpoint_once_and_train_as_one(
    one_process_run, tiny_baby, small_train_dir, tmp_path
):
    repo, out = "babyhub-tests/dpo-two-processes", tmp_path / "run"
    # 2 processes x 4 x 4 (fused: 16 a process): the effective batch of 32, as the original study's 2 GPUs
    done = _torchrun(REPO_ROOT / "train_dpo.py", _args(tiny_baby, small_train_dir, out, repo))
    assert done.returncode == 0, done.stderr[-3000:]

    # One commit per checkpoint branch and one on main, made by the main process alone
    commits = _commits(repo)
    assert set(commits) == BRANCHES | {"main"}
    for branch in BRANCHES:
        assert commits[branch] == [f"Checkpoint at step {branch.split('-')[1]}", "initial commit"], commits
    assert commits["main"] == [f"Final model at step {STEPS}", "initial commit"]
    assert done.stdout.count("train_dpo: pushed the final model") == 1
    assert done.stdout.count("training examples; max_length=") == 1  # printed once, by the main process

    # The metrics CSV has every step once; the epoch counts 200 pairs in steps of 32, as the Trainer does
    losses = _losses(out)
    assert sorted(losses["step"]) == list(range(1, STEPS + 1))
    state = json.loads((out / "trainer_state.json").read_text())
    per_epoch = optimizer_steps_per_epoch(SMALL_TRAIN_ROWS, processes=2, batch=16, accumulation=1)
    assert state["global_step"] == STEPS and state["epoch"] == pytest.approx(STEPS / per_epoch)
    card = ModelCard.load(hf_hub_download(repo, "README.md"))
    assert "num_processes: 2" in card.text and "effective_batch_size: 32" in card.text

    # The same weights and losses as one process with the same effective batch, within float rounding
    one_out, _ = one_process_run
    base = load_file(tiny_baby / "model.safetensors")
    one, two = load_file(one_out / "model.safetensors"), load_file(out / "model.safetensors")
    moved = max((one[k] - base[k]).abs().max().item() for k in base)
    apart = max((one[k] - two[k]).abs().max().item() for k in base)
    assert moved > 1e-4 and apart < 1e-5, (moved, apart)
    torch.testing.assert_close(
        torch.tensor(losses["loss"].tolist()), torch.tensor(_losses(one_out)["loss"].tolist()), rtol=0, atol=1e-5
    )


def test_two_processes_resume_from_a_hub_branch(one_process_run, tiny_baby, small_train_dir, tmp_path):
    _, repo = one_process_run
    out = tmp_path / "resumed"
    argv = _args(tiny_baby, small_train_dir, out, repo, "--resume_from_checkpoint", f"{repo}@checkpoint-4")
    done = _torchrun(REPO_ROOT / "train_dpo.py", argv)
    assert done.returncode == 0, done.stderr[-3000:]
    # Downloaded once, into the folder both processes read
    assert (out / ".resume" / "checkpoint-4" / "trainer_state.json").is_file()
    # The steps after the resume point are trained again: their branch and main get one new commit each
    commits = {branch: len(titles) for branch, titles in _commits(repo).items()}
    assert commits == {"checkpoint-2": 2, "checkpoint-4": 2, "checkpoint-6": 3, "main": 3}
    assert sorted(_losses(out)["step"]) == list(range(1, STEPS + 1))  # rows 1-4 from the checkpoint, then 5-6


def test_an_error_on_the_main_process_stops_both_at_once(local_hub, tiny_baby, small_train_dir, tmp_path):
    from hub_tools.hub import publish

    # Only the main process asks the hub whether the repo is free; the other must not wait for it forever.
    repo = "babyhub-tests/dpo-processes-taken"
    publish.push_folder(tiny_baby, repo, revision="checkpoint-2")
    argv = ["train", "--num-processes", "2", *_args(tiny_baby, small_train_dir, tmp_path / "run", repo)]
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "hub_tools", *argv], cwd=REPO_ROOT, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "--hub_model_id babyhub-tests/dpo-processes-taken already has checkpoint" in errors[0]
    assert time.monotonic() - started < TIMEOUT / 2  # nothing waited for a collective's timeout
    assert not (tmp_path / "run" / "logs").exists()


def test_a_process_failing_mid_run_ends_the_run_and_keeps_saved_checkpoints(
    local_hub, tiny_baby, small_train_dir, tmp_path
):
    # Rank 1 fails in its 4th training step, after checkpoint-2 was saved and queued by the main process.
    script = tmp_path / "failing_rank.py"
    script.write_text(
        "import os, sys\n"
        f"sys.path.insert(0, {str(REPO_ROOT)!r})\n"
        "import trl\n"
        "import train_dpo\n"
        "step, calls = trl.DPOTrainer.training_step, []\n"
        "def failing(self, *args, **kwargs):\n"
        "    calls.append(1)\n"
        "    if os.environ['RANK'] == '1' and len(calls) == 4:\n"
        "        raise RuntimeError('rank 1 failed on purpose')\n"
        "    return step(self, *args, **kwargs)\n"
        "trl.DPOTrainer.training_step = failing\n"
        "sys.exit(train_dpo.run(sys.argv[1:]))\n"
    )
    repo = "babyhub-tests/dpo-processes-failing"
    done = _torchrun(script, _args(tiny_baby, small_train_dir, tmp_path / "run", repo))
    assert done.returncode != 0 and "rank 1 failed on purpose" in done.stderr
    commits = _commits(repo)
    assert commits["checkpoint-2"] == ["Checkpoint at step 2", "initial commit"]  # pushed before stopping
    assert commits["main"] == ["initial commit"]  # no final model


def test_launch_options_and_commands():
    assert launch.split_num_processes(["--config", "r.yaml", "--num-processes", "2", "--seed", "1"]) == (
        2,
        ["--config", "r.yaml", "--seed", "1"],
    )
    assert launch.split_num_processes(["--num-processes=3"]) == (3, [])
    assert launch.split_num_processes(["--seed", "1"]) == (1, ["--seed", "1"])
    for bad in (["--num-processes", "0"], ["--num-processes", "two"], ["--num-processes"]):
        with pytest.raises(Exception, match="--num-processes"):
            launch.split_num_processes(bad)
    cpu = launch.launch_command("train_dpo.py", ["--seed", "1"], 2, gpus=0)
    assert cpu[1:] == [
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "train_dpo.py",
        "--seed",
        "1",
    ]
    gpu = launch.launch_command("train_dpo.py", [], 4, gpus=4)
    assert gpu[1:] == ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "4", "train_dpo.py"]


def test_one_process_runs_steps_directly():
    def fails():
        raise ValueError("boom")

    processes = Processes()
    assert processes.is_main and processes.run(lambda x: x + 1, 1) == 2
    assert processes.run(lambda: 5, on="main") == 5 and processes.run(lambda: 6, on="local_main_first") == 6
    with pytest.raises(ValueError, match="boom"):  # alone, an error is the step's own, never a PeerFailed
        processes.run(fails)
    with pytest.raises(ValueError, match="on must be"):
        processes.run(fails, on="everywhere")
