"""The evaluation sweep: one model × its revisions × datasets × scoring methods -> one row per result.

`babyhub eval minpairs|blimp` and the demo run the same loop: load the model once per revision, score every
dataset with every method, keep each pair's margin. The scoring itself is `hub_tools.scoring` (the code the
`dialogue_minpairs` metric ships), so the CLI, the metric and the cards give the same accuracies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

from hub_tools import distributed, stats
from hub_tools.branches import Revision
from hub_tools.dialogue import TURN_SEPARATOR
from hub_tools.errors import BabyhubError
from hub_tools.evaluation.data import BlimpSuite, MinimalPairsData, first_empty
from hub_tools.scoring import LEGACY_METHODS, METHODS, SEQUENCE_METHODS, compare_pairs, score_minimal_pairs

if TYPE_CHECKING:
    from hub_tools.scoring import Scorer

# Texts per batch for `babyhub eval` and the demo: the fastest of 64-512 on the eval pairs (benchmarks/README.md).
EVAL_BATCH_SIZE = 256

# Every scoring method scores a minimal pair; only the sequence methods score a single sentence, as BLiMP needs.
# The legacy method (minicons 0.3.8's beginning-of-word correction) is offered to reproduce the original's BLiMP.
MINPAIR_METHODS = (*METHODS, *LEGACY_METHODS)
BLIMP_METHODS = tuple(SEQUENCE_METHODS)
DEFAULT_MINPAIR_METHOD = "sequence_mean"  # the DPO write-up's numbers
DEFAULT_BLIMP_METHOD = "sequence_sum_bow"  # minicons' summed log-probabilities with the beginning-of-word correction
# How each accuracy's 95 % interval is computed (hub_tools/stats.py): Wilson's score interval for a share of pairs;
# a stratified bootstrap over pairs within paradigms for BLiMP's macro-average (seeded: the same numbers each run).
MINPAIR_INTERVAL = "wilson"
BLIMP_INTERVAL = "stratified bootstrap"


@dataclass(frozen=True)
class EvalModel:
    """A model to evaluate, and how its scorer runs: the one object the sweep passes around.

    `source` is a Hub model id or a local folder; a local folder has no revisions (its one revision is
    reported as `main`).
    """

    source: str
    device: str = "cpu"
    batch_size: int = EVAL_BATCH_SIZE
    workers: int | None = None  # None: one single-threaded worker per torch thread on a CPU

    @property
    def is_local(self) -> bool:
        return Path(self.source).exists()

    def load(self, revision: Revision) -> Scorer:
        """The scorer of the model at `revision` (its commit when known, so a later push cannot change it)."""
        from hub_tools.scoring import Scorer, default_workers

        try:
            return Scorer.from_pretrained(
                self.source,
                None if self.is_local else (revision.commit or revision.name),
                device=self.device,
                batch_size=self.batch_size,
                workers=self.workers or default_workers(self.device),
            )
        except OSError as err:
            raise BabyhubError(
                f"could not load model {self.source} at revision {revision.name}: {err}. Check the model id, the "
                "revision and HF_ENDPOINT"
            ) from err


@dataclass
class MinpairsResult:
    """Accuracy on dialogue minimal pairs with its 95 % interval; `margins[i]` is score(chosen) - score(rejected)
    of pair i (a pair is right when its margin is positive: `outcomes`).

    The interval is Wilson's (`stats.accuracy_interval`); a result built from counts alone (e.g. a card's) gets it
    from `accuracy` and `n`.
    """

    dataset: str
    method: str
    accuracy: float
    n: int
    ties: int
    ci95_low: float | None = None
    ci95_high: float | None = None
    interval: str = MINPAIR_INTERVAL
    margins: list[float] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self):
        if self.ci95_low is None and self.ci95_high is None and self.n > 0:
            iv = stats.interval_from_counts(round(self.accuracy * self.n), self.n, method=MINPAIR_INTERVAL)
            self.ci95_low, self.ci95_high = iv.ci95_low, iv.ci95_high

    @property
    def outcomes(self) -> list[bool]:
        """Per pair, whether the model got it right (ties are wrong), in the data's order."""
        return [m > 0 for m in self.margins]


@dataclass
class BlimpResult:
    """BLiMP accuracy, macro-averaged over paradigms as the original work reports it, and each paradigm's.

    The macro-average's 95 % interval is a stratified bootstrap over pairs within paradigms
    (`stats.macro_accuracy_interval`); each paradigm's own interval (Wilson) is in `paradigm_ci95`.
    `margins[paradigm][i]` is score(grammatical) - score(ungrammatical) of that paradigm's pair i.
    """

    method: str
    accuracy: float
    n: int
    paradigms: dict[str, float] = field(default_factory=dict)
    margins: dict[str, list[float]] = field(default_factory=dict, repr=False, compare=False)
    dataset: str = "blimp"
    ci95_low: float | None = None
    ci95_high: float | None = None
    interval: str = BLIMP_INTERVAL
    paradigm_ci95: dict[str, list[float]] = field(default_factory=dict)

    @property
    def outcomes(self) -> list[bool]:
        """Per pair, whether the model got it right, paradigm after paradigm (in `paradigms`' order)."""
        return [m > 0 for margins in self.margins.values() for m in margins]


