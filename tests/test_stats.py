"""Intervals, paired comparisons and seed summaries (hub_tools/stats.py) on simulated data with known truths.

Coverage: a 95 % interval must cover the true accuracy (or difference) in 93-97 % of 1,000 seeded draws. The draws
are made with numpy (not with the module's own sampler), and scipy cross-checks Wilson and McNemar.
"""

import ast
import dataclasses
import math
import random
import sys

import numpy as np
import pytest
from scipy.stats import binom, binomtest

from hub_tools import stats

DRAWS = 1000
COVERAGE = (0.93, 0.97)


def _coverage(hits: int) -> float:
    return hits / DRAWS


def _outcome_lists(cells) -> tuple[list[int], list[int]]:
    """Outcomes of models A and B from a 2 x 2 table (both right, only A, only B, both wrong)."""
    both, a_only, b_only, neither = (int(c) for c in cells)
    a = [1] * both + [1] * a_only + [0] * b_only + [0] * neither
    b = [1] * both + [0] * a_only + [1] * b_only + [0] * neither
    return a, b


# ------------------------------------------------------------------------------------------------- coverage
@pytest.mark.parametrize(("n", "p"), [(7548, 0.58), (1000, 0.8), (200, 0.9)])
def test_wilson_interval_covers_the_true_accuracy(n, p):
    # 7,548: the evaluation split and the baby's accuracy; 1,000: a BLiMP paradigm; 200: few pairs, a high accuracy.
    rng = np.random.default_rng(20260101 + n)
    counts = rng.binomial(n, p, size=DRAWS)
    hits = 0
    for k in counts:
        result = stats.interval_from_counts(int(k), n)
        hits += result.ci95_low <= p <= result.ci95_high
    assert COVERAGE[0] <= _coverage(hits) <= COVERAGE[1], _coverage(hits)


def test_intervals_of_per_pair_outcomes_cover_the_true_accuracy():
    # The whole path from per-pair outcomes (as compare_pairs gives them), Wilson and bootstrap side by side.
    n, p = 1000, 0.7
    rng = np.random.default_rng(7)
    hits = {"wilson": 0, "bootstrap": 0}
    for i, row in enumerate(rng.random((DRAWS, n)) < p):
        outcomes = row.tolist()
        for method in hits:
            result = stats.accuracy_interval(outcomes, method=method, resamples=1000, seed=i)
            hits[method] += result.ci95_low <= p <= result.ci95_high
    for method, count in hits.items():
        assert COVERAGE[0] <= _coverage(count) <= COVERAGE[1], (method, _coverage(count))


def test_bootstrap_covers_too_little_on_few_pairs_near_one_where_wilson_holds():
    # Why Wilson is the default: 30 pairs at a true accuracy of 0.95 (exact coverage of Wilson: summed over k).
    n, p = 30, 0.95
    wilson = sum(binom.pmf(k, n, p) for k in range(n + 1) if _covers(stats.wilson_interval(k, n), p))
    rng = np.random.default_rng(3)
    hits = 0
    for i, k in enumerate(rng.binomial(n, p, size=DRAWS)):
        result = stats.interval_from_counts(int(k), n, method="bootstrap", resamples=1000, seed=i)
        hits += _covers((result.ci95_low, result.ci95_high), p)
    assert wilson > 0.93
    assert _coverage(hits) < 0.85  # all 30 right (21 % of draws) gives the point [1, 1]


def _covers(interval, p) -> bool:
    low, high = interval[0], interval[1]
    return low <= p <= high


@pytest.mark.parametrize(
    ("n", "cells"),
    [
        (2000, (0.50, 0.08, 0.07, 0.35)),  # two babies that disagree on 15 % of the pairs, as on the eval split
        (500, (0.60, 0.05, 0.03, 0.32)),
    ],
)
def test_paired_difference_interval_covers_the_true_difference(n, cells):
    true = cells[1] - cells[2]
    rng = np.random.default_rng(11)
    hits = 0
    for table in rng.multinomial(n, cells, size=DRAWS):
        result = stats.compare_paired(*_outcome_lists(table))
        hits += result.ci95_low <= true <= result.ci95_high
    assert COVERAGE[0] <= _coverage(hits) <= COVERAGE[1], _coverage(hits)


