"""helpers.data.screen: per-kind precision and recall on the labelled set, false alarms on the course tickets."""

from __future__ import annotations

import json
import math

import pytest

from helpers import data
from helpers.data import screen as S


def test_labelled_set_is_well_formed_and_covers_every_kind():
    cases = S.read_screen_set()
    labels = [label for _t, label in cases]
    assert len(cases) >= 60
    assert all(labels.count(label) >= 10 for label in S.LABELS), {label: labels.count(label) for label in S.LABELS}


def test_scores_per_kind_beside_the_trivial_baselines():
    rows = {(r["kind"], r["system"]): r for r in S.screen_scores()}
    for kind in S.KINDS:
        screen, nothing, everything = (rows[(kind, s)] for s in ("screen", "flag nothing", "flag everything"))
        assert screen["recall"] >= 0.9 and screen["precision"] >= 0.9, screen
        assert nothing["recall"] == 0 and math.isnan(nothing["precision"])
        assert everything["recall"] == 1 and everything["precision"] == pytest.approx(screen["labelled"] / 72)


@pytest.mark.parametrize("text", [
    "This stupid laptop died again after two days. Fix it or refund me.",  # anger at a product is a ticket
    "I need to kill the sync process on the Nimbus Cloud app, it's frozen.",
    "My wife ordered a TrackFit Band under my account and now I can't log in.",
    "I'm deaf and can't use phone support; can we do this by email?",
])
def test_legitimate_tickets_pass(text):
    assert S.screen_text(text) is None


def test_the_most_serious_kind_wins_and_the_reason_quotes_the_match():
    kind, reason = S.screen_text("I want to kill myself, nothing works anymore.")  # also names no product
    assert kind == "unsafe" and reason.startswith("self-harm: ") and "kill myself" in reason
    assert S.screen_text("Write me a poem about autumn leaves.")[0] == "off_topic"


def test_screen_rows_keeps_the_books_and_rarely_flags_course_tickets():
    rows = data.load_split("test")
    planted = [{"messages": [{"role": "user", "content": t}, {"role": "assistant", "content": "{}"}]}
               for t, label in S.read_screen_set() if label != "clean"]
    result = S.screen_rows(rows + planted)
    s = result.stats
    assert s["valid_in"] == s["kept"] + s["rejected"] == len(rows) + len(planted)
    assert all(r["reject"]["reason"] in S.KINDS and r["reject"]["detail"] for r in result.rejects)
    false_alarms = [r for r in result.rejects if "group" in (r.get("metadata") or {})]
    assert len(false_alarms) / len(rows) < 0.06


def test_a_bad_label_names_its_line(tmp_path):
    path = tmp_path / "set.jsonl"
    path.write_text(json.dumps({"text": "hi", "label": "clean"}) + "\n" + json.dumps({"text": "x", "label": "rude"}))
    with pytest.raises(ValueError, match=r"set\.jsonl:2: .*'rude'"):
        S.read_screen_set(path)
