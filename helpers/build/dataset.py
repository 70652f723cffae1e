"""Build the course dataset, ``data/tickets/``, byte for byte (fixed seeds, no timestamps).

``python -m helpers.data build`` runs :func:`build`: generate, clean, split, check for leakage, validate, and write
every file with a README of provenance and checksums (what 02_dataset does step by step).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from helpers.config import TICKETS_DIR
from helpers.models import sha256

BUILD_FILES = ("tickets.jsonl", "schema.json", "clean.jsonl", "rejects.jsonl", "train.jsonl", "validation.jsonl",
               "test.jsonl")
BUILD_N = 1800


def build(out_dir: Path = TICKETS_DIR, n: int = BUILD_N, log: Any = print) -> dict[str, Any]:
    """Generate, clean, split and check the course dataset; write it with a README of provenance and checksums."""
    from helpers.config import SEED
    from helpers.data import generate
    from helpers.data.clean import CleanConfig, clean_file
    from helpers.data.formats import write_jsonl
    from helpers.data.split import SplitConfig, check_leakage, split_rows
    from helpers.data.validation import validate

    out_dir = Path(out_dir)
    rows = generate.generate_tickets(n=n, seed=generate.DEFAULT_SEED)
    generate.write_jsonl(rows, out_dir / "tickets.jsonl")
    generate.write_schema(out_dir / "schema.json")
    clean_cfg, split_cfg = CleanConfig(), SplitConfig(seed=SEED)
    cleaned = clean_file(out_dir / "tickets.jsonl", out_dir / "clean.jsonl", out_dir / "rejects.jsonl", clean_cfg)
    splits = split_rows(cleaned.kept, split_cfg)
    leakage = check_leakage(splits, split_cfg.near_threshold, split_cfg.shingle_size)
    if not leakage.ok:
        raise RuntimeError(f"the splits leak ({leakage.summary()}): this is a bug in helpers.data.split")
    for name, split in splits.items():
        write_jsonl(split, out_dir / f"{name}.jsonl")
    counts = {}
    for name in BUILD_FILES:
        if name.endswith(".jsonl") and name != "rejects.jsonl":
            report = validate(out_dir / name)
            if report.exit_code != 0:
                raise RuntimeError(f"{out_dir / name} is not valid: {report.lines()[0]}")
            counts[name] = report.n_rows
    counts["rejects.jsonl"] = cleaned.stats["rejected"] + cleaned.stats["invalid_in"]
    planted = [r for r in rows if r["metadata"]["variant"] > 0]
    caught = [r for r in cleaned.rejects if r["metadata"]["variant"] > 0]
    info = {"n": n, "counts": counts, "clean": cleaned.stats, "planted": (len(caught), len(planted)),
            "leakage": leakage.summary(),
            "balance": {name: cleaned_balance(split) for name, split in splits.items()},
            "sha256": {name: sha256(out_dir / name) for name in BUILD_FILES},
            "seeds": {"generator": generate.DEFAULT_SEED, "split": split_cfg.seed}, "split": split_cfg}
    (out_dir / "README.md").write_text(_readme(info), encoding="utf-8")
    log(f"wrote {out_dir}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return info


def cleaned_balance(rows: list[dict[str, Any]]) -> dict[str, int]:
    from helpers.data.clean import balance_report

    return dict(sorted(balance_report(rows).items()))


def _readme(info: dict[str, Any]) -> str:
    from helpers.data import generate

    c = info["clean"]
    split_cfg = info["split"]
    lines = [
        "# Support tickets → JSON (the course dataset)", "",
        "Produced by code, byte for byte: `python -m helpers.data build` (do not edit these files by hand).", "",
        "## Provenance", "",
        f"- generator: `{generate.GENERATOR}` (`helpers.data.generate.generate_tickets(n={info['n']}, "
        f"seed={info['seeds']['generator']})`): tickets composed from independent parts, answers derived from the "
        f"same facts; every row's `metadata` holds generator, family, seed, group, variant, pii, synthetic.",
        "- planted problems: a few customers resubmit a ticket (`metadata.variant` 1: verbatim or lightly edited) "
        "and some tickets hold PII (`metadata.pii`: email, phone, address, card).",
        f"- cleaning: `helpers.data.clean.clean_file` with `{json.dumps(c['config'])}`.",
        f"- splits: `helpers.data.split.split_rows`, fractions {list(split_cfg.fractions)}, seed {split_cfg.seed}, "
        f"stratified by category, group-aware (a ticket's variants and near-duplicates at Jaccard >= "
        f"{split_cfg.near_threshold} stay together). Leakage check: {info['leakage']}.",
        "- answer schema: `schema.json` (JSON Schema 2020-12 of the assistant's JSON).", "",
        "## Files", "",
        "| file | rows | sha256 |", "|---|---|---|",
    ]
    for name, digest in info["sha256"].items():
        lines.append(f"| `{name}` | {info['counts'].get(name, '-')} | `{digest}` |")
    lines += ["", "## Cleaning", "",
              f"- rows in: {c['rows_in']} (valid {c['valid_in']}, invalid {c['invalid_in']}); kept {c['kept']}, "
              f"rejected {c['rejected']} (`valid_in == kept + rejected`)."]
    lines += [f"- removed, {reason}: {n}" for reason, n in c["reasons"].items()]
    lines += [f"- planted resubmissions (`metadata.variant` > 0) removed: {info['planted'][0]} of {info['planted'][1]}"]
    lines += [f"- PII scrubbed (replaced by `[{kind.upper()}]`), {kind}: {n}" for kind, n in c["pii"].items()]
    lines += ["", "## Category balance", "", "| category | " + " | ".join(info["balance"]) + " |",
              "|---|" + "---|" * len(info["balance"])]
    for cat in sorted({k for b in info["balance"].values() for k in b}):
        lines.append(f"| {cat} | " + " | ".join(str(b.get(cat, 0)) for b in info["balance"].values()) + " |")
    return "\n".join(lines) + "\n"
