"""Issue 12, item 15: PII scrubbing measured on a hand-labelled set (data/pii), and the cases the issue found."""

from __future__ import annotations

import pytest

from helpers.data import scrub_pii
from helpers.data.__main__ import main


@pytest.mark.parametrize("text, expected", [
    ("Call me on +44 20 7946 0958 after 6.", "Call me on [PHONE] after 6."),
    ("Numéro : +33 1 23 45 67 89", "Numéro : [PHONE]"),
    ("From abroad dial 0044 20 7946 0958.", "From abroad dial [PHONE]."),
    ("Amex 3782 822463 10005 declined", "Amex [CARD] declined"),
    ("Please refund to DE89 3704 0044 0532 0130 00.", "Please refund to [IBAN]."),
    ("You can reach me at josé.núñez@correo.example.es.", "You can reach me at [EMAIL]."),
    ("deliver to 350 Fifth Avenue, New York, NY 10118 today", "deliver to [ADDRESS] today"),
    ("Our office: 1600 Amphitheatre Parkway, Mountain View, CA 94043.", "Our office: [ADDRESS]."),
    ("Lieferadresse: Hauptstraße 5, 10115 Berlin", "Lieferadresse: [ADDRESS]"),
])
def test_formats_the_old_patterns_missed_or_leaked(text, expected):
    assert scrub_pii(text)[0] == expected


@pytest.mark.parametrize("text", ["Where is order 1234567890? It is late.", "The config server is foo@1.2.3 here",
                                  "It arrived at 5 pm drive time, too late", "The order number is 1234567890123",
                                  "Model GB12 ABCD 1234 5678 9012 34 is out of stock"])
def test_no_false_positives_on_ids_versions_and_times(text):
    assert scrub_pii(text) == (text, {})


def test_precision_and_recall_per_kind_on_the_labelled_set(capsys):
    from helpers.data.clean import pii_scores

    scores = pii_scores()
    assert set(scores) == {"email", "phone", "card", "iban", "address"}
    for kind, s in scores.items():
        assert s["labelled"] >= 5 and s["precision"] >= 0.9 and s["recall"] >= 0.9, (kind, s)
    assert main(["pii-scores"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["kind", "labelled", "flagged", "precision", "recall"] and len(out) == 6


def test_scores_count_a_partial_scrub_as_a_miss():
    from helpers.data.clean import pii_scores

    text = "deliver to 350 Fifth Avenue, New York, NY 10118"
    gold = [("address", 11, len(text))]
    partial = pii_scores([(text, gold)], finder=lambda t: [("address", 11, 27)])["address"]
    assert partial["recall"] == 0.0 and partial["precision"] == 1.0
    wrong = pii_scores([("at 5 pm drive", [])], finder=lambda t: [("address", 3, 13)])["address"]
    assert wrong["precision"] == 0.0 and wrong["recall"] == 1.0
