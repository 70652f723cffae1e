"""A/B tests of model versions in production: sample size, a two-proportion test, peeking. Taught in 06_export.

A live A/B test splits traffic between two versions and compares a *success rate* (the primary metric, e.g. the
share of tickets whose JSON an agent accepted unedited) while a *guardrail* (valid JSON, latency) must not get worse.
Unlike 04's offline comparison, each ticket is answered by one version only, so the arms are independent samples:
the two-proportion z-test applies, and the number of tickets needed is fixed in advance by a power calculation.
Only the standard library and numpy are used (no scipy at run time).
"""

from __future__ import annotations

import math
import random
from statistics import NormalDist
from typing import Any, Sequence

from helpers.evaluate.common import EvaluationError

_Z = NormalDist()


def _check_rate(name: str, value: float) -> None:
    if not 0 < value < 1:
        raise EvaluationError(f"{name} = {value!r}: a success rate strictly between 0 and 1 (e.g. 0.62 for 62%)")


def sample_size_per_arm(p_a: float, p_b: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Tickets per arm for a two-sided two-proportion z-test to detect p_a vs p_b. Taught in 06_export."""
    for name, value in (("p_a", p_a), ("p_b", p_b), ("alpha", alpha), ("power", power)):
        _check_rate(name, value)
    if p_a == p_b:
        raise EvaluationError(f"p_a == p_b == {p_a}: no sample size detects a difference of zero; pass two rates")
    pooled = (p_a + p_b) / 2  # the null's common rate (Fleiss, pooled-variance normal approximation)
    z_alpha, z_power = _Z.inv_cdf(1 - alpha / 2), _Z.inv_cdf(power)
    root = z_alpha * math.sqrt(2 * pooled * (1 - pooled)) + z_power * math.sqrt(p_a * (1 - p_a) + p_b * (1 - p_b))
    return math.ceil(root**2 / (p_a - p_b) ** 2)


def two_proportion_test(success_a: int, n_a: int, success_b: int, n_b: int, alpha: float = 0.05) -> dict[str, float]:
    """B minus A: difference, pooled z, two-sided p-value and a Wald confidence interval. Taught in 06_export."""
    for name, s, n in (("A", success_a, n_a), ("B", success_b, n_b)):
        if n <= 0 or not 0 <= s <= n:
            raise EvaluationError(f"arm {name}: {s} successes of {n}: need n > 0 and 0 <= successes <= n")
    p_a, p_b = success_a / n_a, success_b / n_b
    pooled = (success_a + success_b) / (n_a + n_b)
    se_null = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    z = (p_b - p_a) / se_null if se_null else 0.0
    se = math.sqrt(p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b)
    half = _Z.inv_cdf(1 - alpha / 2) * se
    return {"rate_a": p_a, "rate_b": p_b, "difference": p_b - p_a, "z": z, "p_value": 2 * (1 - _Z.cdf(abs(z))),
            "ci_low": p_b - p_a - half, "ci_high": p_b - p_a + half}


def split_traffic(n: int, seed: int, share_b: float = 0.5) -> list[str]:
    """Assign each of n requests to arm "A" or "B" at random (share_b of them to B). Taught in 06_export."""
    _check_rate("share_b", share_b)
    rng = random.Random(seed)
    return ["B" if rng.random() < share_b else "A" for _ in range(n)]


def _z_many(s_a: Any, s_b: Any, n: Any) -> Any:
    import numpy as np

    pooled = (s_a + s_b) / (2 * n)
    se = np.sqrt(pooled * (1 - pooled) * 2 / n)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, (s_b - s_a) / n / np.where(se > 0, se, 1), 0.0)
    return z


def simulate_peeking(rate: float, n_per_arm: int, looks: int, n_experiments: int, seed: int,
                     alpha: float = 0.05) -> dict[str, float]:
    """False-positive rates of A/A tests: one test at the end vs a test at every look. Taught in 06_export."""
    import numpy as np

    _check_rate("rate", rate)
    if looks < 1 or n_per_arm < looks or n_experiments < 1:
        raise EvaluationError(f"looks={looks}, n_per_arm={n_per_arm}, n_experiments={n_experiments}: need "
                              f"1 <= looks <= n_per_arm and at least one experiment")
    rng = np.random.default_rng(seed)
    at = np.linspace(n_per_arm / looks, n_per_arm, looks).round().astype(int)  # sample size per arm at each look
    steps = np.diff(np.concatenate([[0], at]))
    # Both arms have the same true rate: every "significant" result is a false positive.
    s_a = rng.binomial(steps, rate, size=(n_experiments, looks)).cumsum(axis=1)
    s_b = rng.binomial(steps, rate, size=(n_experiments, looks)).cumsum(axis=1)
    significant = np.abs(_z_many(s_a, s_b, at)) > _Z.inv_cdf(1 - alpha / 2)
    return {"alpha": alpha, "looks": float(looks), "false_positive_once": float(significant[:, -1].mean()),
            "false_positive_peeking": float(significant.any(axis=1).mean())}


def simulated_power(p_a: float, p_b: float, n_per_arm: int, n_experiments: int, seed: int,
                    alpha: float = 0.05) -> float:
    """Share of simulated A/B tests with true rates p_a, p_b that the z-test calls significant (checks the sample size)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    s_a = rng.binomial(n_per_arm, p_a, size=n_experiments)
    s_b = rng.binomial(n_per_arm, p_b, size=n_experiments)
    return float((np.abs(_z_many(s_a, s_b, n_per_arm)) > _Z.inv_cdf(1 - alpha / 2)).mean())


def arm_outcomes(arms: Sequence[str], outcome_a: Sequence[float], outcome_b: Sequence[float]) -> dict[str, list[float]]:
    """Per arm, the outcome of the version that served each request (one version per request). Taught in 06_export."""
    if not len(arms) == len(outcome_a) == len(outcome_b):
        raise EvaluationError(f"{len(arms)} assignments, {len(outcome_a)} and {len(outcome_b)} outcomes: one each")
    return {"A": [a for arm, a in zip(arms, outcome_a) if arm == "A"],
            "B": [b for arm, b in zip(arms, outcome_b) if arm == "B"]}
