"""Train/validation/test splits that are stratified by category and never split a group, plus a leakage check.

Taught in 02_dataset. A *group* is a ticket and its variants (``metadata.group``) joined with every row that is a
near-duplicate of one of them: all rows of a group land in the same split, so the test set never holds a light edit
of a training ticket.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from helpers.data.clean import NearDuplicateIndex, category_of, normalise_whitespace, user_text

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class SplitConfig:
    """Fractions per split, the shuffle seed and the near-duplicate threshold that joins groups."""

    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train, validation, test
    seed: int = 42
    near_threshold: float = 0.8  # Jaccard of character shingles (as in CleanConfig)
    shingle_size: int = 5


def group_ids(rows: list[dict[str, Any]], near_threshold: float = 0.8, shingle_size: int = 5) -> list[str]:
    """One group id per row: ``metadata.group`` merged with near-duplicates (union-find)."""
    parent = list(range(len(rows)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)

    first_of_group: dict[str, int] = {}
    index = NearDuplicateIndex(near_threshold, shingle_size)
    for i, row in enumerate(rows):
        group = (row.get("metadata") or {}).get("group")
        if group is not None:
            union(i, first_of_group.setdefault(str(group), i))
        text = user_text(row)
        for j, _sim in index.query(text):
            union(i, j)
        index.add(i, text)
    names = {}
    for i, row in enumerate(rows):  # name each merged group after its first row's own group
        root = find(i)
        names.setdefault(root, str((rows[root].get("metadata") or {}).get("group", f"row{root}")))
    return [names[find(i)] for i in range(len(rows))]


def split_rows(rows: list[dict[str, Any]], cfg: SplitConfig = SplitConfig()) -> dict[str, list[dict[str, Any]]]:
    """80/10/10 splits, stratified by category, whole groups only, deterministic. Taught in 02_dataset."""
    if abs(sum(cfg.fractions) - 1.0) > 1e-9 or len(cfg.fractions) != len(SPLITS):
        raise ValueError(f"fractions {cfg.fractions} must be three numbers that sum to 1")
    groups: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(group_ids(rows, cfg.near_threshold, cfg.shingle_size)):
        groups[g].append(i)
    by_category: dict[str, list[str]] = defaultdict(list)
    for g, members in groups.items():  # a group is stratified by its most common category
        by_category[Counter(category_of(rows[i]) for i in members).most_common(1)[0][0]].append(g)
    rng = random.Random(cfg.seed)
    assigned: dict[str, list[int]] = {s: [] for s in SPLITS}
    for category in sorted(by_category):
        names = sorted(by_category[category])
        rng.shuffle(names)
        counts, total = [0, 0, 0], 0
        for g in names:
            total += len(groups[g])
            # the split furthest below its share of this category so far takes the group
            k = max(range(3), key=lambda s: (cfg.fractions[s] * total - counts[s], -s))
            counts[k] += len(groups[g])
            assigned[SPLITS[k]].extend(groups[g])
    return {s: [rows[i] for i in sorted(idx)] for s, idx in assigned.items()}


@dataclass
class LeakageReport:
    """Rows shared between splits: exact text matches, near-duplicates and shared group ids."""

    exact: list[tuple[str, int, str, int]] = field(default_factory=list)  # (split_a, row, split_b, row)
    near: list[tuple[str, int, str, int, float]] = field(default_factory=list)  # ... plus Jaccard
    groups: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.exact or self.near or self.groups)

    def summary(self) -> str:
        return f"exact overlaps: {len(self.exact)}, near overlaps: {len(self.near)}, shared groups: {len(self.groups)}"


def check_leakage(splits: dict[str, list[dict[str, Any]]], near_threshold: float = 0.8,
                  shingle_size: int = 5) -> LeakageReport:
    """Find user texts that appear (exactly or nearly) in two splits, and groups that straddle splits.

    Taught in 02_dataset. Every pair is reported once, from the earlier split in ``splits`` order to the later one.
    """
    report = LeakageReport()
    names = list(splits)
    exact_seen: dict[str, tuple[str, int]] = {}
    group_seen: dict[str, str] = {}
    shared: set[str] = set()
    index = NearDuplicateIndex(near_threshold, shingle_size)
    for name in names:
        exact_new, near_hits = {}, []
        for i, row in enumerate(splits[name]):
            text = user_text(row)
            key = normalise_whitespace(text).lower()
            if key in exact_seen and exact_seen[key][0] != name:
                report.exact.append((*exact_seen[key], name, i))
            exact_new.setdefault(key, (name, i))
            for (other, j), sim in index.query(text):
                if other != name:
                    near_hits.append((other, j, name, i, round(sim, 4)))
            group = (row.get("metadata") or {}).get("group")
            if group is not None:
                if group in group_seen and group_seen[group] != name:
                    shared.add(str(group))
                group_seen.setdefault(group, name)
        for i, row in enumerate(splits[name]):  # index this split only after querying it against earlier ones
            index.add((name, i), user_text(row))
        for key, value in exact_new.items():
            exact_seen.setdefault(key, value)
        report.near.extend(near_hits)
    report.groups = sorted(shared)
    return report
