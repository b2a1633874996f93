"""Every checkpoint on the Hub, on its own branch, without ever slowing or stopping training.

The Trainer's own `hub_strategy` pushes all checkpoints to one branch and *skips* a push while the
previous one is still running. Here each save is staged (hard links of the model files, so a rotated
or half-overwritten checkpoint folder cannot change what is pushed) and queued; one background thread
pushes the queue in order to `checkpoint-<step>` with `hub_tools.hub.publish.push_folder` (which retries
connection errors and 5xx itself). A job that still fails is tried again after the others, at `close()`;
what fails even then is reported, never dropped silently. `submit` never waits for the network.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hub_tools.branches import Revision, checkpoint_branch, checkpoint_step
from hub_tools.errors import BabyhubError
from hub_tools.hub.revisions import list_revisions
from hub_tools.repos import InvalidName, parse_repo_ref

logger = logging.getLogger(__name__)

# What a checkpoint branch holds: the model and tokenizer files, the card, and the small trainer files a
# resume needs to continue the step count (trainer_state.json) and the schedule. Never the optimizer state.
CHECKPOINT_FILES = [
    "*.safetensors",
    "*.safetensors.index.json",
    "config.json",
    "generation_config.json",
    "tokenizer*",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "*.model",
    "chat_template.jinja",
    "trainer_state.json",
    "README.md",
]
RETRY_WAIT = 2.0  # seconds between a queue's own attempts at one job (push_folder retries inside each attempt)
EXCLUDED_FILES = ["optimizer.pt", "optimizer.bin", "scheduler.pt", "rng_state*.pth", "training_args.bin"]
# What `main` never holds of a run's output folder: the checkpoints (they have their branches), the staging and
# resume folders, TensorBoard runs and the training state.
FINAL_EXCLUDED = ["checkpoint-*", ".push/*", ".resume/*", "runs/*", "*.pt", "*.pth", "training_args.bin"]


def check_push_target(repo_id: str, resume_step: int | None) -> list[Revision]:
    """The checkpoint branches of `repo_id` that a run resumed at `resume_step` keeps, in step order.

    A fresh run (`resume_step` None) must not mix its checkpoints into a repo that already has some: their steps
    would interleave with another run's. Asked before training, so that an unreachable Hub fails the run before
    hours of training, not after.

    Args:
        repo_id: the model repo the run pushes to.
        resume_step: the step the run resumes from, or None for a fresh run.

    Returns:
        The branches at or before `resume_step` (later ones are re-trained and replaced); [] for a fresh run.

    Raises:
        BabyhubError: a fresh run into a repo with checkpoint branches, or the Hub cannot be reached.
    """
    existing = [r for r in list_revisions(repo_id, missing_ok=True, main_step=False) if r.name != "main"]
    if existing and resume_step is None:
        raise BabyhubError(
            f"{repo_id} already has checkpoint branches ({', '.join(r.name for r in existing)}): resume that run "
            f"from one of them ({repo_id}@{existing[-1].name}), or push to another repo."
        )
    return [r for r in existing if resume_step is not None and r.step <= resume_step]


@dataclass(frozen=True)
class ResumePoint:
    """Where a run resumes: a checkpoint folder with its `trainer_state.json`, the step it holds, and (for a
    checkpoint downloaded from the Hub) the branch it came from."""

    path: str
    step: int
    revision: Revision | None = None


def resolve_resume(value: str | None, download_dir: str | Path, *, download: bool = True) -> ResumePoint | None:
    """A local checkpoint folder as it is; `NAMESPACE/NAME@checkpoint-<step>` downloaded from the Hub.

    A Hub branch holds the model and `trainer_state.json` but no optimizer state (`CHECKPOINT_FILES`): the
    Trainer resumes the step count and the log history from it, and a fresh optimizer.

    Args:
        value: a checkpoint folder, a checkpoint branch reference, or None (no resume).
        download_dir: where a Hub checkpoint goes (in `download_dir/checkpoint-<step>`).
        download: download a Hub checkpoint (the first process of a node does); False reads the folder that
            process downloaded (the node's other processes of a multi-process run).

    Returns:
        The `ResumePoint`, or None when `value` is empty.
    """
    if not value:
        return None
    if Path(value).is_dir():
        state = Path(value) / "trainer_state.json"
        if not state.is_file():
            raise BabyhubError(f"{value} has no trainer_state.json: pass a checkpoint-<step> folder of a run.")
        return ResumePoint(value, int(json.loads(state.read_text())["global_step"]))
    try:
        ref = parse_repo_ref(value)
    except InvalidName:
        ref = None
    if ref is None or ref.revision is None or checkpoint_step(ref.revision) is None:
        raise BabyhubError(f"{value!r}: not a folder, and not NAMESPACE/NAME@checkpoint-<step> on the Hub.")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    target = Path(download_dir) / ref.revision
    if download:
        try:
            snapshot_download(ref.repo_id, revision=ref.revision, local_dir=target)
        except (RepositoryNotFoundError, RevisionNotFoundError, HfHubHTTPError) as err:
            raise BabyhubError(
                f"cannot download {value} from the Hub: {err}. Check the repo id and the branch."
            ) from err
    if not (target / "trainer_state.json").is_file():
        raise BabyhubError(f"{value} has no trainer_state.json: it was not pushed by babyhub's checkpoint queue.")
    return ResumePoint(str(target), checkpoint_step(ref.revision), Revision.of_branch(ref.revision))


def stage_checkpoint(checkpoint_dir: Path, staging_dir: Path) -> Path:
    """Copy (hard-link when possible) the files a branch holds from `checkpoint_dir` into `staging_dir`.

    The files are only listed here, on the training thread; the push thread reads and hashes them once, when it
    pushes. A hard link keeps the staged content even when the Trainer deletes or rewrites its checkpoint.

    Args:
        checkpoint_dir: a `checkpoint-<step>` folder the Trainer saved.
        staging_dir: the folder to (re)create with the files of `CHECKPOINT_FILES`, without the Trainer's card.

    Returns:
        `staging_dir`.
    """
    from hub_tools.hub.publish import list_folder_files

    # The card is written per branch later: never link the Trainer's README (writing would change both).
    files = list_folder_files(checkpoint_dir, CHECKPOINT_FILES, [*EXCLUDED_FILES, "README.md"])
    if not any(str(rel).endswith(".safetensors") for rel in files):
        raise BabyhubError(
            f"{checkpoint_dir} holds no model weights as safetensors, so its branch would have none: keep "
            "save_safetensors on; under DeepSpeed ZeRO-3 set zero3_save_16bit_model: true and under FSDP "
            "fsdp_state_dict_type: FULL_STATE_DICT in the accelerate config (see recipes/accelerate/)."
        )
    if staging_dir.exists():
        shutil.rmtree(staging_dir)
    staging_dir.mkdir(parents=True)
    for rel in files:
        src, dst = checkpoint_dir / rel, staging_dir / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:  # another file system, or links not allowed
            shutil.copy2(src, dst)
    return staging_dir


@dataclass
class PushJob:
    """One checkpoint to push: `prepare` (e.g. write its card) runs in the background before the push."""

    step: int
    folder: Path
    revision: str
    prepare: Callable[[PushJob], None] | None = None
    attempts: int = 0
    error: str | None = None


@dataclass
class QueueReport:
    """What the queue did: pushed revisions (with commit ids, None for "already there") and failures."""

    pushed: dict[str, str | None] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed


class CheckpointPushQueue:
    """Push checkpoints to their branches from a background thread, in order, never skipping one.

    queue = CheckpointPushQueue("me/baby-dpo")
    queue.submit(2000, stage_checkpoint(Path("out/checkpoint-2000"), Path("out/.push/checkpoint-2000")))
    report = queue.close()  # waits for the pushes; report.failed lists what never landed

    Args:
        repo_id: the model repo.
        private: create the repo private if it does not exist.
        overwrite_after: the step a run resumed from: branches of later steps (an abandoned run's) may be replaced.
        max_attempts: attempts at a job while training runs, and again at `close()`.
        retry_wait: seconds between attempts (default `RETRY_WAIT`).
        push: the push function (default `hub_tools.hub.publish.push_folder`; tests pass a fake hub).
        remove_after_push: delete a staged folder once it is on the Hub (failed ones stay).
    """

    def __init__(
        self,
        repo_id: str,
        *,
        private: bool = False,
        overwrite_after: int | None = None,
        max_attempts: int = 3,
        retry_wait: float | None = None,
        push: Callable | None = None,
        remove_after_push: bool = False,
    ):
        from hub_tools.hub.publish import push_folder

        self.repo_id = repo_id
        self.private = private
        # Steps after a resume point are re-trained: their branches (from the abandoned run) are replaced by a
        # new commit; the old one stays in the branch history.
        self.overwrite_after = overwrite_after
        self.max_attempts = max_attempts
        self.retry_wait = RETRY_WAIT if retry_wait is None else retry_wait
        self._push = push or push_folder
        self.remove_after_push = remove_after_push  # staged copies go once on the Hub; failed ones stay
        self._queue: queue.Queue[PushJob | None] = queue.Queue()
        self._retry_later: list[PushJob] = []
        self.report = QueueReport()
        self._thread = threading.Thread(target=self._work, name="checkpoint-push", daemon=True)
        self._thread.start()
        self._closed = False

    def submit(self, step: int, folder: Path, *, prepare: Callable[[PushJob], None] | None = None) -> PushJob:
        """Queue the staged folder of `step` for its branch; returns immediately."""
        if self._closed:
            raise RuntimeError("the push queue is closed")
        job = PushJob(step=step, folder=Path(folder), revision=checkpoint_branch(step), prepare=prepare)
        self._queue.put(job)
        return job

    def pending(self) -> int:
        """Jobs not yet finished (queued or running)."""
        return self._queue.unfinished_tasks

    def close(self, timeout: float | None = None) -> QueueReport:
        """Wait for every queued push, retry the ones that failed once more, and report."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"checkpoint pushes still running after {timeout}s")
        # A last round for jobs that failed while training ran: the hub may be back by now.
        for job in self._retry_later:
            self._run(job, final=True)
        self._retry_later.clear()
        return self.report

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                self._run(job, final=False)
            finally:
                self._queue.task_done()

    def _run(self, job: PushJob, *, final: bool) -> None:
        overwrite = self.overwrite_after is not None and job.step > self.overwrite_after
        for attempt in range(1, self.max_attempts + 1):
            job.attempts += 1
            try:
                if job.prepare is not None:
                    job.prepare(job)
                    job.prepare = None  # prepared once; a retry pushes the same files
                result = self._push(
                    job.folder,
                    self.repo_id,
                    revision=job.revision,
                    private=self.private,
                    commit_message=f"Checkpoint at step {job.step}",
                    allow_patterns=CHECKPOINT_FILES,
                    ignore_patterns=EXCLUDED_FILES,
                    overwrite_branch=overwrite,
                )
            except Exception as err:  # keep the queue alive whatever one push does
                job.error = f"{type(err).__name__}: {err}"
                logger.warning(
                    "push of %s to %s failed (attempt %d): %s", job.revision, self.repo_id, job.attempts, job.error
                )
                if attempt < self.max_attempts:  # no wait after the last attempt: the next job is waiting
                    time.sleep(self.retry_wait)
                continue
            job.error = None
            self.report.pushed[job.revision] = result.commit_oid
            self.report.failed.pop(job.revision, None)
            logger.info("pushed %s to %s", job.revision, result.url)
            if self.remove_after_push:
                shutil.rmtree(job.folder, ignore_errors=True)
            return
        self.report.failed[job.revision] = job.error or "unknown error"
        if not final:
            self._retry_later.append(job)


def push_final_model(folder: str | Path, repo_id: str, *, step: int, private: bool = False):
    """Push a run's output folder (the final model, its card, curves and metrics CSV) to `main` of `repo_id`.

    Args:
        folder: the run's output folder.
        repo_id: the model repo.
        step: the final step (named in the commit message).
        private: create the repo private if it does not exist.

    Returns:
        `hub_tools.hub.publish.PushResult` of the push.
    """
    from hub_tools.hub import publish

    return publish.push_folder(
        folder,
        repo_id,
        private=private,
        commit_message=f"Final model at step {step}",
        ignore_patterns=FINAL_EXCLUDED,
    )
