"""How sure an accuracy is: 95 % intervals, paired comparisons of two models, and the spread across seeds.

An accuracy on minimal pairs is a share of pairs a model gets right; on 7,548 pairs its 95 % interval is about
± 1.1 points, so a difference of 0.4 points between two models means nothing by itself. This module gives every
accuracy its interval, tells whether two models differ on the same pairs, and summarises repeated trainings. It
uses the standard library only, because it is shipped, as it is, beside the metric and the Spaces.

- `accuracy_interval(outcomes)`: the accuracy of per-pair outcomes (True = the pair is right) with its 95 %
  interval. The default is **Wilson's score interval**: it has a closed form (no seed, nothing to resample, the
  same numbers everywhere), it stays inside [0, 1], and its coverage is close to 95 % even for few pairs or
  accuracies near 0 or 1, where the normal ("Wald") interval and the percentile bootstrap cover too little (a
  bootstrap of 20 pairs all right is the single point [1, 1]). `method="bootstrap"` resamples the pairs with
  replacement (seeded, `resamples` times) and takes the 2.5th and 97.5th percentiles; on thousands of pairs the
  two agree to about 0.1 point.
- `macro_accuracy_interval(groups)`: the mean of per-group accuracies (BLiMP's macro-average over paradigms)
  with a stratified bootstrap: pairs are resampled within each group, since the groups themselves are fixed.
- `compare_paired(outcomes_a, outcomes_b)`: two models on the same pairs. The difference of their accuracies
  (A - B) with its 95 % interval, the 2 x 2 table of outcomes, and the exact McNemar `p_value`: under "the two
  models are equally good", each pair that only one model gets right is equally likely to be either model's, so
  the pairs only A gets right among the discordant ones follow Binomial(discordant, 1/2); the p-value is the
  two-sided binomial test of that count. The default interval is **Newcombe's hybrid score interval** for paired
  proportions (Newcombe 1998, "paired data", method 10: Wilson's intervals of both accuracies, combined with the
  continuity-corrected correlation of the outcomes, as in Altman et al.'s "Statistics with confidence"), for the
  same reasons as Wilson above and because it keeps a width when there are few or no discordant pairs (where a
  bootstrap collapses to [0, 0]); `method="bootstrap"` resamples the pairs instead.
- `summarize_seeds(values)`: mean and sample standard deviation of one accuracy across trainings with different
  seeds (the spread of training itself, which no per-pair interval shows).

The bootstrap draws are exact and fast: resampling n pairs with replacement and counting the right ones is a
draw of Binomial(n, observed accuracy), so each resample is one draw by inversion of a table built once (and
the paired bootstrap draws the discordant counts the same way) instead of n random indices. Results are
dataclasses with the fields `accuracy`, `ci95_low`, `ci95_high` the CSV, JSON and card outputs use
(`dataclasses.asdict` turns them into rows). Bad input raises `ValueError` naming the value and what to do.
"""

from __future__ import annotations

import bisect
import math
import random
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Z95 = statistics.NormalDist().inv_cdf(0.975)  # 1.959963984540054: the two-sided 95 % normal quantile
INTERVAL_METHODS = ("wilson", "bootstrap")
DIFFERENCE_METHODS = ("newcombe", "bootstrap")
# Resamples of a bootstrap: the Monte-Carlo error of its 2.5th/97.5th percentiles is then about 0.02 point on
# thousands of pairs, far below the interval's own width. The seed makes every bootstrap reproducible.
DEFAULT_RESAMPLES = 10_000
DEFAULT_SEED = 0
# A binomial table ends where a count is this many times less likely than the most likely one: the mass beyond
# is below double precision.
_TABLE_CUTOFF = 1e-20
_BINARY = {0, 1}  # also matches True/False, 0.0/1.0 and numpy booleans (equal values hash alike)