def test_paired_bootstrap_covers_the_true_difference():
    n, cells = 500, (0.60, 0.05, 0.03, 0.32)
    true = cells[1] - cells[2]
    rng = np.random.default_rng(12)
    hits = 0
    for i, table in enumerate(rng.multinomial(n, cells, size=DRAWS)):
        result = stats.compare_paired(*_outcome_lists(table), method="bootstrap", resamples=1000, seed=i)
        hits += result.ci95_low <= true <= result.ci95_high
    assert COVERAGE[0] <= _coverage(hits) <= COVERAGE[1], _coverage(hits)


def test_macro_interval_covers_the_true_macro_accuracy():
    # Groups of unequal sizes and accuracies (a BLiMP-like suite, smaller): the target is the mean of accuracies.
    sizes, accuracies = [50, 120, 300, 80, 200], [0.95, 0.6, 0.75, 0.85, 0.5]
    true = sum(accuracies) / len(accuracies)
    rng = np.random.default_rng(13)
    hits = 0
    for i in range(DRAWS):
        groups = {
            f"g{j}": (rng.random(n) < p).tolist() for j, (n, p) in enumerate(zip(sizes, accuracies, strict=True))
        }
        result = stats.macro_accuracy_interval(groups, resamples=500, seed=i)
        hits += result.ci95_low <= true <= result.ci95_high
    assert COVERAGE[0] <= _coverage(hits) <= COVERAGE[1], _coverage(hits)


# ----------------------------------------------------------------------------------------- known answers
def test_wilson_interval_equals_scipys():
    for k, n in [(0, 10), (3, 10), (10, 10), (4391, 7548), (999, 1000)]:
        expected = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        low, high = stats.wilson_interval(k, n)
        assert low == pytest.approx(expected.low, abs=1e-12) and high == pytest.approx(expected.high, abs=1e-12)


def test_mcnemar_against_a_hand_computed_table():
    # A right / B wrong on 9 pairs, A wrong / B right on 2: under H0 the 11 discordant pairs are Binomial(11, 1/2).
    # P(X <= 2) = (C(11,0) + C(11,1) + C(11,2)) / 2^11 = (1 + 11 + 55) / 2048; two-sided: twice that.
    assert stats.mcnemar_p_value(9, 2) == 134 / 2048
    assert stats.mcnemar_p_value(2, 9) == 134 / 2048
    assert stats.mcnemar_p_value(0, 7) == 2 / 128
    assert stats.mcnemar_p_value(5, 5) == 1.0 and stats.mcnemar_p_value(4, 5) == 1.0


@pytest.mark.parametrize(("b", "c"), [(9, 2), (0, 1), (17, 40), (100, 130), (372, 356), (3000, 3200), (0, 900)])
def test_mcnemar_agrees_with_scipys_binomial_test(b, c):
    assert stats.mcnemar_p_value(b, c) == pytest.approx(binomtest(b, b + c, 0.5).pvalue, rel=1e-12, abs=1e-300)


def test_paired_comparison_table_and_newcombe_interval():
    # 161 pairs: 59 both right, 6 only A, 16 only B, 80 both wrong (a published paired table, Cavo et al. 2012).
    a, b = _outcome_lists((59, 6, 16, 80))
    rng = random.Random(0)
    order = list(range(len(a)))
    rng.shuffle(order)  # the table, not the order of the pairs, decides everything
    result = stats.compare_paired([a[i] for i in order], [b[i] for i in order])
    assert (result.both_right, result.a_right_b_wrong, result.a_wrong_b_right, result.both_wrong) == (59, 6, 16, 80)
    assert result.accuracy_a == 65 / 161 and result.accuracy_b == 75 / 161
    assert result.difference == pytest.approx(-10 / 161)
    assert result.p_value == pytest.approx(binomtest(6, 22, 0.5).pvalue, rel=1e-12)
    # Newcombe's method 10 by hand, with scipy's Wilson limits: phi = (59*80 - 6*16 - 161/2) / sqrt(65*96*75*86).
    w1 = binomtest(65, 161).proportion_ci(method="wilson")
    w2 = binomtest(75, 161).proportion_ci(method="wilson")
    p1, p2 = 65 / 161, 75 / 161
    phi = (59 * 80 - 6 * 16 - 161 / 2) / math.sqrt(65 * 96 * 75 * 86)
    low = p1 - p2 - math.sqrt((p1 - w1.low) ** 2 - 2 * phi * (p1 - w1.low) * (w2.high - p2) + (w2.high - p2) ** 2)
    high = p1 - p2 + math.sqrt((w1.high - p1) ** 2 - 2 * phi * (w1.high - p1) * (p2 - w2.low) + (p2 - w2.low) ** 2)
    assert result.ci95_low == pytest.approx(low, abs=1e-12) and result.ci95_high == pytest.approx(high, abs=1e-12)
    # Swapping the models negates the difference and its interval.
    swapped = stats.compare_paired(b, a)
    assert swapped.difference == pytest.approx(-result.difference)
    assert (swapped.ci95_low, swapped.ci95_high) == pytest.approx((-result.ci95_high, -result.ci95_low))


