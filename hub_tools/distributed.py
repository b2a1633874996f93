"""Work split over the processes of `torchrun` or `accelerate launch`: who does what, and one outcome for all.

    torchrun --nproc_per_node 2 -m hub_tools eval minpairs ...   # CPUs: gloo, one thread each with OMP_NUM_THREADS=1
    accelerate launch -m hub_tools eval minpairs ...             # GPUs: one process per GPU

Evaluation (`hub_tools.evaluation.distributed`) and synthesis (`hub_tools.data.synthesize`) split their work into
units that give the same result whichever process runs them (a revision × dataset × method; a batch of rows with
per-row seeds), so a run on N processes has the rows of a run on one. What they share is here:

- `current_processes` reads the launcher's environment (WORLD_SIZE, RANK, LOCAL_RANK) and, when there is more
  than one process, joins the process group through accelerate's `PartialState` (gloo on CPUs, NCCL on GPUs);
  without a launcher it is one process and nothing is initialised.
- `contiguous_shares` splits units into one contiguous range per process, balanced by weight, so a process
  touches few revisions and the main process can put the results back in order.
- `run_in_lockstep` runs each process's share one unit at a time and, after every step, tells every process
  whether any failed: an error on one process ends every process with its message (`RankFailed` on the others)
  at the next step, instead of leaving them to finish their shares or to wait forever for a result.
- `run_on_each` runs a set-up step on every process and `run_on_main` a step on the main process only (reading
  or writing shared files), with the same contract;
  `gather_to_main` and `broadcast_from_main` move Python objects.

Python objects travel over a gloo group of their own (also under NCCL, so no GPU copies are made) whose timeout is
`COLLECTIVE_TIMEOUT`: a process waits at a step for the slowest unit of the others, which can take far longer than
torch's default 30 minutes (BLiMP on a large model). A process that dies instead of raising (killed, out of
memory) is the launcher's to handle: torchrun stops the others.

Standard library at import; torch and accelerate only when more than one process runs.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from hub_tools.errors import BabyhubError

logger = logging.getLogger(__name__)

T = TypeVar("T")

# How long a process waits at a step for the others (see the module docstring).
COLLECTIVE_TIMEOUT = timedelta(hours=24)


class RankFailed(BabyhubError):
    """Another process of the run failed: this one stops too, with that process's message."""


@dataclass(frozen=True)
class Processes:
    """This process's place among the processes of a launch (`rank` 0 of 1 without a launcher)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    group: Any = field(default=None, repr=False, compare=False)  # the gloo group Python objects travel over

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def __str__(self) -> str:
        return f"rank {self.rank} of {self.world_size}"


SINGLE = Processes()


def launched_world_size() -> int:
    """The number of processes the launcher started (WORLD_SIZE; 1 without a launcher)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise BabyhubError(
            f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number: start babyhub with torchrun or accelerate "
            "launch, or unset it"
        ) from None


def current_processes(device: str = "cpu") -> Processes:
    """This process's rank among the launcher's processes, joining the process group when there are several.

    `device` chooses the backend as accelerate does: a CUDA device joins with NCCL (`accelerate launch`), anything
    else with gloo (`torchrun` on CPUs; accelerate's MULTI_CPU). Calling it again returns the same processes.
    """
    if launched_world_size() <= 1:
        return SINGLE
    global _CURRENT
    if _CURRENT is None:
        import torch.distributed as dist
        from accelerate import PartialState

        state = PartialState(cpu=not str(device).startswith("cuda"))
        if state.num_processes <= 1:
            raise BabyhubError(
                f"WORLD_SIZE is {launched_world_size()} but accelerate found no process group to join (device "
                f"{device}): on CPUs launch with `torchrun --nproc_per_node N`; `accelerate launch --cpu` starts "
                "one process unless MPI is set up"
            )
        group = dist.new_group(backend="gloo", timeout=COLLECTIVE_TIMEOUT)
        _CURRENT = Processes(state.process_index, state.num_processes, state.local_process_index, group)
        leave_process_groups_at_exit()
        logger.info("joined the process group as %s (backend %s)", _CURRENT, state.backend)
    return _CURRENT


def leave_process_groups_at_exit() -> None:
    """Have this process destroy its process groups before the interpreter exits (registered once).

    Called on joining a launch: here, and by training's `Processes.of` (whose group accelerate starts).
    """
    global _LEAVING
    if not _LEAVING:
        atexit.register(_leave_process_groups)
        _LEAVING = True


_LEAVING = False


def exit_process(code: int) -> None:
    """End this process with `code`; a process of a launch skips the interpreter's C++ teardown.

    A launched process that returned from its work sometimes aborted at interpreter exit ("terminate called without
    an active exception", SIGABRT, the launch failed though every row was written), with or without its process
    groups destroyed: a native thread torn down by a static destructor. A process of a launch therefore runs the
    Python exit handlers (the groups left, logs and files flushed) and then `os._exit`; a single process exits as
    usual.
    """
    try:
        launched = launched_world_size() > 1
    except BabyhubError:  # a WORLD_SIZE that is not a number: the command has already said so
        launched = False
    if not launched:
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _leave_process_groups() -> None:
    """Destroy the process groups before the interpreter exits (registered on joining).

    A process that exits with its gloo groups alive can abort in C++ ("terminate called without an active
    exception", SIGABRT) while torch's threads are torn down: seen on a loaded machine on the process that finished
    first, which turned a run whose work was done into a failed launch. No barrier here: a process only gets here
    after the last step every process takes together, and waiting for a peer that died would hang.
    """
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