@dataclass(frozen=True)
class EvalRow:
    """One result of a sweep: a model at one revision, scored on one dataset with one method."""

    model: str
    revision: Revision
    result: MinpairsResult | BlimpResult

    def record(self) -> dict:
        """The flat record of the CSV and of `--json`: model, revision, step, then the result (no margins).

        Its keys are stable (other tools read them): model, revision, step, dataset, method, accuracy, n,
        ci95_low, ci95_high, interval, and ties (min-pairs) or paradigms and paradigm_ci95 (BLiMP).
        """
        result = {f.name: getattr(self.result, f.name) for f in fields(self.result) if f.name != "margins"}
        return {"model": self.model, "revision": self.revision.name, "step": self.revision.step, **result}


# ------------------------------------------------------------------------------------------------ scoring
class _PairProgress:
    """A tqdm bar counted in pairs, fed with the number of texts each scored batch held (two per pair)."""

    def __init__(self, total: int, desc: str, enabled: bool):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="pair", disable=not enabled, leave=False)
        self.texts = 0

    def __call__(self, texts: int) -> None:
        self.texts += texts
        self.bar.update(self.texts // 2 - self.bar.n)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.bar.close()


def evaluate_minpairs(
    scorer: Scorer, data: MinimalPairsData, method: str = DEFAULT_MINPAIR_METHOD, *, progress: bool = True
) -> MinpairsResult:
    """Accuracy of `scorer` on minimal pairs: the chosen (real) answer must score strictly higher."""
    n = len(data.prompts)
    if n == 0:
        raise BabyhubError(f"dataset {data.name} has no pairs")
    for column, texts in (("prompt", data.prompts), ("chosen", data.chosen), ("rejected", data.rejected)):
        row = first_empty(texts)
        if row is not None:
            raise BabyhubError(f"dataset {data.name}, row {row}: `{column}` is empty; fill it in or drop the row")
    with _PairProgress(n, f"{data.name} {method}", progress) as tick:
        try:
            chosen, rejected = score_minimal_pairs(
                scorer,
                data.prompts,
                data.chosen,
                data.rejected,
                method=method,
                separator=TURN_SEPARATOR,
                progress=tick,
            )
        except ValueError as err:
            raise BabyhubError(f"dataset {data.name}: {err}") from err
    result = compare_pairs(chosen, rejected, margins=True, outcomes=True)
    iv = stats.accuracy_interval(result["correct"], method=MINPAIR_INTERVAL)
    return MinpairsResult(
        data.name,
        method,
        result["accuracy"],
        result["n"],
        result["ties"],
        ci95_low=iv.ci95_low,
        ci95_high=iv.ci95_high,
        margins=result["margins"],
    )


def evaluate_blimp(
    scorer: Scorer, suite: BlimpSuite, method: str = DEFAULT_BLIMP_METHOD, *, progress: bool = True
) -> BlimpResult:
    """Per-paradigm accuracy (grammatical sentence scores strictly higher) and their macro-average."""
    if method not in BLIMP_METHODS:
        raise BabyhubError(f"BLiMP is scored with a sequence method ({', '.join(BLIMP_METHODS)}), not {method!r}")
    reduction, correction = SEQUENCE_METHODS[method]
    if not suite:
        raise BabyhubError("the BLiMP suite has no paradigms")
    # All paradigms in one call: the scorer fills whole batches and shares the beginnings that sentences of a
    # paradigm have in common, instead of 67 calls of a few batches each.
    good_all: list[str] = []
    bad_all: list[str] = []
    ends = {}
    for name, (good, bad) in suite.items():
        if not good or len(good) != len(bad):
            raise BabyhubError(
                f"BLiMP paradigm {name}: {len(good)} grammatical and {len(bad)} ungrammatical sentences; "
                "give at least one pair, the grammatical sentence first"
            )
        for kind, texts in (("grammatical", good), ("ungrammatical", bad)):
            pair = first_empty(texts)
            if pair is not None:
                raise BabyhubError(f"BLiMP paradigm {name}, pair {pair}: the {kind} sentence is empty")
        good_all += good
        bad_all += bad
        ends[name] = len(good_all)
    with _PairProgress(len(good_all), f"BLiMP {method}", progress) as tick:
        try:
            good_scores, bad_scores = scorer.pair_sequence_scores(
                good_all, bad_all, reduction=reduction, bow_correction=correction, progress=tick
            )
        except ValueError as err:
            raise BabyhubError(f"BLiMP: {err}") from err
    accuracies, margins, outcomes, own, start = {}, {}, {}, {}, 0
    for name, end in ends.items():
        result = compare_pairs(good_scores[start:end], bad_scores[start:end], margins=True, outcomes=True)
        accuracies[name], margins[name], outcomes[name] = result["accuracy"], result["margins"], result["correct"]
        iv = stats.accuracy_interval(result["correct"], method=MINPAIR_INTERVAL)
        own[name] = [iv.ci95_low, iv.ci95_high]
        start = end
    macro = stats.macro_accuracy_interval(outcomes)
    return BlimpResult(
        method,
        sum(accuracies.values()) / len(accuracies),
        len(good_all),
        accuracies,
        margins,
        ci95_low=macro.ci95_low,
        ci95_high=macro.ci95_high,
        paradigm_ci95=own,
    )


# -------------------------------------------------------------------------------------------------- sweep
def select_revisions(model: EvalModel, revision: str | None = None, *, every: bool = False) -> list[Revision]:
    """The revisions to evaluate: `revision` (default `main`), or with `every` each checkpoint branch and main.

    A local folder has one revision, reported as `main`.
    """
    if model.is_local:
        if every or revision:
            raise BabyhubError(
                f"{model.source} is a local folder, which has no revisions: push it to the Hub first (e.g. "
                "`babyhub train ... --push_to_hub`) and evaluate its id"
            )
        return [Revision("main")]
    if not every:
        return [Revision.of_branch(revision or "main")]
    from hub_tools.hub.revisions import list_revisions

    revisions = list_revisions(model.source)
    if not revisions:
        raise BabyhubError(f"{model.source}: the repo has no main or checkpoint-* branch to evaluate")
    return revisions


def _methods_for(data: MinimalPairsData | BlimpSuite, methods: Sequence[str] | None) -> tuple[str, ...]:
    """The methods that score `data` (its default when none are asked for); a method that cannot is an error."""
    minpairs = isinstance(data, MinimalPairsData)
    allowed = MINPAIR_METHODS if minpairs else BLIMP_METHODS
    if not methods:
        return (DEFAULT_MINPAIR_METHOD if minpairs else DEFAULT_BLIMP_METHOD,)
    for method in methods:
        if method not in allowed:
            what = f"the minimal pairs of {data.name}" if minpairs else "BLiMP"
            raise BabyhubError(f"method {method!r} cannot score {what}: use one of {', '.join(allowed)}")
    return tuple(methods)


def evaluate_revisions(
    model: EvalModel,
    revisions: Sequence[Revision],
    datasets: Sequence[MinimalPairsData | BlimpSuite],
    methods: Sequence[str] | None = None,
    *,
    progress: bool = True,
    processes: distributed.Processes | None = None,
) -> list[EvalRow] | None:
    """Score `model` at each revision on each dataset with each method: the sweep of `babyhub eval` and the demo.

    The model is loaded once per revision; every method is checked against every dataset before the first
    load, so a method that cannot score a dataset fails at once. Under a launcher (torchrun, accelerate launch)
    every process calls it with the same arguments and the revision × dataset × method units are split over the
    processes (`evaluation.distributed`); the main process gets the rows of a one-process run, bit for bit.

    Args:
        model: the model and how to run its scorer.
        revisions: the revisions to load, in the order the rows should have (`select_revisions` gives them).
        datasets: minimal pairs (`read_minpairs_data`) and/or BLiMP suites (`read_blimp_suite`).
        methods: scoring methods (`scoring.METHODS`); None scores each dataset with its default method
            (`sequence_mean` for minimal pairs, `sequence_sum_bow` for BLiMP).
        progress: show a progress bar per dataset and method (on the main process only, for its own share).
        processes: the processes to split over; default: the launcher's (`distributed.current_processes`), one
            process without a launcher.

    Returns:
        One `EvalRow` per revision, dataset and method, in that order; each keeps its pairs' margins. None on the
        other processes of a launch.
    """
    processes = processes or distributed.current_processes(model.device)
    if processes.is_distributed:
        from hub_tools.evaluation.distributed import evaluate_shares  # it builds on this module

        return evaluate_shares(model, revisions, datasets, methods, progress, processes)
    return _evaluate_here(model, revisions, datasets, methods, progress)


def _evaluate_here(model, revisions, datasets, methods, progress: bool) -> list[EvalRow]:
    """`evaluate_revisions`' arguments, scored in this process alone (also each unit of a launched sweep)."""
    plan = [(data, _methods_for(data, methods)) for data in datasets]
    rows = []
    for revision in revisions:
        scorer = model.load(revision)
        for data, data_methods in plan:
            for method in data_methods:
                if isinstance(data, MinimalPairsData):
                    result = evaluate_minpairs(scorer, data, method, progress=progress)
                else:
                    result = evaluate_blimp(scorer, data, method, progress=progress)
                rows.append(EvalRow(model.source, revision, result))
        del scorer  # free this revision's model before the next one loads
    return rows