def test_bootstrap_over_pairs_equals_resampling_the_pairs_themselves():
    # The module draws the resampled count from Binomial(n, k/n); literally resampling pair indices must agree.
    rng = random.Random(5)
    outcomes = [rng.random() < 0.62 for _ in range(400)]
    ours = stats.accuracy_interval(outcomes, method="bootstrap", resamples=20_000, seed=1)
    literal = sorted(sum(rng.choices(outcomes, k=len(outcomes))) / len(outcomes) for _ in range(4000))
    assert ours.ci95_low == pytest.approx(literal[100], abs=0.006)  # 2.5th percentile of 4,000
    assert ours.ci95_high == pytest.approx(literal[3899], abs=0.006)
    # And on thousands of pairs the bootstrap and Wilson agree to about a tenth of a point.
    many = [rng.random() < 0.58 for _ in range(7548)]
    wilson, boot = stats.accuracy_interval(many), stats.accuracy_interval(many, method="bootstrap")
    assert abs(wilson.ci95_low - boot.ci95_low) < 0.002 and abs(wilson.ci95_high - boot.ci95_high) < 0.002


def test_binomial_table_draws_follow_the_binomial_distribution():
    rng = random.Random(2)
    for n, p in [(1000, 0.8), (37, 0.05), (5, 0.5)]:
        table = stats._BinomialTable(n, p)
        draws = [table.draw(rng) for _ in range(50_000)]
        mean, var = sum(draws) / len(draws), np.var(draws)
        assert mean == pytest.approx(n * p, abs=4 * math.sqrt(n * p * (1 - p) / len(draws)))
        assert var == pytest.approx(n * p * (1 - p), rel=0.05)
        assert min(draws) >= 0 and max(draws) <= n


def test_bootstraps_are_reproducible_by_seed():
    outcomes = [i % 3 != 0 for i in range(300)]
    other = [i % 4 != 0 for i in range(300)]
    first = stats.accuracy_interval(outcomes, method="bootstrap", seed=4)
    assert first == stats.accuracy_interval(outcomes, method="bootstrap", seed=4)
    assert first != stats.accuracy_interval(outcomes, method="bootstrap", seed=5)
    assert (first.resamples, first.seed, first.method) == (stats.DEFAULT_RESAMPLES, 4, "bootstrap")
    paired = stats.compare_paired(outcomes, other, method="bootstrap", seed=4)
    assert paired == stats.compare_paired(outcomes, other, method="bootstrap", seed=4)
    assert paired.ci95_low < paired.difference < paired.ci95_high


# ------------------------------------------------------------------------------------------------ edges
def test_no_pairs_are_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="outcomes has no pairs: an accuracy needs at least one pair"):
        stats.accuracy_interval([])
    with pytest.raises(ValueError, match="n is 0: there are no pairs"):
        stats.interval_from_counts(0, 0)
    with pytest.raises(ValueError, match="outcomes_a has no pairs"):
        stats.compare_paired([], [])
    with pytest.raises(ValueError, match=r"groups\['empty'\] has no pairs"):
        stats.macro_accuracy_interval({"full": [True], "empty": []})
    with pytest.raises(ValueError, match="there are no groups"):
        stats.macro_accuracy_interval({})