@dataclass(frozen=True)
class AccuracyInterval:
    """An accuracy with its 95 % interval.

    `correct` of `n` pairs are right (for a macro-average, summed over the groups). `method` is `wilson`,
    `bootstrap` or `stratified bootstrap`; `resamples` and `seed` are set for a bootstrap (None otherwise).
    """

    accuracy: float
    ci95_low: float
    ci95_high: float
    n: int
    correct: int
    method: str
    resamples: int | None = None
    seed: int | None = None

    def format(self, digits: int = 4) -> str:
        """`0.5766 [0.5654, 0.5877]`: the accuracy and its 95 % interval, for tables."""
        return f"{self.accuracy:.{digits}f} [{self.ci95_low:.{digits}f}, {self.ci95_high:.{digits}f}]"


@dataclass(frozen=True)
class PairedComparison:
    """Two models A and B on the same `n` pairs: accuracies, difference A - B with its 95 % interval, McNemar.

    The 2 x 2 table: `both_right`, `a_right_b_wrong`, `a_wrong_b_right`, `both_wrong`; the discordant pairs are
    the middle two, and `p_value` is the exact McNemar test on them (1.0 when there are none).
    """

    n: int
    accuracy_a: float
    accuracy_b: float
    difference: float
    ci95_low: float
    ci95_high: float
    both_right: int
    a_right_b_wrong: int
    a_wrong_b_right: int
    both_wrong: int
    p_value: float
    method: str
    resamples: int | None = None
    seed: int | None = None

    def format(self, digits: int = 4) -> str:
        """`+0.0040 [-0.0070, +0.0150], p = 0.481`: the difference A - B, its 95 % interval and McNemar's p."""
        interval = f"[{self.ci95_low:+.{digits}f}, {self.ci95_high:+.{digits}f}]"
        return f"{self.difference:+.{digits}f} {interval}, {format_p_value(self.p_value)}"


@dataclass(frozen=True)
class SeedSummary:
    """One accuracy across trainings with different seeds: mean and sample standard deviation (None for one)."""

    mean: float
    sd: float | None
    n: int
    values: tuple[float, ...]

    def format(self, digits: int = 4) -> str:
        """`0.5765 ± 0.0012 (3 seeds)`, or `0.5765 (1 seed)` when there is no spread to show."""
        if self.sd is None:
            return f"{self.mean:.{digits}f} (1 seed)"
        return f"{self.mean:.{digits}f} ± {self.sd:.{digits}f} ({self.n} seeds)"


