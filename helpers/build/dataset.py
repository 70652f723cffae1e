"""Build the course dataset, ``data/tickets/``, byte for byte (fixed seeds, no timestamps).

``python -m helpers.data build`` runs :func:`build`: generate, clean, split, check for leakage, validate, and write
every file with a README of provenance and checksums (what 02_dataset does step by step).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from helpers.checksums import sha256
from helpers.config import SEED, TICKETS_DIR
from helpers.data import generate
from helpers.data.clean import CleanConfig, balance_report, clean_file
from helpers.data.formats import read_jsonl, write_jsonl
from helpers.data.split import SplitConfig, check_leakage, split_rows
from helpers.data.validation import validate

BUILD_FILES = ("tickets.jsonl", "schema.json", "clean.jsonl", "rejects.jsonl", "train.jsonl", "validation.jsonl",
               "test.jsonl")
BUILD_N = 1800
# Written by hand, never by build: build reads it (for the README's counts) and never writes or deletes it.
HANDWRITTEN_FILE = "handwritten.jsonl"


def build(out_dir: Path = TICKETS_DIR, n: int = BUILD_N, log: Any = print) -> dict[str, Any]:
    """Generate, clean, split and check the course dataset; write it with a README of provenance and checksums."""
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
            "seeds": {"generator": generate.DEFAULT_SEED, "split": split_cfg.seed}, "split": split_cfg,
            "handwritten": read_jsonl(out_dir / HANDWRITTEN_FILE) if (out_dir / HANDWRITTEN_FILE).exists() else None}
    (out_dir / "README.md").write_text(_readme(info), encoding="utf-8")
    log(f"wrote {out_dir}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return info


def cleaned_balance(rows: list[dict[str, Any]]) -> dict[str, int]:

    return dict(sorted(balance_report(rows).items()))


def _readme(info: dict[str, Any]) -> str:

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
    if info.get("handwritten") is not None:
        lines += ["", *handwritten_section(info["handwritten"])]
    return "\n".join(lines) + "\n"


def handwritten_section(rows: list[dict[str, Any]]) -> list[str]:
    """The README's lines on ``handwritten.jsonl``: what it is, the rules of its reference answers, its counts."""
    from collections import Counter

    answers = [json.loads(r["messages"][-1]["content"]) for r in rows]
    cats, pris = Counter(a["category"] for a in answers), Counter(a["priority"] for a in answers)
    with_order = sum(a["order_id"] is not None for a in answers)
    with_product = sum(a["product"] is not None for a in answers)
    return [
        f"## Hand-written tickets (`{HANDWRITTEN_FILE}`)", "",
        f"{len(rows)} tickets the course team wrote by hand, in phrasings the generator never uses: no greeting or "
        "odd ones, run-on sentences, sarcasm, non-native English, very short and very long tickets, typos, mixed case, "
        "emoji, order ids in odd places and forms (a subject line, in parentheses, at the end, `ord#`, `order ref`, "
        "lower-case `ord-`, digits split by a space, inside a bank statement line), several products in one ticket, "
        "decoys (a tracking number, a firmware version, a second order that is fine). They were never generated and "
        "are never trained on: they are a held-out check that the model reads tickets, not the generator's templates. "
        "`python -m helpers.data build` does not write or delete this file (it only reads it for these counts); "
        "load it "
        "with `read_jsonl(helpers.data.HANDWRITTEN)`. Rows have the same format as `test.jsonl` (the same system "
        "prompt) and `metadata` `{\"source\": \"handwritten\", \"id\", \"author\", \"notes\"}` (notes: what the "
        "ticket tests and why its answer is what it is).", "",
        "Rules for the reference answers (the generator's rules, plus the cases it never produces):", "",
        "- keys `summary, category, product, order_id, priority` in that order; `summary` is free text (3-120 "
        "characters); `category` and `priority` from the schema's enums.",
        "- `product`: a canonical name from `generate.PRODUCTS`, or null when the ticket names none (\"my laptop\" is "
        "not a product). When several products are named, the answer is the one the issue is about (the one "
        "charged, missing, returned, broken or asked about); products named as context are not. Warranty questions "
        "(\"does Care+ cover my SnapCam\") name the device, as the generator's warranty family does; `Nimbus Care+` "
        "is the answer only when the plan itself is the issue. `aerobook` alone is the `AeroBook 14`.",
        "- `order_id`: `ORD-` + the 6 digits of the order the ticket names, however it is written; null when no order "
        "number is given (a tracking number, an invoice amount or a version number is not one). With two orders, the "
        "one the issue is about.",
        "- `category`: the kind of the (first) issue; `priority` from the ticket's own urgency words, as the "
        "generator's cue levels: `urgent` = needed today, tonight, right now or within hours (a flight tomorrow "
        "morning), an emergency; `high` = asap, quickly, \"as a priority\", a deadline within days "
        "(\"before Friday\", \"by the weekend\"); `low` = no rush, "
        "not urgent, whenever, no pressure; no cue (complaints, sarcasm, \"help!!\" included) = `medium`.", "",
        f"Counts: {with_order} name an order, {with_product} a product, {len(rows) - with_product} no product.", "",
        "| category | rows |", "|---|---|", *[f"| {c} | {cats[c]} |" for c in generate.CATEGORIES], "",
        "| priority | rows |", "|---|---|", *[f"| {p} | {pris[p]} |" for p in generate.PRIORITIES],
    ]
