"""Synthesis on two processes (torchrun, gloo, one thread each): the rows of a one-process run, resumable per rank.

The tiny baby is the teacher (a real model, sampled with per-row seeds); torchrun starts `babyhub data synthesize`
itself (`python -m hub_tools`), whose main process prints the report the tests read.
"""

import re
import subprocess
import sys
import time
import types

import datasets
import psutil
import pytest

from hub_tools import distributed
from hub_tools.data.synthesize import RunState, load_teacher, synthesize_preferences
from hub_tools.errors import BabyhubError
from tests.distributed_worker import launch, rank_output, torchrun_command, worker_env

LIMIT, BATCH, SEED = 60, 2, 7  # 30 batches: enough for a kill to land while both processes are working


def load_rows(folder) -> list[dict]:
    return datasets.load_dataset(str(folder))["train"].to_list()


def synthesize_args(train, teacher, out) -> list[str]:
    """`babyhub data synthesize` of the reference run (`one_process`), as the command line gives it."""
    return ["data", "synthesize", "--train", str(train), "--teacher", str(teacher), "--out", str(out),
            "--limit", str(LIMIT), "--batch-size", str(BATCH), "--seed", str(SEED)]  # fmt: skip


@pytest.fixture(scope="module")
def one_process(tiny_baby, small_train_dir, tmp_path_factory):
    """The reference: the same synthesis on one process, here."""
    out = tmp_path_factory.mktemp("one-process") / "synthetic"
    report = synthesize_preferences(
        small_train_dir, str(tiny_baby), out, limit=LIMIT, batch_size=BATCH, seed=SEED, progress=False
    )
    return out, report