# ---------------------------------------------------------------------------------------------- accuracies
def accuracy_interval(
    outcomes: Sequence[bool],
    *,
    method: str = "wilson",
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> AccuracyInterval:
    """Accuracy of per-pair outcomes (True or 1 = right) with its 95 % interval.

    Args:
        outcomes: one entry per pair, True (or 1) when the model gets the pair right.
        method: `wilson` (default, see the module docstring) or `bootstrap` (percentile, over pairs).
        resamples: bootstrap resamples (ignored by Wilson).
        seed: bootstrap seed (ignored by Wilson).

    Returns:
        An `AccuracyInterval`.
    """
    values = _check_outcomes(outcomes, "outcomes")
    return interval_from_counts(sum(values), len(values), method=method, resamples=resamples, seed=seed)


def interval_from_counts(
    correct: int,
    n: int,
    *,
    method: str = "wilson",
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> AccuracyInterval:
    """`accuracy_interval` from the count of right pairs and of all pairs (the same numbers)."""
    _check_counts(correct, n)
    _check_choice(method, INTERVAL_METHODS, "method")
    if method == "wilson":
        low, high = wilson_interval(correct, n)
        return AccuracyInterval(correct / n, low, high, n, correct, "wilson")
    _check_resamples(resamples)
    rng = random.Random(seed)
    table = _BinomialTable(n, correct / n)
    accuracies = sorted(table.draw(rng) / n for _ in range(resamples))
    low, high = _percentile(accuracies, 0.025), _percentile(accuracies, 0.975)
    return AccuracyInterval(correct / n, low, high, n, correct, "bootstrap", resamples, seed)


def wilson_interval(correct: int, n: int, *, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval of `correct` successes in `n` trials (z = 1.96 for 95 %)."""
    _check_counts(correct, n)
    p = correct / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    low = 0.0 if correct == 0 else max(0.0, centre - half)
    high = 1.0 if correct == n else min(1.0, centre + half)
    return low, high


def macro_accuracy_interval(
    groups: Mapping[str, Sequence[bool]], *, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
) -> AccuracyInterval:
    """Mean of the groups' accuracies (e.g. BLiMP over its paradigms) with a stratified bootstrap 95 % interval.

    Each resample redraws the pairs of every group within that group (the groups are fixed: BLiMP always has
    the same paradigms), so the interval reflects the pairs only. `correct` and `n` are summed over the groups.

    Args:
        groups: per group name, its per-pair outcomes (True or 1 = right); every group needs a pair.
        resamples: bootstrap resamples.
        seed: bootstrap seed.

    Returns:
        An `AccuracyInterval` with method `stratified bootstrap`.
    """
    if not groups:
        raise ValueError("there are no groups: give at least one group of pair outcomes")
    _check_resamples(resamples)
    counts = []
    for name, outcomes in groups.items():
        values = _check_outcomes(outcomes, f"groups[{name!r}]")
        counts.append((sum(values), len(values)))
    macro = statistics.fmean(k / n for k, n in counts)
    rng = random.Random(seed)
    # Each group's draw weighs 1 / (groups x its pairs) in the mean; a draw is a bisection of the group's table.
    draws = [(t.low, t.cdf, t.cdf[-1], 1 / (len(counts) * n)) for k, n in counts for t in [_BinomialTable(n, k / n)]]
    uniform, find = rng.random, bisect.bisect_right
    means = sorted(
        sum((low + find(cdf, uniform() * total)) * weight for low, cdf, total, weight in draws)
        for _ in range(resamples)
    )
    correct, total = sum(k for k, _ in counts), sum(n for _, n in counts)
    low, high = _percentile(means, 0.025), _percentile(means, 0.975)
    return AccuracyInterval(macro, low, high, total, correct, "stratified bootstrap", resamples, seed)


# ------------------------------------------------------------------------------------- paired comparison
def compare_paired(
    outcomes_a: Sequence[bool],
    outcomes_b: Sequence[bool],
    *,
    method: str = "newcombe",
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> PairedComparison:
    """Models A and B on the same pairs: both accuracies, A - B with its 95 % interval, exact McNemar p-value.

    Args:
        outcomes_a: model A's per-pair outcomes (True or 1 = right).
        outcomes_b: model B's outcomes on the same pairs, in the same order.
        method: `newcombe` (default, see the module docstring) or `bootstrap` (percentile, over pairs).
        resamples: bootstrap resamples (ignored by Newcombe's interval).
        seed: bootstrap seed (ignored by Newcombe's interval).

    Returns:
        A `PairedComparison`; pass the new model as A and the baseline as B to read `difference` as a gain.
    """
    a = _check_outcomes(outcomes_a, "outcomes_a")
    b = _check_outcomes(outcomes_b, "outcomes_b")
    if len(a) != len(b):
        raise ValueError(
            f"outcomes_a has {len(a)} pairs and outcomes_b {len(b)}: a paired comparison needs both models' "
            "outcomes on the same pairs, in the same order"
        )
    _check_choice(method, DIFFERENCE_METHODS, "method")
    n = len(a)
    table = Counter(zip(a, b, strict=True))
    both_right, a_only = table[True, True], table[True, False]
    b_only, both_wrong = table[False, True], table[False, False]
    difference = (a_only - b_only) / n
    if method == "newcombe":
        low, high = _newcombe_interval(both_right, a_only, b_only, both_wrong)
        extra = (None, None)
    else:
        _check_resamples(resamples)
        low, high = _paired_bootstrap(n, a_only, b_only, resamples, seed)
        extra = (resamples, seed)
    return PairedComparison(
        n=n,
        accuracy_a=(both_right + a_only) / n,
        accuracy_b=(both_right + b_only) / n,
        difference=difference,
        ci95_low=low,
        ci95_high=high,
        both_right=both_right,
        a_right_b_wrong=a_only,
        a_wrong_b_right=b_only,
        both_wrong=both_wrong,
        p_value=mcnemar_p_value(a_only, b_only),
        method=method,
        resamples=extra[0],
        seed=extra[1],
    )


def mcnemar_p_value(a_right_b_wrong: int, a_wrong_b_right: int) -> float:
    """Exact two-sided McNemar test: P(a count as far from half as the smaller one) under Binomial(m, 1/2).

    m = a_right_b_wrong + a_wrong_b_right (the discordant pairs); p = min(1, 2 P(X <= min count)), computed in
    integers, so it is exact up to the final rounding to a float. No discordant pairs give 1.0.
    """
    for name, value in (("a_right_b_wrong", a_right_b_wrong), ("a_wrong_b_right", a_wrong_b_right)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a count (an int >= 0), got {value!r}")
    m = a_right_b_wrong + a_wrong_b_right
    k = min(a_right_b_wrong, a_wrong_b_right)
    if 2 * k == m:  # the most likely count (or no discordant pair): nothing is more central
        return 1.0
    tail, term = 0, 1  # sum of C(m, i) for i <= k, term = C(m, i)
    for i in range(k + 1):
        tail += term
        term = term * (m - i) // (i + 1)
    return min(1.0, 2 * tail / 2**m)


def format_p_value(p: float) -> str:
    """`p = 0.048`, or `p < 0.001` below that (more digits than three say nothing about a test)."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


# ------------------------------------------------------------------------------------------------- seeds
def summarize_seeds(values: Sequence[float]) -> SeedSummary:
    """Mean and sample standard deviation (n - 1) of one accuracy measured after trainings with different seeds.

    Args:
        values: one accuracy per seed.

    Returns:
        A `SeedSummary` (`sd` is None for a single seed: one run shows no spread).
    """
    values = list(values)
    if not values:
        raise ValueError("there are no values: give the accuracy of at least one seed")
    for i, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"values[{i}] is {value!r}: each seed's accuracy must be a finite number")
    sd = statistics.stdev(values) if len(values) > 1 else None
    return SeedSummary(statistics.fmean(values), sd, len(values), tuple(float(v) for v in values))


# --------------------------------------------------------------------------------------------- internals
def _newcombe_interval(both_right: int, a_only: int, b_only: int, both_wrong: int) -> tuple[float, float]:
    """Newcombe's (1998) hybrid score interval, method 10, for the difference of two paired proportions."""
    n = both_right + a_only + b_only + both_wrong
    p1, p2 = (both_right + a_only) / n, (both_right + b_only) / n
    l1, u1 = wilson_interval(both_right + a_only, n)
    l2, u2 = wilson_interval(both_right + b_only, n)
    # The correlation of the two models' outcomes: the phi coefficient of the 2 x 2 table with Newcombe's continuity
    # correction (a positive association is reduced by n/2, down to 0); 0 when a margin is empty.
    denominator = (both_right + a_only) * (b_only + both_wrong) * (both_right + b_only) * (a_only + both_wrong)
    association = both_right * both_wrong - a_only * b_only
    if association > 0:
        association = max(0.0, association - n / 2)
    phi = association / math.sqrt(denominator) if denominator else 0.0
    delta = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    epsilon = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    difference = p1 - p2
    return max(-1.0, difference - delta), min(1.0, difference + epsilon)


def _paired_bootstrap(n: int, a_only: int, b_only: int, resamples: int, seed: int) -> tuple[float, float]:
    """Percentile interval of A - B over resampled pairs, drawn through the discordant counts.

    A resample of n pairs changes A - B only through its discordant pairs: their number D is
    Binomial(n, discordant share) and, given D, those only A gets right are Binomial(D, a_only / discordant).
    """
    discordant = a_only + b_only
    if discordant == 0:
        return 0.0, 0.0  # every resample has no discordant pair either
    rng = random.Random(seed)
    d_table = _BinomialTable(n, discordant / n)
    share = a_only / discordant
    tables: dict[int, _BinomialTable] = {}
    differences = []
    for _ in range(resamples):
        d = d_table.draw(rng)
        if d not in tables:
            tables[d] = _BinomialTable(d, share)
        x = tables[d].draw(rng)
        differences.append((2 * x - d) / n)
    differences.sort()
    return _percentile(differences, 0.025), _percentile(differences, 0.975)


class _BinomialTable:
    """Draws from Binomial(n, p) by inverting its cumulative distribution, tabulated once around the mode."""

    def __init__(self, n: int, p: float):
        if n == 0 or p <= 0.0 or p >= 1.0:
            self.low, self.cdf = (n if p >= 1.0 else 0), [1.0]
            return
        q = 1.0 - p
        mode = min(n, int((n + 1) * p))
        # Probabilities relative to the mode's, by the ratios of neighbouring terms, until they are negligible.
        below, k, term = [], mode, 1.0
        while k > 0:
            term *= k / (n - k + 1) * q / p
            if term < _TABLE_CUTOFF:
                break
            below.append(term)
            k -= 1
        above, k, term = [], mode, 1.0
        while k < n:
            term *= (n - k) / (k + 1) * p / q
            if term < _TABLE_CUTOFF:
                break
            above.append(term)
            k += 1
        weights = [*reversed(below), 1.0, *above]
        self.low = mode - len(below)
        self.cdf = []
        total = 0.0
        for weight in weights:
            total += weight
            self.cdf.append(total)

    def draw(self, rng: random.Random) -> int:
        return self.low + bisect.bisect_right(self.cdf, rng.random() * self.cdf[-1])


def _percentile(ordered: list[float], q: float) -> float:
    """The q-quantile of sorted values, interpolated linearly between order statistics (numpy's default)."""
    position = q * (len(ordered) - 1)
    lo = math.floor(position)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (position - lo)


def _check_outcomes(outcomes: Sequence[bool], name: str) -> list[bool]:
    if isinstance(outcomes, str | bytes) or not hasattr(outcomes, "__len__"):
        raise ValueError(f"{name} must be a list of per-pair outcomes (True = right), got {type(outcomes).__name__}")
    if len(outcomes) == 0:
        raise ValueError(f"{name} has no pairs: an accuracy needs at least one pair's outcome")
    try:
        if set(outcomes) <= _BINARY:  # the usual case, checked in C: True/False, 1/0 (or numpy booleans)
            return list(map(bool, outcomes))
    except TypeError:  # unhashable entries: checked one by one below
        pass
    values = []
    for i, value in enumerate(outcomes):
        if value is True or value is False:
            values.append(value)
        elif not isinstance(value, str | bytes) and (value == 1 or value == 0):  # 1/0, numpy or torch booleans
            values.append(bool(value == 1))
        else:
            raise ValueError(f"{name}[{i}] is {value!r}: each pair's outcome must be True/1 (right) or False/0")
    return values


def _check_counts(correct: int, n: int) -> None:
    for name, value in (("correct", correct), ("n", n)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an int, got {value!r}")
    if n <= 0:
        raise ValueError(f"n is {n}: there are no pairs, and an accuracy needs at least one pair")
    if not 0 <= correct <= n:
        raise ValueError(f"correct is {correct} for n = {n} pairs: it must be between 0 and n")


def _check_resamples(resamples: int) -> None:
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise ValueError(f"resamples must be a positive int, got {resamples!r}")


def _check_choice(value: str, choices: tuple[str, ...], name: str) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
