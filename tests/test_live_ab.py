"""Tier 2: helpers.evaluate.live_ab — sample size against a published value, the z-test by hand, peeking."""

from __future__ import annotations

import math

import pytest

from helpers import evaluate as ev
from helpers.evaluate import live_ab


def test_sample_size_matches_a_published_calculator():
    # JMP 13.2 documentation, "Two Sample Proportions": p1 = 0.08, p2 = 0.06, alpha 0.05 two-sided, power 0.8
    # -> "sample sizes of 2554" (https://jmp.com/support/help/13-2/Two_Sample_Proportions.shtml).
    assert live_ab.sample_size_per_arm(0.08, 0.06) == 2554
    assert live_ab.sample_size_per_arm(0.06, 0.08) == 2554  # symmetric
    # The classical (uncorrected) formula by hand for 0.5 vs 0.6: 387.3 -> 388.
    z_a, z_b = 1.959963984540054, 0.8416212335729143
    by_hand = (z_a * math.sqrt(2 * 0.55 * 0.45) + z_b * math.sqrt(0.25 + 0.24)) ** 2 / 0.01
    assert live_ab.sample_size_per_arm(0.5, 0.6) == math.ceil(by_hand) == 388
    assert live_ab.sample_size_per_arm(0.5, 0.6, power=0.9) > 388 > live_ab.sample_size_per_arm(0.5, 0.7)


def test_sample_size_gives_the_promised_power_by_simulation():
    n = live_ab.sample_size_per_arm(0.08, 0.06)
    assert live_ab.simulated_power(0.08, 0.06, n, 4000, seed=1) == pytest.approx(0.80, abs=0.03)
    assert live_ab.simulated_power(0.08, 0.06, n // 4, 4000, seed=1) < 0.4


def test_two_proportion_test_by_hand_and_against_scipy():
    stats = pytest.importorskip("scipy.stats")
    result = live_ab.two_proportion_test(30, 50, 35, 50)
    pooled = 65 / 100
    z = (0.7 - 0.6) / math.sqrt(pooled * (1 - pooled) * (2 / 50))
    assert result["z"] == pytest.approx(z)
    assert result["p_value"] == pytest.approx(2 * stats.norm.sf(z))
    half = stats.norm.ppf(0.975) * math.sqrt(0.6 * 0.4 / 50 + 0.7 * 0.3 / 50)
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((0.1 - half, 0.1 + half))
    assert live_ab.two_proportion_test(5, 5, 5, 5)["p_value"] == 1.0  # no variance, no evidence


def test_peeking_inflates_false_positives_and_one_look_does_not():
    result = live_ab.simulate_peeking(0.6, 1000, looks=20, n_experiments=4000, seed=0)
    assert result["false_positive_once"] == pytest.approx(0.05, abs=0.01)
    assert result["false_positive_peeking"] > 3 * result["false_positive_once"]
    once = live_ab.simulate_peeking(0.6, 1000, looks=1, n_experiments=4000, seed=0)
    assert once["false_positive_peeking"] == once["false_positive_once"]


def test_split_and_arm_outcomes():
    arms = live_ab.split_traffic(1000, seed=3)
    assert arms == live_ab.split_traffic(1000, seed=3) and 400 < arms.count("B") < 600
    out = live_ab.arm_outcomes(["A", "B", "A"], [1, 1, 0], [0, 0, 1])
    assert out == {"A": [1, 0], "B": [0]}


def test_bad_input_says_what_to_pass():
    with pytest.raises(ev.EvaluationError, match="between 0 and 1"):
        live_ab.sample_size_per_arm(62, 0.5)
    with pytest.raises(ev.EvaluationError, match="difference of zero"):
        live_ab.sample_size_per_arm(0.5, 0.5)
    with pytest.raises(ev.EvaluationError, match="arm B"):
        live_ab.two_proportion_test(1, 2, 3, 2)
    with pytest.raises(ev.EvaluationError, match="one each"):
        live_ab.arm_outcomes(["A"], [1, 0], [1])
