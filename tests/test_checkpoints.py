"""The checkpoint push queue: in order, never skipping, never blocking, failures retried and reported."""

import threading
import time
from pathlib import Path

import pytest
from huggingface_hub import HfApi, hf_hub_download

from hub_tools.errors import BabyhubError
from hub_tools.hub.publish import PushResult
from hub_tools.training import checkpoints
from hub_tools.training.checkpoints import CheckpointPushQueue, stage_checkpoint


class FakeHub:
    """Records pushes; fails a revision's first `failures[revision]` attempts; each push takes `delay` s."""

    def __init__(self, delay=0.0, failures=None):
        self.delay, self.failures, self.calls, self.lock = delay, dict(failures or {}), [], threading.Lock()

    def __call__(self, folder, repo_id, *, revision, overwrite_branch, **kwargs):
        time.sleep(self.delay)
        with self.lock:
            self.calls.append((revision, overwrite_branch, (Path(folder) / "README.md").read_text()))
            if self.failures.get(revision, 0) > 0:
                self.failures[revision] -= 1
                raise ConnectionError(f"hub down for {revision}")
        return PushResult(repo_id, "model", revision, "c0ffee", f"http://hub/{repo_id}/tree/{revision}")


def _folders(tmp_path, steps):
    out = {}
    for step in steps:
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "README.md").write_text(f"step {step}")
        out[step] = folder
    return out


def test_submit_returns_at_once_and_every_checkpoint_is_pushed_in_order(tmp_path):
    hub = FakeHub(delay=0.3)
    queue = CheckpointPushQueue("me/run", push=hub, retry_wait=0, remove_after_push=True)
    started = time.monotonic()
    folders = _folders(tmp_path, [2, 4, 6])
    for step, folder in folders.items():
        queue.submit(step, folder)
    assert time.monotonic() - started < 0.2  # three pushes of 0.3 s each are still running
    assert queue.pending() >= 2
    report = queue.close(timeout=30)
    assert report.ok
    assert [c[0] for c in hub.calls] == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    assert list(report.pushed) == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    assert not any(f.exists() for f in folders.values())  # staged copies go once pushed


def test_prepare_runs_in_the_push_thread_before_the_push(tmp_path):
    hub = FakeHub()
    queue = CheckpointPushQueue("me/run", push=hub, retry_wait=0)
    threads = []

    def prepare(job):
        threads.append(threading.current_thread().name)
        (job.folder / "README.md").write_text(f"card of {job.revision}")

    queue.submit(2, _folders(tmp_path, [2])[2], prepare=prepare)
    queue.close(timeout=30)
    assert threads == ["checkpoint-push"]
    assert hub.calls[0][2] == "card of checkpoint-2"


def test_a_push_that_keeps_failing_is_retried_after_the_others_and_then_reported(tmp_path):
    # checkpoint-4 always fails: 3 attempts while training runs, 3 more at close(), then it is reported.
    # checkpoint-6 behind it is not held up; checkpoint-8 fails its 3 first attempts and lands at close().
    hub = FakeHub(failures={"checkpoint-4": 100, "checkpoint-8": 3})
    queue = CheckpointPushQueue("me/run", push=hub, retry_wait=0, max_attempts=3, remove_after_push=True)
    folders = _folders(tmp_path, [2, 4, 6, 8])
    for step, folder in folders.items():
        queue.submit(step, folder)
    report = queue.close(timeout=30)
    assert set(report.pushed) == {"checkpoint-2", "checkpoint-6", "checkpoint-8"}
    assert list(report.failed) == ["checkpoint-4"] and "hub down" in report.failed["checkpoint-4"]
    assert not report.ok and folders[4].is_dir()  # what never landed stays on disk
    revisions = [c[0] for c in hub.calls]
    assert revisions.count("checkpoint-4") == 6 and revisions.index("checkpoint-6") < revisions.index("checkpoint-8")


def test_only_steps_after_a_resume_point_may_replace_a_branch(tmp_path):
    hub = FakeHub()
    queue = CheckpointPushQueue("me/run", push=hub, retry_wait=0, overwrite_after=4)
    for step, folder in _folders(tmp_path, [4, 6]).items():
        queue.submit(step, folder)
    queue.close(timeout=30)
    assert [(c[0], c[1]) for c in hub.calls] == [("checkpoint-4", False), ("checkpoint-6", True)]


def test_staging_keeps_model_files_and_never_the_optimizer(tmp_path, tiny_baby):
    checkpoint = tmp_path / "checkpoint-10"
    checkpoint.mkdir()
    for f in tiny_baby.iterdir():
        (checkpoint / f.name).write_bytes(f.read_bytes())
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin", "trainer_state.json"):
        (checkpoint / name).write_bytes(b"{}")
    staged = stage_checkpoint(checkpoint, tmp_path / ".push" / "checkpoint-10")
    names = {p.name for p in staged.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "trainer_state.json"} <= names
    assert not names & {"optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin", "README.md"}
    assert (staged / "model.safetensors").stat().st_ino == (checkpoint / "model.safetensors").stat().st_ino

    # A checkpoint without safetensors weights (a sharded save) is refused: its branch would hold no model.
    (checkpoint / "model.safetensors").unlink()
    (checkpoint / "pytorch_model_fsdp_0").mkdir()
    with pytest.raises(BabyhubError, match="checkpoint-10 holds no model weights as safetensors.*FULL_STATE_DICT"):
        stage_checkpoint(checkpoint, tmp_path / ".push" / "checkpoint-10")


