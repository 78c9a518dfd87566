"""The statistics behind the gate, in pure Python (no scipy: the install stays small).

Prometheus keeps histograms, not raw latencies, so the rank test works on bucket counts: every
probe in one bucket is a tie with every other probe in that bucket, and the Mann-Whitney U
with the tie-corrected variance is exact for such grouped data up to the normal approximation.
Error proportions are compared with Fisher's exact test, which stays valid when almost every
count is zero (where a rank test sees two piles of identical zeros and no effect).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

# --- distributions -------------------------------------------------------------------------


# the standard normal: quantiles come from the standard library
NORMAL = NormalDist()


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z (erfc keeps the far upper tail exact, where
    ``1 - NORMAL.cdf(z)`` rounds to 0)."""
    return 0.5 * math.erfc(z / math.sqrt(2))


def two_sided_z(confidence: float) -> float:
    """The z that leaves (1 - confidence) / 2 in each tail: 1.96 at 95%."""
    return NORMAL.inv_cdf(1 - (1 - confidence) / 2)


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0:
        return 1.0
    if p >= 1:
        return 0.0
    lp, lq = math.log(p), math.log1p(-p)
    terms = [_log_comb(n, i) + i * lp + (n - i) * lq for i in range(k + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def binom_upper(k: int, n: int, confidence: float) -> float:
    """One-sided Clopper-Pearson upper bound on p after k events in n trials."""
    if n <= 0:
        return 1.0
    if k >= n:
        return 1.0
    alpha = 1 - confidence
    if k == 0:
        return 1 - alpha ** (1 / n)
    lo, hi = k / n, 1.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if binom_cdf(k, n, mid) > alpha:
            lo = mid
        else:
            hi = mid
    return hi


def binom_lower(k: int, n: int, confidence: float) -> float:
    """One-sided Clopper-Pearson lower bound on p after k events in n trials."""
    if n <= 0 or k <= 0:
        return 0.0
    return 1 - binom_upper(n - k, n, confidence)


def probes_to_show(budget: float, confidence: float, events: int = 0) -> int:
    """Fewest trials in which ``events`` failures still show a failure rate <= budget.

    With no failures this is ceil(ln(1 - confidence) / ln(1 - budget)): 2,995 probes for
    99.9% availability at 95% confidence, 299 for a 1% error rate.
    """
    if budget <= 0:
        # no number of trials shows a zero budget; callers compare counts with it
        return math.inf  # type: ignore[return-value]
    if budget >= 1:
        return 1
    alpha = 1 - confidence
    n = max(1, math.ceil(math.log(alpha) / math.log1p(-budget)))
    if events == 0:
        return n
    # binom_upper falls as n grows: double, then bisect
    hi = max(n, events + 1)
    while binom_upper(events, hi, confidence) > budget:
        hi *= 2
        if hi > 10**9:
            return hi
    lo = max(events + 1, hi // 2)
    while lo < hi:
        mid = (lo + hi) // 2
        if binom_upper(events, mid, confidence) <= budget:
            hi = mid
        else:
            lo = mid + 1
    return lo


# --- Fisher's exact test -------------------------------------------------------------------


def fisher_greater(a: int, n1: int, c: int, n2: int) -> float:
    """One-sided Fisher exact p-value that group 1 fails more often than group 2.

    ``a`` failures out of ``n1`` against ``c`` out of ``n2``: P(X >= a) for X hypergeometric
    with the margins fixed (``a + c`` failures among ``n1 + n2`` trials, ``n1`` drawn).
    """
    if min(a, n1, c, n2) < 0 or a > n1 or c > n2:
        raise ValueError("counts must satisfy 0 <= failures <= trials")
    big_n, k = n1 + n2, a + c
    if k == 0 or n1 == 0 or n2 == 0:
        return 1.0
    denom = _log_comb(big_n, n1)
    hi = min(k, n1)
    logs = [_log_comb(k, i) + _log_comb(big_n - k, n1 - i) - denom for i in range(a, hi + 1)]
    top = max(logs)
    return min(1.0, math.exp(top) * sum(math.exp(x - top) for x in logs))


def newcombe_diff(a: int, n1: int, c: int, n2: int, confidence: float) -> tuple[float, float]:
    """Two-sided Newcombe (hybrid Wilson score) interval for p1 - p2."""
    z = two_sided_z(confidence)

    def wilson(k: int, n: int) -> tuple[float, float]:
        if n == 0:
            return 0.0, 1.0
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return max(0.0, centre - half), min(1.0, centre + half)

    p1, p2 = a / n1 if n1 else 0.0, c / n2 if n2 else 0.0
    l1, u1 = wilson(a, n1)
    l2, u2 = wilson(c, n2)
    d = p1 - p2
    lower = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    upper = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return lower, upper


# --- Mann-Whitney U on grouped (binned) data --------------------------------------------------


@dataclass(frozen=True)
class RankTest:
    u: float  # U of the first group: pairs where it is larger, ties counted half
    n1: int
    n2: int
    z: float
    p_greater: float  # one-sided: the first group tends to be larger
    superiority: float  # P(X > Y) + P(X = Y) / 2, "A" (Vargha-Delaney), the AUC
    cliffs_delta: float  # P(X > Y) - P(X < Y) = 2A - 1
    delta_ci: tuple[float, float]  # two-sided interval for Cliff's delta (DeLong variance)


def mann_whitney_binned(x: Sequence[int], y: Sequence[int], confidence: float = 0.95) -> RankTest:
    """Mann-Whitney U for two samples given as counts per ordered bin.

    ``x[i]`` and ``y[i]`` count the observations of each group in bin i (bins in increasing
    order); observations in one bin are ties. The p-value uses the normal approximation with
    the tie correction and the one-sided continuity correction (P(U >= u) is read at u - 1/2,
    whichever side of the mean u is on); the interval for Cliff's delta uses the DeLong
    variance of the AUC, computed exactly from the bins.
    """
    if len(x) != len(y):
        raise ValueError("both samples need the same bins")
    n1, n2 = sum(x), sum(y)
    if n1 == 0 or n2 == 0:
        raise ValueError("both samples need observations")
    big_n = n1 + n2
    u = 0.0
    y_below = 0
    x_below = 0
    ties = 0.0
    place_x = []  # per bin: P(Y < x) + P(Y = x)/2 for an x in the bin
    place_y = []  # per bin: P(X > y) + P(X = y)/2 for a y in the bin
    for xi, yi in zip(x, y, strict=True):
        u += xi * (y_below + 0.5 * yi)
        place_x.append((y_below + 0.5 * yi) / n2)
        place_y.append((n1 - x_below - xi + 0.5 * xi) / n1)
        t = xi + yi
        ties += t**3 - t
        y_below += yi
        x_below += xi
    mean = n1 * n2 / 2
    var = n1 * n2 / 12 * ((big_n + 1) - ties / (big_n * (big_n - 1))) if big_n > 1 else 0.0
    if var <= 0:
        # every observation in one bin: U cannot vary, so P(U >= u) is certain
        z, p = 0.0, 1.0
    else:
        # one-sided: P(U >= u) ~ P(N > u - 1/2); the two-sided correction (towards the mean)
        # would understate p below the mean
        z = (u - mean - 0.5) / math.sqrt(var)
        p = normal_sf(z)
    a = u / (n1 * n2)
    # DeLong: variance of the placement values in each group
    s10 = (sum(xi * (v - a) ** 2 for xi, v in zip(x, place_x, strict=True)) / (n1 - 1)) if n1 > 1 else 0.0
    s01 = (sum(yi * (v - a) ** 2 for yi, v in zip(y, place_y, strict=True)) / (n2 - 1)) if n2 > 1 else 0.0
    se_a = math.sqrt(s10 / n1 + s01 / n2)
    zc = two_sided_z(confidence)
    lo_a, hi_a = max(0.0, a - zc * se_a), min(1.0, a + zc * se_a)
    return RankTest(
        u=u, n1=n1, n2=n2, z=z, p_greater=p, superiority=a, cliffs_delta=2 * a - 1,
        delta_ci=(2 * lo_a - 1, 2 * hi_a - 1),
    )


# --- multiple comparisons ------------------------------------------------------------------


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order as given)."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    out = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


# --- histograms ----------------------------------------------------------------------------


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus's histogram_quantile on cumulative (le, count) pairs sorted by le.

    Linear interpolation inside the bucket; the lowest bucket starts at 0; a quantile in the
    +Inf bucket returns the largest finite bound. None without observations.
    """
    if not buckets:
        return None
    total = buckets[-1][1]
    if total <= 0:
        return None
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return prev_le
            if count == prev_count:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    return buckets[-1][0]


def per_bucket(buckets: Sequence[tuple[float, float]]) -> list[int]:
    """Cumulative bucket counts -> counts per bucket, as whole numbers (never negative)."""
    out, prev = [], 0
    for _le, count in buckets:
        c = max(prev, round(count))
        out.append(c - prev)
        prev = c
    return out