def test_bad_outcomes_and_settings_are_refused_naming_them():
    with pytest.raises(ValueError, match=r"outcomes\[2\] is 2: each pair's outcome must be True/1"):
        stats.accuracy_interval([1, 0, 2])
    with pytest.raises(ValueError, match=r"outcomes\[0\] is None"):
        stats.accuracy_interval([None, True])
    with pytest.raises(ValueError, match="must be a list of per-pair outcomes"):
        stats.accuracy_interval("1101")
    with pytest.raises(ValueError, match="outcomes_a has 3 pairs and outcomes_b 2: .* the same pairs"):
        stats.compare_paired([1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="method must be one of wilson, bootstrap, got 'wald'"):
        stats.accuracy_interval([1, 0], method="wald")
    with pytest.raises(ValueError, match="method must be one of newcombe, bootstrap"):
        stats.compare_paired([1, 0], [0, 1], method="wilson")
    with pytest.raises(ValueError, match="correct is 5 for n = 4 pairs"):
        stats.interval_from_counts(5, 4)
    with pytest.raises(ValueError, match="resamples must be a positive int"):
        stats.accuracy_interval([1, 0], method="bootstrap", resamples=0)
    with pytest.raises(ValueError, match="a_wrong_b_right must be a count"):
        stats.mcnemar_p_value(3, -1)


def test_all_pairs_right():
    result = stats.accuracy_interval([True] * 50)
    assert result.accuracy == 1.0 and result.ci95_high == 1.0
    assert result.ci95_low == pytest.approx(50 / (50 + stats.Z95**2))  # Wilson's lower limit at k = n
    none = stats.accuracy_interval([False] * 50)
    assert none.ci95_low == 0.0 and none.ci95_high == pytest.approx(1 - result.ci95_low)
    boot = stats.accuracy_interval([True] * 50, method="bootstrap")
    assert (boot.ci95_low, boot.ci95_high) == (1.0, 1.0)  # what a bootstrap can say of 50 out of 50: nothing


def test_no_discordant_pairs():
    same = [True, False, True, True, False] * 20
    result = stats.compare_paired(same, list(same))
    assert result.difference == 0.0 and result.p_value == 1.0
    assert result.a_right_b_wrong == result.a_wrong_b_right == 0
    assert result.ci95_low < 0 < result.ci95_high  # Newcombe keeps a width: 100 pairs cannot rule out a difference
    boot = stats.compare_paired(same, list(same), method="bootstrap")
    assert (boot.ci95_low, boot.ci95_high) == (0.0, 0.0)
    everything = stats.compare_paired([True] * 10, [True] * 10)  # empty margins: no correlation to estimate
    assert everything.ci95_low < 0 < everything.ci95_high and everything.p_value == 1.0


def test_numpy_and_integer_outcomes_are_accepted():
    as_bools = stats.accuracy_interval([True, False, True, True])
    assert stats.accuracy_interval([1, 0, 1, 1]) == as_bools
    assert stats.accuracy_interval(np.array([1, 0, 1, 1], dtype=bool)) == as_bools


# ------------------------------------------------------------------------------------------------ seeds
def test_seed_summary_is_mean_and_sample_sd():
    summary = stats.summarize_seeds([0.5765, 0.5790, 0.5741])
    assert summary.mean == pytest.approx(0.5765333333)
    assert summary.sd == pytest.approx(np.std([0.5765, 0.5790, 0.5741], ddof=1))
    assert summary.n == 3 and summary.format() == "0.5765 ± 0.0025 (3 seeds)"
    one = stats.summarize_seeds([0.6])
    assert one.sd is None and one.format() == "0.6000 (1 seed)"
    with pytest.raises(ValueError, match="no values: give the accuracy of at least one seed"):
        stats.summarize_seeds([])
    with pytest.raises(ValueError, match=r"values\[1\] is nan"):
        stats.summarize_seeds([0.5, float("nan")])


def test_results_are_rows_with_the_documented_fields():
    row = dataclasses.asdict(stats.accuracy_interval([1, 0, 1]))
    assert list(row)[:3] == ["accuracy", "ci95_low", "ci95_high"]
    paired = dataclasses.asdict(stats.compare_paired([1, 0, 1], [0, 0, 1]))
    for field in ("accuracy_a", "accuracy_b", "difference", "ci95_low", "ci95_high", "p_value"):
        assert field in paired


def test_stats_module_uses_the_standard_library_only():
    # stats.py is shipped alone beside the metric and the Spaces, whose environments have no hub_tools.
    tree = ast.parse(open(stats.__file__).read())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported - {"__future__"} <= sys.stdlib_module_names, imported


def test_results_format_for_tables():
    assert stats.AccuracyInterval(0.57661, 0.56543, 0.58771, 7548, 4352, "wilson").format() == (
        "0.5766 [0.5654, 0.5877]"
    )
    paired = stats.compare_paired(*_outcome_lists((59, 6, 16, 80)))
    text = paired.format(digits=3)
    assert text.startswith("-0.062 [") and text.endswith(f"p = {paired.p_value:.3f}")
    assert stats.format_p_value(0.0004) == "p < 0.001" and stats.format_p_value(0.0481) == "p = 0.048"
