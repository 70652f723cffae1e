"""helpers.data.clean: accounting invariant, PII patterns, duplicates, filters, every rejection explained."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from helpers.data import CleanConfig, clean_file, clean_rows, generate, normalise_whitespace, scrub_pii
from helpers.data.__main__ import main
from helpers.data.clean import detection_scores, jaccard, make_near_duplicates, shingles, user_text

FIXTURES = Path(__file__).parent / "fixtures" / "data"


def chat(text: str, answer: str = '{"category": "billing"}', **meta) -> dict:
    return {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": text},
                         {"role": "assistant", "content": answer}], "metadata": meta}


@pytest.fixture(scope="module")
def tickets():
    return generate.generate_tickets(n=400)


@pytest.mark.parametrize("text, kind, expected", [
    ("mail me at maria.garcia42@example.com. Thanks", "email", "mail me at [EMAIL]. Thanks"),
    ("mail me at mariagarcia42@examplecom thanks", "email", "mail me at [EMAIL] thanks"),
    ("My phone is +1 555 123 4567.", "phone", "My phone is [PHONE]."),
    ("call (555) 123-4567 now", "phone", "call [PHONE] now"),
    ("The card I used was 4111 1111 1111 1111.", "card", "The card I used was [CARD]."),
    ("card 4111-1111-1111-1111 and 4111111111111111", "card", "card [CARD] and [CARD]"),
    ("Ship to 12 Main Street, Springfield.", "address", "Ship to [ADDRESS]."),
    ("ship to 7 park lane springfield", "address", "ship to [ADDRESS] springfield"),
    ("send it to 221 Baker St. today", "address", "send it to [ADDRESS] today"),
])
def test_pii_patterns(text, kind, expected):
    scrubbed, found = scrub_pii(text)
    assert scrubbed == expected and dict(found) == {kind: expected.count(f"[{kind.upper()}]")}


@pytest.mark.parametrize("text", [
    "order ORD-123456 is late", "order #123456", "I paid 1299.99 on 2024-05-01", "ORD 123456 and order no. 654321",
    "2 identical charges for my order", "It has 16 GB and weighs 1.4 kg", "I tried 3 times since monday",
])
def test_pii_patterns_leave_order_ids_prices_and_dates_alone(text):
    assert scrub_pii(text) == (text, {})


def test_generated_pii_is_found_per_row_with_no_false_positive(tickets):
    for row in tickets:
        _, found = scrub_pii(normalise_whitespace(user_text(row)))
        assert set(found) == set(row["metadata"]["pii"]), user_text(row)


def test_normalise_whitespace():
    assert normalise_whitespace("  a\u00a0 b\t\tc\u200b \r\n\r\n\r\n\r\nd  ") == "a b c\n\nd"


def test_invariant_and_reasons(tickets):
    rows = tickets + [chat("too short"), chat("x" * 3000), tickets[0]]
    result = clean_rows(rows, CleanConfig(max_chars=2000))
    s = result.stats
    assert s["valid_in"] == len(rows) == s["kept"] + s["rejected"] == len(result.kept) + len(result.rejects)
    assert s["reasons"]["too_short"] == 1 and s["reasons"]["too_long"] == 1
    assert s["reasons"]["exact_duplicate"] >= 1 and s["reasons"]["near_duplicate"] >= 1
    assert all(r["reject"]["reason"] and r["reject"]["detail"] for r in result.rejects)
    planted = {(r["metadata"]["group"]) for r in tickets if r["metadata"]["variant"] == 1}
    caught = {r["metadata"]["group"] for r in result.rejects if r["metadata"].get("variant") == 1}
    # A resubmission is removed, unless its original was itself removed first (a near-duplicate of another customer's
    # short, generic ticket: generator v2, group t00305 at n=400); either way at most one row of the group is left.
    originals_removed = {r["metadata"]["group"] for r in result.rejects if r["metadata"].get("variant") == 0}
    assert planted and caught <= planted and planted - caught <= originals_removed, "resubmissions are removed"
    kept = Counter(r["metadata"].get("group") for r in result.kept)
    assert all(kept[g] <= 1 for g in planted), "never both a ticket and its resubmission"
    assert len(planted - caught) <= 2
    assert sum(s["pii"].values()) > 0 and all("@example.com" not in user_text(r) for r in result.kept)


def test_near_duplicate_threshold_is_a_parameter():
    a = chat("My PulseBuds keep disconnecting from Bluetooth every few minutes, please help me.")
    b = chat("My PulseBuds keep disconnecting from Bluetooth every few minutes, please help me. Any update?")
    similarity = jaccard(shingles(user_text(a)), shingles(user_text(b)))
    assert 0.7 < similarity < 0.95
    assert clean_rows([a, b], CleanConfig(near_threshold=similarity - 0.05)).stats["reasons"] == {"near_duplicate": 1}
    assert clean_rows([a, b], CleanConfig(near_threshold=similarity + 0.05)).stats["reasons"] == {}


def test_near_duplicate_with_a_different_answer_is_flagged_as_conflict():
    a = chat("My PulseBuds keep disconnecting from Bluetooth every few minutes, please help me.")
    b = chat("My PulseBuds keep disconnecting from Bluetooth every few minutes, please help me!", '{"x": 1}')
    assert "its answer differs" in clean_rows([a, b]).rejects[0]["reject"]["detail"]


def test_planted_near_duplicates_are_measured(tickets):
    base = clean_rows(tickets).kept
    copies = make_near_duplicates(base, 30, seed=3)
    result = clean_rows(base + copies)
    flagged = {i for i, r in enumerate(result.rejects)}
    planted = {i for i, r in enumerate(result.rejects) if "planted_from" in r["metadata"]}
    scores = detection_scores(flagged, planted)
    assert scores["precision"] == 1.0 and len(planted) >= 25  # recall >= 25/30 at threshold 0.8


def test_clean_file_writes_invalid_rows_to_rejects_and_keeps_the_invariant(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    rows = [chat("Where is my order ORD-123456? It is late."), chat("Where is my order ORD-123456? It is late.")]
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken\n\n", encoding="utf-8")
    rc = main(["clean", str(src), "--out", str(tmp_path / "out.jsonl"), "--rejects", str(tmp_path / "rej.jsonl")])
    assert rc == 0 and "rows in: 3, invalid: 1, kept: 1, rejected: 1" in capsys.readouterr().out
    rejects = [json.loads(x) for x in (tmp_path / "rej.jsonl").read_text().splitlines()]
    assert [r["reject"]["reason"] for r in rejects] == ["invalid:not_json", "exact_duplicate"]
    assert rejects[0]["line"] == 3


def test_clean_file_on_a_missing_file_is_exit_2(tmp_path, capsys):
    rc = main(["clean", str(tmp_path / "no.jsonl"), "--out", str(tmp_path / "o"), "--rejects", str(tmp_path / "r")])
    assert rc == 2 and "file_missing" in capsys.readouterr().out


def test_cleaning_is_deterministic(tickets, tmp_path):
    generate.write_jsonl(tickets, tmp_path / "t.jsonl")
    for k in (1, 2):
        clean_file(tmp_path / "t.jsonl", tmp_path / f"c{k}.jsonl", tmp_path / f"r{k}.jsonl")
    assert (tmp_path / "c1.jsonl").read_bytes() == (tmp_path / "c2.jsonl").read_bytes()
    assert (tmp_path / "r1.jsonl").read_bytes() == (tmp_path / "r2.jsonl").read_bytes()
