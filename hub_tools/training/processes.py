"""The processes of a training run: one, or N started by `torchrun` or `accelerate launch`.

Every process runs `train_dpo.py` whole: it reads the data, builds the trainer, trains on its shard of every batch
and takes part in every save (DeepSpeed ZeRO-3 and FSDP gather the full weights from all ranks before the main
process writes them). What the run leaves behind is written once, by the main process: the metrics CSV, the plots,
the cards and the pushes. Files that every process reads (the datasets cache, a checkpoint downloaded from the Hub)
are made by the main process of each node first; the others wait, then read them.

Before training starts, a failure on one process must not leave the others waiting for it in a collective until the
timeout (30 minutes by default): each step that can fail runs through `Processes.run`, which exchanges every
process's outcome, so that all of them stop together. The first failing process raises its own error; the others
raise `PeerFailed`, which the face turns into a quiet exit with the same code. Once training runs, a process that
dies is the launcher's to handle: `torchrun` (under `accelerate launch` too) stops the others and exits non-zero.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from hub_tools.errors import BabyhubError

T = TypeVar("T")


class Stopped(BabyhubError):
    """The launcher stopped this process (SIGTERM): another process of the run failed, or the run was cancelled."""

    exit_code = 143


class PeerFailed(BabyhubError):
    """Another process of the run failed first; it printed the error, this process stops with its exit code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Processes:
    """Where this process stands in the run: its rank, the number of processes, its rank on its node.

    `Processes()` is a run of one process; `Processes.of(training_args)` reads the launcher's environment through
    the Trainer's arguments (which start the process group when the run has several processes).
    """

    index: int = 0
    count: int = 1
    local_index: int = 0

    @classmethod
    def of(cls, training_args) -> Processes:
        """The processes of the run `training_args` belongs to (starting the process group if there are several).

        Args:
            training_args: the run's `TrainingArguments`; reading its `world_size` sets up accelerate's state.

        Returns:
            This process's place in the run.
        """
        count = training_args.world_size
        if count > 1:
            from hub_tools.distributed import leave_process_groups_at_exit

            leave_process_groups_at_exit()
        return cls(training_args.process_index, count, training_args.local_process_index)

    @property
    def is_main(self) -> bool:
        """The process that writes and pushes (rank 0)."""
        return self.index == 0

    @property
    def is_local_main(self) -> bool:
        """The first process of its node: it makes the files its node's processes share."""
        return self.local_index == 0

    @contextlib.contextmanager
    def stopped_by_launcher(self) -> Iterator[None]:
        """Within the block, the launcher's SIGTERM raises `Stopped` instead of killing the process at once.

        When one process fails, torchrun (also under `accelerate launch`) sends SIGTERM to the others and SIGKILL
        30 s later. Raised as an exception, it lets the main process finish what it must not lose (the pushes of
        checkpoints already saved) before it exits. A run of one process keeps Python's default.
        """
        if self.count == 1 or threading.current_thread() is not threading.main_thread():
            yield
            return

        def stop(signum, frame):
            raise Stopped("stopped by the launcher (SIGTERM): another process of the run failed, or it was cancelled")

        previous = signal.signal(signal.SIGTERM, stop)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)

    def ignore_launcher_stop(self) -> None:
        """From now on the launcher's SIGTERM is ignored (its SIGKILL, 30 s later, still ends the process)."""
        if self.count > 1 and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def barrier(self) -> None:
        """Wait until every process gets here (nothing to wait for in a run of one)."""
        if self.count > 1:
            import torch.distributed as dist

            dist.barrier()

    def run(self, step: Callable[..., T], /, *args, on: str = "all", **kwargs) -> T | None:
        """Call `step(*args, **kwargs)` on the processes `on` names; stop every process if it fails on any of them.

        Args:
            step: what to do; an exception it raises is exchanged between the processes.
            *args, **kwargs: its arguments.
            on: "all" (every process at once), "main" (the main process alone; the others get None), or
                "local_main_first" (the first process of each node, then the others: for files a node shares).

        Returns:
            What `step` returned here (None where it did not run).

        Raises:
            The exception `step` raised, on the first process where it failed; `PeerFailed` on the others.
        """
        call = functools.partial(step, *args, **kwargs)
        if on == "all":
            return self._run_where(call, True)
        if on == "main":
            return self._run_where(call, self.is_main)
        if on == "local_main_first":
            first = self._run_where(call, self.is_local_main)
            then = self._run_where(call, not self.is_local_main)
            return first if self.is_local_main else then
        raise ValueError(f"on must be 'all', 'main' or 'local_main_first', not {on!r}")

    def _run_where(self, call: Callable[[], T], here: bool) -> T | None:
        result, error = None, None
        if here:
            try:
                result = call()
            except Exception as err:
                if self.count == 1:
                    raise
                error = err
        self._agree(error)
        return result

    def _agree(self, error: BaseException | None) -> None:
        """Exchange outcomes: raise `error` on the first failing process and `PeerFailed` on the others."""
        if self.count == 1:
            return
        import torch.distributed as dist

        outcome = None
        if error is not None:
            code = error.exit_code if isinstance(error, BabyhubError) else 1
            outcome = (f"{type(error).__name__}: {error}", code)
        outcomes: list = [None] * self.count
        dist.all_gather_object(outcomes, outcome)
        failed = [(rank, o) for rank, o in enumerate(outcomes) if o is not None]
        if not failed:
            return
        rank, (message, code) = failed[0]
        if rank == self.index and error is not None:
            raise error
        raise PeerFailed(f"process {rank} of {self.count} failed: {message}", code)