def test_real_pushes_to_the_local_hub_make_one_branch_per_checkpoint(local_hub, tiny_baby, tmp_path, monkeypatch):
    from hub_tools.hub import publish

    monkeypatch.setattr(publish, "BACKOFF_BASE", 0.05)
    repo = "babyhub-tests/queue-real"
    queue = CheckpointPushQueue(repo, retry_wait=0)
    local_hub.faults.clear()
    local_hub.faults.add("commit", "503", times=2)
    try:
        for step in (1, 2):
            staged = stage_checkpoint(tiny_baby, tmp_path / f"checkpoint-{step}")
            (staged / "README.md").write_text(f"checkpoint {step}")
            queue.submit(step, staged)
        report = queue.close(timeout=120)
    finally:
        local_hub.faults.clear()
    assert report.ok, report.failed
    branches = {b.name for b in HfApi().list_repo_refs(repo).branches}
    assert {"checkpoint-1", "checkpoint-2"} <= branches
    assert Path(hf_hub_download(repo, "README.md", revision="checkpoint-2")).read_text() == "checkpoint 2"
    # A second push of the same files is recognised: no new commit.
    again = CheckpointPushQueue(repo, retry_wait=0)
    again.submit(2, tmp_path / "checkpoint-2")
    assert again.close(timeout=60).pushed == {"checkpoint-2": None}


@pytest.fixture(autouse=True)
def _no_retry_wait(monkeypatch):
    monkeypatch.setattr(checkpoints, "RETRY_WAIT", 0.0)


def test_staging_lists_and_the_push_thread_hashes_each_file_once(local_hub, tiny_baby, tmp_path, monkeypatch):
    from hub_tools.hub import publish

    hashed = []
    real_read = publish.read_folder_files

    def counting_read(folder, *args, **kwargs):
        files = real_read(folder, *args, **kwargs)
        hashed.append((Path(folder).name, threading.current_thread().name, sorted(files)))
        return files

    monkeypatch.setattr(publish, "read_folder_files", counting_read)
    staged = stage_checkpoint(tiny_baby, tmp_path / ".push" / "checkpoint-3")
    assert hashed == []  # staging only lists the files
    (staged / "README.md").write_text("---\nlicense: apache-2.0\n---\ncheckpoint 3\n")
    queue = CheckpointPushQueue("babyhub-tests/queue-hash-once", retry_wait=0)
    queue.submit(3, staged)
    assert queue.close(timeout=120).ok
    assert [(name, thread) for name, thread, _ in hashed] == [("checkpoint-3", "checkpoint-push")]
    assert "model.safetensors" in hashed[0][2]


def test_resume_points_are_checkpoint_folders_or_checkpoint_branches(tmp_path):
    from hub_tools.errors import BabyhubError

    folder = tmp_path / "checkpoint-4"
    folder.mkdir()
    with pytest.raises(BabyhubError, match=f"{folder} has no trainer_state.json"):
        checkpoints.resolve_resume(str(folder), tmp_path / ".resume")
    (folder / "trainer_state.json").write_text('{"global_step": 4}')
    assert checkpoints.resolve_resume(str(folder), tmp_path / ".resume") == checkpoints.ResumePoint(str(folder), 4)
    assert checkpoints.resolve_resume(None, tmp_path) is None
    for value in ("me/run", "me/run@main", "me/run@checkpoint-x", "not a ref@checkpoint-2", str(tmp_path / "gone")):
        with pytest.raises(BabyhubError, match="not a folder, and not NAMESPACE/NAME@checkpoint-<step>"):
            checkpoints.resolve_resume(value, tmp_path / ".resume")


def test_other_processes_read_the_branch_the_first_one_downloaded(tmp_path):
    from hub_tools.branches import Revision
    from hub_tools.errors import BabyhubError

    # Without downloading, a branch resolves to the folder the node's first process filled: no Hub is asked (this
    # repo exists nowhere), and a missing folder is an error, not a second download.
    with pytest.raises(BabyhubError, match="me/run@checkpoint-4 has no trainer_state.json"):
        checkpoints.resolve_resume("me/run@checkpoint-4", tmp_path / ".resume", download=False)
    downloaded = tmp_path / ".resume" / "checkpoint-4"
    downloaded.mkdir(parents=True)
    (downloaded / "trainer_state.json").write_text('{"global_step": 4}')
    point = checkpoints.resolve_resume("me/run@checkpoint-4", tmp_path / ".resume", download=False)
    assert point == checkpoints.ResumePoint(str(downloaded), 4, Revision.of_branch("checkpoint-4"))


def test_a_resumed_run_keeps_the_branches_up_to_its_step(local_hub, tiny_baby):
    from hub_tools.errors import BabyhubError
    from hub_tools.hub.publish import push_folder

    repo = "babyhub-tests/queue-push-target"
    assert checkpoints.check_push_target(repo, None) == []  # no repo yet: a fresh run may start
    for step in (2, 4, 10):
        push_folder(tiny_baby, repo, revision=f"checkpoint-{step}")
    kept = checkpoints.check_push_target(repo, 4)
    assert [(r.name, r.step) for r in kept] == [("checkpoint-2", 2), ("checkpoint-4", 4)]
    with pytest.raises(BabyhubError, match=rf"^{repo} already has checkpoint branches .*{repo}@checkpoint-10"):
        checkpoints.check_push_target(repo, None)
