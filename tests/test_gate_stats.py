"""The gate's statistics against known values and brute-force references."""

from __future__ import annotations

import itertools
import math
import random
from fractions import Fraction

import pytest
from canary_guard.gate import stats

INF = math.inf


def bins(x: list[float], y: list[float]) -> tuple[list[int], list[int]]:
    values = sorted(set(x) | set(y))
    return [x.count(v) for v in values], [y.count(v) for v in values]


# --- Mann-Whitney ---------------------------------------------------------------------------

# scipy.stats.mannwhitneyu(x, y, method="asymptotic") (two-sided, continuity-corrected, tie
# corrected) on data with many ties: statistic U of x and p-value, from scipy's own test suite.
SCIPY_CASES = [
    ([1, 2, 3, 4], [3, 6, 7, 8, INF, 3, 2, 1, 4, 4, 5], 10, 0.1297704873477),
    ([1, 2, 3, 4], [3, 6, 7, 8, INF, INF, 2, 1, 4, 4, 5], 8.5, 0.08735617507695),
    ([1, 2, INF, 4], [3, 6, 7, 8, INF, 3, 2, 1, 4, 4, 5], 17.5, 0.5988856695752),
    ([1, INF, INF, 4], [3, 6, 7, 8, INF, INF, 2, 1, 4, 4, 5], 24.5, 0.7912517950119),
]


@pytest.mark.parametrize(("x", "y", "u", "p_two_sided"), SCIPY_CASES)
def test_mann_whitney_with_ties_matches_scipy(x, y, u, p_two_sided):
    bx, by = bins(x, y)
    rt = stats.mann_whitney_binned(bx, by)
    assert rt.u == u
    # two-sided = twice the one-sided p in the direction of the larger U
    other = stats.mann_whitney_binned(by, bx)
    one_sided = min(rt.p_greater, other.p_greater)
    assert 2 * one_sided == pytest.approx(p_two_sided, abs=1e-12)


def test_mann_whitney_binned_equals_pairwise_counting_and_midrank_variance():
    rng = random.Random(7)
    x = [rng.choice([0.1, 0.25, 0.5, 1.0, 2.5]) for _ in range(60)]
    y = [rng.choice([0.05, 0.1, 0.25, 0.5]) for _ in range(45)]
    bx, by = bins(x, y)
    rt = stats.mann_whitney_binned(bx, by)
    # U by brute force over all pairs
    u = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(x, y))
    assert rt.u == pytest.approx(u)
    # variance from midranks: Var(R1) = n1 n2 / (N (N - 1)) * sum((r - (N + 1) / 2) ** 2)
    pooled = sorted(x + y)
    midrank = {v: (pooled.index(v) + 1 + len(pooled) - pooled[::-1].index(v)) / 2 for v in set(pooled)}
    n1, n2, n = len(x), len(y), len(x) + len(y)
    var = n1 * n2 / (n * (n - 1)) * sum((midrank[v] - (n + 1) / 2) ** 2 for v in pooled)
    z = (u - n1 * n2 / 2 - 0.5) / math.sqrt(var)
    assert rt.z == pytest.approx(z, rel=1e-12)
    assert rt.cliffs_delta == pytest.approx(
        (sum(a > b for a, b in itertools.product(x, y)) - sum(a < b for a, b in itertools.product(x, y)))
        / (n1 * n2))
    lo, hi = rt.delta_ci
    assert lo < rt.cliffs_delta < hi


def test_mann_whitney_identical_samples_show_nothing():
    rt = stats.mann_whitney_binned([5, 10, 3], [5, 10, 3])
    assert rt.cliffs_delta == 0
    assert rt.p_greater == pytest.approx(0.5, abs=0.05)
    assert rt.delta_ci[0] < 0 < rt.delta_ci[1]


# --- Fisher ---------------------------------------------------------------------------------


def fisher_exact_fraction(a: int, n1: int, c: int, n2: int) -> Fraction:
    """The hypergeometric tail with exact integers (an independent reference)."""
    k, n = a + c, n1 + n2
    total = math.comb(n, n1)
    terms = (Fraction(math.comb(k, i) * math.comb(n - k, n1 - i), total) for i in range(a, min(k, n1) + 1))
    return sum(terms, Fraction(0))


def test_fisher_lady_tasting_tea():
    # Fisher's tea-tasting table [[3, 1], [1, 3]]: one-sided p = 17/70
    assert stats.fisher_greater(3, 4, 1, 4) == pytest.approx(17 / 70, rel=1e-12)
    # all four right: 1/70
    assert stats.fisher_greater(4, 4, 0, 4) == pytest.approx(1 / 70, rel=1e-12)


@pytest.mark.parametrize(("a", "n1", "c", "n2"), [
    (20, 1000, 1, 1000), (5, 200, 0, 300), (0, 50, 3, 50), (8, 10, 1, 5), (2, 1000, 2, 1000),
])
def test_fisher_matches_exact_integers(a, n1, c, n2):
    assert stats.fisher_greater(a, n1, c, n2) == pytest.approx(float(fisher_exact_fraction(a, n1, c, n2)),
                                                               rel=1e-9)


