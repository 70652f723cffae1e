"""helpers.data.split: stratified, group-aware, deterministic splits and a leakage check that finds planted leaks."""

from __future__ import annotations

from collections import Counter

import pytest

from helpers.data import SplitConfig, check_leakage, clean_rows, generate, group_ids, split_rows
from helpers.data.clean import category_of, make_near_duplicates


@pytest.fixture(scope="module")
def rows():
    return clean_rows(generate.generate_tickets(n=600)).kept


@pytest.fixture(scope="module")
def splits(rows):
    return split_rows(rows)


def test_fractions_and_no_row_lost(rows, splits):
    sizes = {k: len(v) for k, v in splits.items()}
    assert sum(sizes.values()) == len(rows)
    assert abs(sizes["train"] / len(rows) - 0.8) < 0.02 and abs(sizes["test"] / len(rows) - 0.1) < 0.02


def test_stratified_by_category(rows, splits):
    overall = Counter(category_of(r) for r in rows)
    for name, frac in zip(("train", "validation", "test"), (0.8, 0.1, 0.1)):
        counts = Counter(category_of(r) for r in splits[name])
        for category, n in overall.items():
            assert abs(counts[category] - frac * n) <= 2, (name, category)


def test_groups_and_near_duplicates_never_straddle():
    rows = generate.generate_tickets(n=300)  # raw: the planted resubmissions are still there
    variant = [r for r in rows if r["metadata"]["variant"] == 1]
    copies = make_near_duplicates(rows, 20, seed=5)  # new group ids: only the near-duplicate join keeps them together
    splits = split_rows(rows + copies)
    where = {id(r): name for name, part in splits.items() for r in part}
    for row in variant:
        twins = [r for r in rows if r["metadata"]["group"] == row["metadata"]["group"]]
        assert len({where[id(t)] for t in twins}) == 1
    for copy in copies:
        assert where[id(copy)] == where[id(rows[copy["metadata"]["planted_from"]])]
    assert check_leakage(splits).ok


def test_group_ids_join_metadata_groups_and_near_duplicates():
    a = {"messages": [{"role": "user", "content": "My PulseBuds keep disconnecting from Bluetooth all day long."},
                      {"role": "assistant", "content": "{}"}], "metadata": {"group": "g1"}}
    b = {**a, "metadata": {"group": "g2"}}
    c = {"messages": [{"role": "user", "content": "Completely different: where is my refund for the camera?"},
                      {"role": "assistant", "content": "{}"}], "metadata": {"group": "g1"}}
    d = {"messages": [{"role": "user", "content": "Nothing alike here at all, a question about invoices."},
                      {"role": "assistant", "content": "{}"}], "metadata": {"group": "g3"}}
    assert group_ids([a, b, c, d]) == ["g1", "g1", "g1", "g3"]


def test_deterministic_and_seed_matters(rows):
    assert split_rows(rows) == split_rows(rows)
    assert split_rows(rows, SplitConfig(seed=1))["test"] != split_rows(rows, SplitConfig(seed=2))["test"]


def test_bad_fractions_are_refused(rows):
    with pytest.raises(ValueError, match="sum to 1"):
        split_rows(rows, SplitConfig(fractions=(0.8, 0.1, 0.2)))


def test_leakage_check_finds_planted_exact_near_and_group_leaks(splits):
    test = splits["test"]
    near = make_near_duplicates(test, 10, seed=1)
    exact = [dict(test[0], metadata={"group": "fresh"})]
    shared = [dict(test[1], messages=[{"role": "user", "content": "unrelated words entirely, about a keyboard"},
                                      {"role": "assistant", "content": "{}"}])]
    leaky = {**splits, "train": splits["train"] + near + exact + shared}
    report = check_leakage(leaky)
    n = len(splits["train"])
    found = {i for a, i, b, j, s in report.near if a == "train"}
    assert found >= set(range(n, n + 8)) and found <= set(range(n, n + 11)), "near leaks: >= 8/10 found, no false hit"
    assert [(a, i, b) for a, i, b, j in report.exact] == [("train", n + 10, "test")]
    assert report.groups == [str(test[1]["metadata"]["group"])]
    assert not report.ok and "near overlaps" in report.summary()
