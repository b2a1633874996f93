"""The Trainer callbacks of a babyhub run, each a module-level class given its state in `__init__`.

- `MetricsCSVCallback`: every log row into the metrics CSV as it is logged;
- `ResumedScheduleCallback`: a run resumed from a Hub branch (no optimizer or scheduler state) continues its
  learning-rate schedule where it was, not from step 0;
- `PushCheckpointsCallback`: on every save, the checkpoint's model files staged and queued for their own branch
  `checkpoint-<step>`, with a card written in the push thread.

In a run of several processes every process has its callbacks; what writes or pushes acts on the main process only.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

from transformers import TrainerCallback

from hub_tools.branches import checkpoint_branch, checkpoint_step
from hub_tools.training.card import RunCard
from hub_tools.training.checkpoints import CheckpointPushQueue, PushJob, check_push_target, stage_checkpoint
from hub_tools.training.metrics import MetricsLog, metrics_at


class MetricsCSVCallback(TrainerCallback):
    """Every log row to the metrics CSV, written by the main process; on resume the rows up to the checkpoint come
    from its state.

    Args:
        metrics_log: the `MetricsLog` of the run's CSV.
    """

    def __init__(self, metrics_log: MetricsLog):
        self.metrics_log = metrics_log

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:  # every process has the history; the main process writes it
            self.metrics_log.update([r for r in state.log_history if r.get("step", 0) <= state.global_step])

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero:
            self.metrics_log.update(state.log_history)


class ResumedScheduleCallback(TrainerCallback):
    """Move the learning-rate schedule on to the resumed step when the checkpoint brought no scheduler state.

    A Hub branch holds no optimizer or scheduler state (they are large and private to a run), so the Trainer
    would start the schedule at 0: warm-up again and a decay that never reaches its end.
    """

    def on_train_begin(self, args, state, control, **kwargs):
        scheduler = kwargs.get("lr_scheduler")
        if state.global_step and scheduler is not None and scheduler.last_epoch < state.global_step:
            with warnings.catch_warnings():
                # Stepping the schedule before the optimizer is the point here, not the mistake torch warns of.
                warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
                for _ in range(state.global_step - scheduler.last_epoch):
                    scheduler.step()


class PushCheckpointsCallback(TrainerCallback):
    """On every save: stage the checkpoint's model files and queue them for branch `checkpoint-<step>`.

    Staging hard-links the files (`stage_checkpoint`), so the Trainer may rotate or overwrite its checkpoint
    folder while the push runs; the card is written in the push thread (`PushJob.prepare`), so scoring the
    evaluation pairs never blocks training.

    Args:
        output_dir: the run's output folder (checkpoints in `checkpoint-<step>`, staging in `.push/`).
        pusher: the queue that pushes each staged checkpoint to its branch.
        card: what every card of the run states.
        branches: the checkpoint branches already on the Hub that the run keeps (a resumed run's earlier ones).
    """

    def __init__(self, output_dir: str | Path, pusher: CheckpointPushQueue, card: RunCard, branches=()):
        self.output_dir = Path(output_dir)
        self.pusher = pusher
        self.card = card
        self.branches = set(branches)

    @classmethod
    def start(
        cls, repo_id: str, output_dir: str | Path, card: RunCard, resume=None, *, private: bool = False
    ) -> PushCheckpointsCallback:
        """Check the repo, open the push queue and return the callback that feeds it.

        Args:
            repo_id: the model repo the checkpoints go to.
            output_dir: the run's output folder.
            card: what every card of the run states.
            resume: the run's `checkpoints.ResumePoint` (None for a fresh run): its branch and the earlier ones
                are kept, later ones are re-trained and replaced.
            private: create the repo private if it does not exist.

        Returns:
            The callback; its `pusher` is closed by the caller after training (`CheckpointPushQueue.close`).

        Raises:
            BabyhubError: a fresh run into a repo that has checkpoint branches, or the Hub cannot be reached.
        """
        resume_step = resume.step if resume is not None else None
        kept = check_push_target(repo_id, resume_step)
        pusher = CheckpointPushQueue(repo_id, private=private, overwrite_after=resume_step, remove_after_push=True)
        return cls(output_dir, pusher, card, [r.name for r in kept])

    def branches_until(self, step: int) -> list[str]:
        """The checkpoint branches known at `step`, in step order: what a card of that step links."""
        return sorted((b for b in self.branches if checkpoint_step(b) <= step), key=checkpoint_step)

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:  # the checkpoint is written, staged and pushed by the main process
            return
        step = state.global_step
        branch = checkpoint_branch(step)
        staged = stage_checkpoint(self.output_dir / branch, self.output_dir / ".push" / branch)
        self.branches.add(branch)
        prepare = functools.partial(
            self._write_card,
            step=step,
            epoch=state.epoch,
            metrics=metrics_at(state.log_history, step),
            branches=self.branches_until(step),
        )
        self.pusher.submit(step, staged, prepare=prepare)

    def _write_card(self, job: PushJob, **card) -> None:  # runs in the push thread
        self.card.write(job.folder, revision=job.revision, **card)
