"""Tier 2: helpers.evaluate.monitor — PSI by hand, simulated weeks, and a monitor that flags drift and not noise."""

from __future__ import annotations

import math

import pytest

from helpers import data, evaluate as ev
from helpers.data.generate import CATEGORIES, PRODUCTS


@pytest.fixture(scope="module")
def monitor():
    test = data.load_split("test")
    # the references stand in for a model's answers: a model that is always right
    return ev.fit_monitor(ev.tickets_from_rows(data.load_split("train")), ev.tickets_from_rows(test),
                          ev.references_from_rows(test), 32, catalogue=PRODUCTS, categories=CATEGORIES)


def test_psi_by_hand():
    assert ev.psi([0.5, 0.5], [0.5, 0.5]) == 0
    expected = (0.7 - 0.5) * math.log(0.7 / 0.5) + (0.3 - 0.5) * math.log(0.3 / 0.5)
    assert ev.psi([0.5, 0.5], [0.7, 0.3]) == pytest.approx(expected)
    assert ev.psi([0.5, 0.5], [1.0, 0.0]) < 10  # an empty bin stays finite
    with pytest.raises(ev.MonitorError, match="same bins"):
        ev.psi([0.5, 0.5], [1.0])


def test_simulated_weeks_are_seeded_scrubbed_and_drift_as_asked():
    week = ev.simulate_week(40, seed=3, launch="Orbit Watch", launch_share=0.5, category_weights={"technical": 5})
    assert week == ev.simulate_week(40, seed=3, launch="Orbit Watch", launch_share=0.5, category_weights={"technical": 5})
    answers = [ev.parse_json(r["messages"][-1]["content"]) for r in week]
    assert sum(a["product"] == "Orbit Watch" for a in answers) == 20
    assert "Orbit Watch" not in PRODUCTS, "the launch changes the generator's catalogue for that call only"
    ordinary = [ev.parse_json(r["messages"][-1]["content"]) for r in ev.simulate_week(40, seed=3)]
    assert sum(a["category"] == "technical" for a in answers) > sum(a["category"] == "technical" for a in ordinary)
    assert not any("@" in t for t in ev.tickets_from_rows(week)), "PII scrubbed as in the training data"
    with pytest.raises(ev.MonitorError, match="categories of"):
        ev.simulate_week(4, seed=0, category_weights={"shiping": 2})


def test_ordinary_weeks_pass_and_a_launch_week_is_flagged(monitor):
    for seed in range(1, 6):
        week = ev.simulate_week(32, seed=seed)
        check = monitor.check(ev.tickets_from_rows(week), ev.references_from_rows(week))
        assert not check["flagged"].any(), (seed, check[check["flagged"]])
    launch = ev.simulate_week(32, seed=2, launch="Orbit Watch", launch_share=0.5)
    check = monitor.check(ev.tickets_from_rows(launch), ev.references_from_rows(launch))
    assert check.loc["oov_rate", "flagged"] and check.loc["unknown_product", "flagged"]


def test_a_small_reference_window_keeps_ordinary_weeks_quiet():
    # eval_limit 50 (the cpu profile) makes a 50-ticket window: its thresholds must carry the window's own noise
    test = data.load_split("test")[:50]
    small = ev.fit_monitor(ev.tickets_from_rows(data.load_split("train")), ev.tickets_from_rows(test),
                           ev.references_from_rows(test), 32, catalogue=PRODUCTS, categories=CATEGORIES)
    weeks = [ev.simulate_week(32, seed=seed) for seed in range(1, 21)]
    flagged = [seed for seed, week in enumerate(weeks, 1)
               if small.check(ev.tickets_from_rows(week), ev.references_from_rows(week))["flagged"].any()]
    assert len(flagged) <= 1, f"ordinary weeks {flagged} flagged against a 50-ticket window"  # 3 of 20 before


def test_output_health_catches_broken_answers(monitor):
    week = ev.simulate_week(32, seed=4)
    tickets = ev.tickets_from_rows(week)
    broken = ["Sorry, I cannot help with that."] * 16 + ev.references_from_rows(week)[16:]
    check = monitor.check(tickets, broken)
    assert check.loc["json_valid", "flagged"] and check.loc["json_valid", "this week"] == 0.5
    invented = ['{"summary": "x", "category": "billing", "product": null, "order_id": "ORD-999999", '
                '"priority": "low"}'] * 32
    assert monitor.check(tickets, invented).loc["ungrounded", "flagged"]
    with pytest.raises(ev.MonitorError, match="one per ticket"):
        monitor.check(tickets, broken[:3])


def test_thresholds_come_from_the_reference_window(monitor):
    assert set(monitor.thresholds) == set(ev.STATISTICS) == set(ev.MATERIAL)
    assert monitor.thresholds["oov_rate"] > monitor.reference_values["oov_rate"]
    assert monitor.thresholds["json_valid"] <= monitor.reference_values["json_valid"]


def test_plot_retraining_marks_the_first_crossing():
    import matplotlib

    matplotlib.use("Agg")
    fig = ev.plot_retraining(["w1", "w2", "w3"], [0.01, 0.03, 0.04], threshold=0.02)
    weekly, loop = fig.axes
    assert [t.get_text() for t in weekly.texts] == ["alert: start the loop"]
    assert len(loop.patches) == 5  # the five steps of the loop
