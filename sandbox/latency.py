"""How long a healthy answer takes: one latency profile per endpoint.

The real service's observed latency on one core (its API reference): most elite endpoints
answer in 5-25 ms; ``homomorphic`` generates a fresh 1024-bit keypair per request, with a
median about 0.35-0.55 s, a p95 about 0.9 s and the slowest about 1.4 s, and slower under
CPU contention. Each profile is a log-normal service time (median, p95) cut off at a maximum,
so the sandbox's histograms look like production's, slow tail included.

The sandbox waits (``asyncio.sleep``), it never burns CPU: two sandboxes and the rest of a
test stack share a small machine. Contention is modelled instead of produced: ``slowdown``
stretches every service time (a busy machine), ``cores`` bounds how many answers are worked
on at once (a one-core service queues requests behind a slow keypair generation).
"""

from __future__ import annotations

import asyncio
import math
import random
from dataclasses import dataclass

Z95 = 1.6448536269514722  # the standard normal's 95th percentile


@dataclass(frozen=True)
class Profile:
    """A log-normal service time in seconds with this median and p95, never above ``max``."""

    median: float
    p95: float
    max: float

    @property
    def sigma(self) -> float:
        return math.log(self.p95 / self.median) / Z95

    def draw(self, rng: random.Random) -> float:
        return min(self.max, self.median * math.exp(rng.gauss(0.0, self.sigma)))


FAST = Profile(median=0.011, p95=0.021, max=0.025)
# The real service's elite endpoints (names as in the shipped plan).
REFERENCE: dict[str, Profile] = {
    "continual_learning": Profile(0.014, 0.022, 0.025),
    "federated_learning": Profile(0.012, 0.020, 0.025),
    "edge_ai": Profile(0.008, 0.014, 0.020),
    "differential_privacy": Profile(0.010, 0.018, 0.025),
    "causal_analysis": Profile(0.013, 0.022, 0.025),
    "neuromorphic": Profile(0.009, 0.016, 0.022),
    "graph_neural": Profile(0.015, 0.023, 0.025),
    "quantum_crypto": Profile(0.006, 0.011, 0.015),
    "explainable_ai": Profile(0.012, 0.021, 0.025),
    "homomorphic": Profile(0.45, 0.90, 1.40),
}
PROFILES = ("reference", "none")


class ServiceTime:
    """The wait before each healthy answer: profile x slowdown, at most ``cores`` at once."""

    def __init__(self, profile: str = "reference", *, slowdown: float = 1.0, cores: int = 0,
                 rng: random.Random | None = None):
        if profile not in PROFILES:
            raise ValueError(f"latency profile: {profile!r} is not one of {', '.join(PROFILES)}")
        if not slowdown >= 1.0:
            raise ValueError(f"slowdown: {slowdown!r} must be >= 1 (1: an idle machine)")
        if cores < 0:
            raise ValueError(f"cores: {cores!r} must be >= 0 (0: no queueing)")
        self.profile = profile
        self.slowdown = slowdown
        self.cores = cores
        self.rng = rng or random.Random()
        self._cpu = asyncio.Semaphore(cores) if cores else None

    def draw(self, endpoint: str) -> float:
        """Seconds of work for one healthy answer of ``endpoint`` (0 without a profile)."""
        if self.profile == "none":
            return 0.0
        # an endpoint of another plan: a fast endpoint like most of RecoveryOS's
        return REFERENCE.get(endpoint, FAST).draw(self.rng) * self.slowdown

    async def work(self, endpoint: str) -> None:
        seconds = self.draw(endpoint)
        if seconds <= 0:
            return
        if self._cpu is None:
            await asyncio.sleep(seconds)
            return
        async with self._cpu:  # queued behind the answers being worked on
            await asyncio.sleep(seconds)