def test_the_synthesize_command_on_two_processes_writes_the_rows_of_one(
    one_process, tiny_baby, small_train_dir, tmp_path
):
    """`torchrun --nproc_per_node 2 -m hub_tools data synthesize ...`: the split and card of one process."""
    reference, reference_report = one_process
    out = tmp_path / "synthetic"
    result = launch(2, tmp_path / "logs", *synthesize_args(small_train_dir, tiny_baby, out), cli=True)
    assert result.returncode == 0, result.stderr
    assert load_rows(out) == load_rows(reference)
    assert (out / "README.md").read_text() == (reference / "README.md").read_text()  # the card does not say how
    logs = rank_output(tmp_path / "logs")
    assert logs[1]["stdout"] == ""  # the main process alone reports
    kept = re.compile(r"[\d,]+ of [\d,]+ rows kept \([^)]*\)")  # the same rows kept and filtered
    assert kept.search(logs[0]["stdout"]).group() == kept.search(reference_report.summary()).group()
    assert "on 2 processes" in logs[0]["stdout"]
    assert not (tmp_path / ".synthetic.partial").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--tensor-parallel-size", "0"], "--tensor-parallel-size must be at least 1 (got 0)"),
        (["--tensor-parallel-size", "2"], "a tensor parallel size of 2 needs the vllm backend, not transformers"),
    ],
)
def test_the_tensor_parallel_size_flag_refusals(capsys, small_train_dir, tiny_baby, tmp_path, extra, message):
    from hub_tools.cli import main

    argv = ["data", "synthesize", "--train", str(small_train_dir), "--teacher", str(tiny_baby)]
    assert main([*argv, "--out", str(tmp_path / "out"), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_vllm_backend_is_refused_under_a_launcher_by_the_command(capsys, monkeypatch, small_train_dir, tmp_path):
    from hub_tools.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    argv = ["data", "synthesize", "--train", str(small_train_dir), "--teacher", "org/teacher", "--backend", "vllm",
            "--tensor-parallel-size", "2", "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 2
    assert "the vllm backend runs in one process, not in each of 2 launched processes" in capsys.readouterr().err


def test_killed_ranks_resume_on_their_own(one_process, tiny_baby, small_train_dir, tmp_path):
    reference, _ = one_process
    out = tmp_path / "synthetic"
    partial = tmp_path / ".synthetic.partial"
    files = [partial / "answers.jsonl", partial / "answers.rank1.jsonl"]
    args = synthesize_args(small_train_dir, tiny_baby, out)
    proc = subprocess.Popen(
        torchrun_command(2, tmp_path / "logs-killed", *args, cli=True),
        env=worker_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    # kill -9 torchrun and both workers (each in a session of its own) as soon as each worker has saved a batch
    try:
        while not all(f.exists() and f.read_bytes().count(b"\n") >= 1 for f in files):
            assert proc.poll() is None, f"synthesis ended before it could be killed: {proc.stderr.read().decode()}"
            time.sleep(0.005)
    finally:
        workers = psutil.Process(proc.pid).children(recursive=True)
        proc.kill()
        for worker in workers:
            worker.kill()
        proc.wait()
        psutil.wait_procs(workers, timeout=30)
    done = [f.read_bytes().count(b"\n") for f in files]
    assert sum(done) < LIMIT // BATCH and not out.exists()
    with open(files[1], "ab") as handle:  # as if the kill had hit rank 1 in the middle of writing a batch
        handle.write(b'{"batch": 99, "answers": ["half')
    result = launch(2, tmp_path / "logs", *args, cli=True)
    assert result.returncode == 0, result.stderr
    summary = rank_output(tmp_path / "logs")[0]["stdout"]  # the report the main process prints
    assert f"{LIMIT // BATCH} batches, resumed after {sum(done)} finished batches, on 2 processes" in summary
    assert load_rows(out) == load_rows(reference)


def test_run_state_reads_every_rank_and_repairs_only_its_own_file(tmp_path):
    folder, settings, sizes = tmp_path / ".out.partial", {"seed": 1}, [2, 2, 2, 1]
    RunState.open(folder, settings, sizes, restart=False)
    (folder / "answers.jsonl").write_text('{"batch": 0, "answers": ["a", "b"]}\n{"batch": 2, "answers": ["e"]}\n')
    torn = '{"batch": 1, "answers": ["c", "d"]}\n{"batch": 3, "answers": ["g"]}\n{"batch": 3, "ans'
    (folder / "answers.rank1.jsonl").write_text(torn)
    state = RunState.open(folder, settings, sizes, restart=False)  # on one process: resumes a run of two
    # batch 2 has one answer for two rows: that line and what follows it do not count
    assert state.done == {0, 1, 3}
    assert (folder / "answers.jsonl").read_text() == '{"batch": 0, "answers": ["a", "b"]}\n'
    assert (folder / "answers.rank1.jsonl").read_text() == torn  # another process's file is only read
    state.append(2, ["e", "f"])
    assert state.read_batches() == {0: ["a", "b"], 1: ["c", "d"], 2: ["e", "f"], 3: ["g"]}
    with pytest.raises(BabyhubError, match=r"other settings \(seed differ\).*--restart"):
        RunState.open(folder, {"seed": 2}, sizes, restart=False)
    assert RunState.open(folder, {"seed": 2}, sizes, restart=True).done == set()


def test_vllm_takes_a_tensor_parallel_size_in_one_process(monkeypatch, small_train_dir, tmp_path):
    made = {}

    class LLM:
        def __init__(self, **kwargs):
            made.update(kwargs)

        def get_tokenizer(self):
            return types.SimpleNamespace(chat_template="{{ messages }}")

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM))
    teacher = load_teacher("vllm", "org/teacher", tensor_parallel_size=4)
    assert made == {"model": "org/teacher", "revision": None, "tensor_parallel_size": 4}
    assert teacher.prompt_style == "chat"
    with pytest.raises(BabyhubError, match="tensor parallel size of 2 needs the vllm backend, not transformers"):
        load_teacher("transformers", "org/teacher", tensor_parallel_size=2)
    with pytest.raises(BabyhubError, match="tensor parallel size 0: give a whole number of GPUs, at least 1"):
        load_teacher("vllm", "org/teacher", tensor_parallel_size=0)
    # Under a launcher of two processes, vLLM is refused before anything loads or waits for the other process.
    made.clear()
    two = distributed.Processes(0, 2)
    with pytest.raises(BabyhubError, match="the vllm backend runs in one process, not in each of 2 launched"):
        synthesize_preferences(small_train_dir, "org/teacher", tmp_path / "out", backend="vllm", processes=two)
    assert not (tmp_path / "out").exists() and made == {}