_CURRENT: Processes | None = None


def device_of(device: str, processes: Processes) -> str:
    """The device this process runs on: `cuda` means this process's own GPU (`cuda:<local rank>`) under a launcher."""
    if processes.is_distributed and device == "cuda":
        return f"cuda:{processes.local_rank}"
    return device


# ------------------------------------------------------------------------------------------------ the split
def contiguous_shares(weights: Sequence[float], world_size: int) -> list[range]:
    """Unit indices for each process: contiguous ranges in unit order, balanced by weight.

    Unit i goes to the process whose slice of the total weight holds the middle of unit i, so the shares are
    contiguous (a process meets each revision of an ordered sweep in one run of units) and their weights differ by
    at most about one unit. A process may get no unit when there are fewer units than processes.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be at least 1, got {world_size}")
    if any(w < 0 for w in weights):
        raise ValueError("unit weights must not be negative")
    total = float(sum(weights))
    owners, before = [], 0.0
    for i, weight in enumerate(weights):
        if total > 0:
            middle = (before + weight / 2) / total
        else:  # all weights zero: by count
            middle = (i + 0.5) / len(weights)
        owners.append(min(world_size - 1, int(middle * world_size)))
        before += weight
    starts = [next((i for i, owner in enumerate(owners) if owner >= rank), len(owners)) for rank in range(world_size)]
    return [
        range(starts[rank], starts[rank + 1] if rank + 1 < world_size else len(owners)) for rank in range(world_size)
    ]


# --------------------------------------------------------------------------------------------- collectives
def _all_gather(obj: Any, processes: Processes) -> list[Any]:
    if not processes.is_distributed:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * processes.world_size
    dist.all_gather_object(out, obj, group=processes.group)
    return out


def broadcast_from_main(obj: T, processes: Processes) -> T:
    """The main process's `obj` on every process (what the others pass is ignored)."""
    if not processes.is_distributed:
        return obj
    import torch.distributed as dist

    box = [obj if processes.is_main else None]
    dist.broadcast_object_list(box, src=0, group=processes.group)
    return box[0]


def gather_to_main(obj: T, processes: Processes) -> list[T] | None:
    """Every process's `obj`, in rank order, on the main process; None on the others."""
    if not processes.is_distributed:
        return [obj]
    import torch.distributed as dist

    out: list[Any] | None = [None] * processes.world_size if processes.is_main else None
    dist.gather_object(obj, out, dst=0, group=processes.group)
    return out


def _failure(error: BaseException) -> tuple[str, str, bool]:
    return type(error).__name__, str(error), isinstance(error, BabyhubError)


def raise_if_any_failed(error: Exception | None, processes: Processes) -> None:
    """Tell every process whether any failed here (a collective step); raise on every process if one did.

    The failing process raises its own exception (its type and traceback kept); the others raise `RankFailed`
    with the message of the lowest failing rank, so every process ends with it.
    """
    if not processes.is_distributed:
        if error is not None:
            raise error
        return
    failures = _all_gather(None if error is None else _failure(error), processes)
    if error is not None:
        raise error
    for rank, failure in enumerate(failures):
        if failure is not None:
            kind, message, expected = failure
            where = f"{Processes(rank, processes.world_size)}"
            raise RankFailed(f"{message} (on {where})" if expected else f"{where} failed: {kind}: {message}")


def run_in_lockstep(tasks: Sequence[Callable[[], T]], processes: Processes, steps: int) -> list[T]:
    """Run this process's `tasks` one per step for `steps` steps (the longest share), checking all after each.

    Every process must call it with the same `steps`; a process with fewer tasks takes part in the remaining
    checks idle. Returns this process's results in task order; raises on every process as soon as one fails.
    """
    if len(tasks) > steps:
        raise ValueError(f"{len(tasks)} tasks cannot run in {steps} steps")
    results: list[T] = []
    for step in range(steps):
        error = None
        if step < len(tasks):
            try:
                results.append(tasks[step]())
            except Exception as err:  # every kind: the other processes must learn of it, not wait for it
                error = err
        raise_if_any_failed(error, processes)
    return results


def run_on_each(task: Callable[[], T], processes: Processes) -> T:
    """Run `task` on every process (a set-up step such as loading a model); an error on any raises on every one."""
    if not processes.is_distributed:
        return task()
    return run_in_lockstep([task], processes, 1)[0]


def run_on_main(task: Callable[[], T], processes: Processes) -> T | None:
    """Run `task` on the main process only; every process learns its outcome (its error raises everywhere).

    Returns the task's result on the main process and None on the others.
    """
    if not processes.is_distributed:
        return task()
    result, error = None, None
    if processes.is_main:
        try:
            result = task()
        except Exception as err:
            error = err
    raise_if_any_failed(error, processes)
    return result
