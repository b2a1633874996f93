"""The evaluation sweep on N processes: revision × dataset × method units split across ranks, rows gathered in order.

    torchrun --nproc_per_node 2 -m hub_tools eval minpairs --model me/baby-dpo --all-revisions --data ...  # CPUs
    accelerate launch -m hub_tools eval blimp --model me/baby-dpo --all-revisions --suite ... --device cuda  # GPUs

`sweep.evaluate_revisions` calls `evaluate_shares` when it runs under a launcher: its rows come back in their order
on the main process (None on the others), so only the main process writes the CSV, the plot and the cards and
prints. A unit (one revision, one dataset, one method) is scored by one `sweep._evaluate_here` call on one process,
with the scorer and batches a one-process run uses, so its row is the one a one-process run gives, bit for bit
(pairs are never split across processes: a different batching would change the float sums, and a near-tie could
flip). Units are split into contiguous, pair-weighted shares (`distributed.contiguous_shares`); a process loads
only the revisions of its units, each once.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

from hub_tools import distributed
from hub_tools.branches import Revision
from hub_tools.evaluation.data import BlimpSuite, MinimalPairsData
from hub_tools.evaluation.sweep import EvalModel, EvalRow, _evaluate_here, _methods_for

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SweepUnit:
    """One revision × dataset × method of a sweep: one row of its result, scored by one process."""

    index: int  # position of its row in a one-process sweep
    revision: Revision
    dataset: int  # index into the sweep's datasets
    method: str
    pairs: int  # its weight in the split

    def describe(self, datasets) -> str:
        return f"{self.revision.name} × {datasets[self.dataset].name} × {self.method}"


def _pairs(data: MinimalPairsData | BlimpSuite) -> int:
    if isinstance(data, MinimalPairsData):
        return len(data.prompts)
    return sum(len(good) for good, _ in data.values())


def plan_units(
    revisions: Sequence[Revision], datasets: Sequence[MinimalPairsData | BlimpSuite], methods: Sequence[str] | None
) -> list[SweepUnit]:
    """The units of a sweep in the order of its rows (revision, then dataset, then method), as `evaluate_revisions`.

    Checks every method against every dataset first, as `evaluate_revisions` does, so an impossible method fails on
    every process before any model is loaded.
    """
    plan = [(i, _methods_for(data, methods), _pairs(data)) for i, data in enumerate(datasets)]
    units = []
    for revision in revisions:
        for dataset, data_methods, pairs in plan:
            for method in data_methods:
                units.append(SweepUnit(len(units), revision, dataset, method, pairs))
    return units


class _OneScorerAtATime:
    """An `EvalModel` whose `load` keeps the last scorer: a process's consecutive units of one revision load it once.

    The previous revision's scorer is dropped before the next loads, so one model at a time is in memory.
    """

    def __init__(self, model: EvalModel, processes: distributed.Processes):
        self._model, self._processes = model, processes
        self._revision: Revision | None = None
        self._scorer = None

    def __getattr__(self, name):
        return getattr(self._model, name)

    def load(self, revision: Revision):
        if revision != self._revision:
            self._scorer = self._revision = None
            logger.info("%s: loading %s at %s", self._processes, self._model.source, revision.name)
            self._scorer = self._model.load(revision)
            self._revision = revision
        return self._scorer

    def release(self) -> None:
        self._scorer = self._revision = None


def evaluate_shares(
    model: EvalModel,
    revisions: Sequence[Revision],
    datasets: Sequence[MinimalPairsData | BlimpSuite],
    methods: Sequence[str] | None,
    progress: bool,
    processes: distributed.Processes,
) -> list[EvalRow] | None:
    """`sweep.evaluate_revisions` under a launcher: each process scores its share, the main process gets every row.

    Every process calls it with the same arguments (the revisions used are the main process's, so a checkpoint
    pushed while the processes list the branches cannot make them disagree). An error on any process (a revision
    that does not load, bad data) raises on every process, with that process's message, at the end of the unit
    it happened in.

    The arguments are `evaluate_revisions`' (a model device `cuda` means each process's own GPU); returns its rows
    on the main process, in its order, and None on the other processes.
    """
    # 1. The units, checked before any load or message; the main process's revisions, so all split the same list.
    plan_units(revisions, datasets, methods)
    revisions = distributed.broadcast_from_main(list(revisions), processes)
    units = plan_units(revisions, datasets, methods)
    shares = distributed.contiguous_shares([unit.pairs for unit in units], processes.world_size)
    mine = [units[i] for i in shares[processes.rank]]
    if processes.is_main:
        logger.info(
            "%d units over %d processes: %s",
            len(units),
            processes.world_size,
            "; ".join(f"rank {r}: {len(s)} units" for r, s in enumerate(shares)),
        )
    # 2. This process's units, one `evaluate_revisions` call each, every process checking on the others after each.
    own_model = dataclasses.replace(model, device=distributed.device_of(model.device, processes))
    scorers = _OneScorerAtATime(own_model, processes)
    show = progress and processes.is_main

    def score(unit: SweepUnit):
        (row,) = _evaluate_here(scorers, [unit.revision], [datasets[unit.dataset]], [unit.method], show)
        return unit.index, row

    tasks = [lambda unit=unit: score(unit) for unit in mine]
    scored = distributed.run_in_lockstep(tasks, processes, steps=max(len(s) for s in shares))
    scorers.release()  # the last revision's model, before the rows travel
    # 3. Every row on the main process, in the order of a one-process sweep.
    gathered = distributed.gather_to_main(scored, processes)
    if gathered is None:
        return None
    rows = dict(pair for share in gathered for pair in share)
    return [rows[unit.index] for unit in units]