def test_mostly_zero_failures_fisher_flags_what_the_rank_test_misses():
    """2% of 1,000 canary probes fail against 0.1% of 1,000 stable ones.

    As a rank test sees it, both samples are almost all zeros: the medians are equal and
    Cliff's delta is ~0.02, far below any practical effect size (0.147), so a rank-based
    judgment (significance AND effect) passes the canary. Fisher's exact test on the
    proportions finds it (p ~ 1e-5) and the difference, 1.9 points, exceeds a 0.5-point margin.
    """
    canary = [0] * 980 + [1] * 20
    stable = [0] * 999 + [1] * 1
    rt = stats.mann_whitney_binned(*bins(canary, stable))
    assert rt.cliffs_delta < 0.147  # the rank test calls the effect negligible
    assert sorted(canary)[500] == sorted(stable)[500] == 0  # and the medians agree
    rank_flags = rt.p_greater < 0.01 and rt.cliffs_delta >= 0.147
    assert not rank_flags
    p = stats.fisher_greater(20, 1000, 1, 1000)
    assert p < 1e-4
    assert 20 / 1000 - 1 / 1000 >= 0.005
    lo, hi = stats.newcombe_diff(20, 1000, 1, 1000, 0.99)
    assert 0 < lo < 0.019 < hi


# --- bounds, Holm, quantiles ----------------------------------------------------------------


def test_clopper_pearson_bounds_and_probes_needed():
    assert stats.binom_upper(0, 2995, 0.95) <= 0.001 < stats.binom_upper(0, 2994, 0.95)
    assert stats.probes_to_show(0.001, 0.95) == 2995  # 99.9% availability
    assert stats.probes_to_show(0.01, 0.95) == 299  # 1% error rate
    # 3 failures in 1000: the classic 95% upper bound ~ 7.75 per thousand
    assert stats.binom_upper(3, 1000, 0.95) == pytest.approx(0.00775, abs=2e-5)
    n = stats.probes_to_show(0.01, 0.95, events=2)
    assert stats.binom_upper(2, n, 0.95) <= 0.01 < stats.binom_upper(2, n - 1, 0.95)
    assert stats.binom_lower(10, 100, 0.95) < 0.1 < stats.binom_upper(10, 100, 0.95)


def test_holm():
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([]) == []


def test_histogram_quantile_matches_prometheus_semantics():
    buckets = [(0.1, 10.0), (0.25, 50.0), (0.5, 90.0), (1.0, 100.0), (INF, 100.0)]
    assert stats.histogram_quantile(0.5, buckets) == pytest.approx(0.1 + 0.15 * 40 / 40)
    assert stats.histogram_quantile(0.95, buckets) == pytest.approx(0.5 + 0.5 * 5 / 10)
    assert stats.histogram_quantile(0.05, buckets) == pytest.approx(0.05)
    assert stats.histogram_quantile(0.99, [(0.5, 1.0), (INF, 100.0)]) == 0.5
    assert stats.histogram_quantile(0.5, [(0.5, 0.0), (INF, 0.0)]) is None


# --- one-sided p-value against the exact null distribution --------------------------------


def exact_p_greater(x: list[int], y: list[int]) -> float:
    """P(U >= u) under H0, by enumerating every way to split the pooled bins into the groups."""
    pooled = [i for i, (a, b) in enumerate(zip(x, y, strict=True)) for _ in range(a + b)]
    n1 = sum(x)

    def u_of(group: list[int]) -> float:
        other = list(pooled)
        for v in group:
            other.remove(v)
        return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in group for b in other)

    u_obs = stats.mann_whitney_binned(x, y).u
    splits = list(itertools.combinations(range(len(pooled)), n1))
    hits = sum(u_of([pooled[i] for i in idx]) >= u_obs - 1e-9 for idx in splits)
    return hits / len(splits)


EXACT_CASES = [  # counts per ordered bin: (canary, stable); either side of the mean
    ([3, 3, 2, 0], [0, 2, 3, 3]),  # canary faster: U well below the mean
    ([1, 3, 3, 1], [2, 2, 2, 2]),  # near the mean
    ([0, 2, 3, 3], [3, 3, 2, 0]),  # canary slower: U above the mean
    ([2, 2, 2, 1], [1, 2, 2, 4]),
    ([4, 0, 0, 4], [0, 4, 4, 0]),  # equal medians, all ties in four bins
]


@pytest.mark.parametrize(("x", "y"), EXACT_CASES)
def test_one_sided_p_uses_the_one_sided_continuity_correction(x, y):
    rt = stats.mann_whitney_binned(x, y)
    exact = exact_p_greater(x, y)
    var = (rt.u - rt.n1 * rt.n2 / 2 - 0.5) / rt.z if rt.z else None
    assert var is not None
    # the old rule corrected towards the mean on both sides (a two-sided correction)
    diff = rt.u - rt.n1 * rt.n2 / 2
    towards_mean = stats.normal_sf((diff + 0.5 if diff < 0 else diff - 0.5) / var)
    assert rt.p_greater == pytest.approx(stats.normal_sf((diff - 0.5) / var), rel=1e-12)
    # a normal approximation of a lattice with ties: close, not exact (small samples here)
    assert abs(rt.p_greater - exact) < 0.08, (rt.p_greater, exact)
    if diff < 0:  # where the two rules differ, the one-sided one is the closer to the truth
        assert abs(rt.p_greater - exact) < abs(towards_mean - exact)


def test_all_ties_in_one_bin_is_no_evidence():
    rt = stats.mann_whitney_binned([0, 7, 0], [0, 9, 0])
    assert rt.p_greater == 1.0 and rt.cliffs_delta == 0


def test_normal_quantiles_come_from_the_standard_library():
    assert stats.two_sided_z(0.95) == pytest.approx(1.959963984540054, rel=1e-15)
    assert stats.NORMAL.inv_cdf(0.95) == pytest.approx(1.6448536269514722, rel=1e-15)
    # the erfc tail stays exact where 1 - cdf rounds to 0
    assert stats.normal_sf(9) == pytest.approx(1.1285884059538324e-19, rel=1e-12)
    assert 1 - stats.NORMAL.cdf(9) == 0
