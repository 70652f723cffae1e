"""``python -m helpers.data {build,validate,clean,split,convert,pii-scores}``: the course dataset from the command line.

Taught in 02_dataset. ``build`` regenerates ``data/tickets/`` byte for byte (fixed seeds, no timestamps).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from helpers.build.dataset import BUILD_FILES, BUILD_N, build  # noqa: F401 - the build lives with the builders
from helpers.cli import path_arg
from helpers.config import TICKETS_DIR, expand_user
from helpers.data.clean import CleanConfig, PII_SET, check_outputs, clean_file, pii_scores, read_pii_set
from helpers.data.formats import (
    DataFormatError, convert, detect_format, jsonl_writer, read_rows, write_csv, write_files, write_jsonl,
)
from helpers.data.split import SPLITS, SplitConfig, check_leakage, split_rows
from helpers.data.validation import OPENAI_ROLES, ROLES, TemplateError, display_path, validate


def _load_tokenizer(path: str) -> Any:
    """A tokenizer from a folder (a model folder or a tokenizer-only one) or a cached hub id.

    Anything transformers cannot load (an empty folder, a file, an id not in the cache) is a ``TokenizerLoadError``
    with one line that says what to pass instead.
    """
    from transformers import AutoTokenizer

    try:
        local = expand_user(path)
        return AutoTokenizer.from_pretrained(str(local) if local.exists() else path)
    except Exception as err:  # noqa: BLE001 - transformers raises many kinds here; all mean "not a tokenizer"
        reason = str(err).splitlines()[0] if str(err) else repr(err)
        raise TokenizerLoadError(f"{path}: tokenizer_unusable: cannot load a tokenizer ({reason[:160]}): pass a folder "
                                 f"with tokenizer files (e.g. data/tiny-llama) or a hub id that is in the local cache") \
            from None


class TokenizerLoadError(ValueError):
    """``--tokenizer`` names nothing transformers can load as a tokenizer."""


def cmd_validate(args: argparse.Namespace) -> int:

    tokenizer = None
    if args.max_tokens is not None and not args.tokenizer:
        print("error: --max-tokens needs --tokenizer PATH (token counts use the model's chat template)")
        return 2
    if args.tokenizer:
        try:
            tokenizer = _load_tokenizer(args.tokenizer)
        except TokenizerLoadError as err:
            print(err)
            return 2
    try:
        report = validate(args.path, tokenizer=tokenizer, max_tokens=args.max_tokens, openai=args.openai)
    except TemplateError as err:
        print(f"{args.tokenizer}: no_generation_markers: {err}")
        return 2
    for line in report.lines():
        print(line)
    return report.exit_code


def cmd_clean(args: argparse.Namespace) -> int:
    cfg = CleanConfig(near_threshold=args.near_threshold, min_chars=args.min_chars, max_chars=args.max_chars,
                      scrub_pii=not args.keep_pii)
    try:
        result = clean_file(args.path, args.out, args.rejects, cfg)
    except DataFormatError as err:
        print(err)
        return 2
    except OSError as err:  # a full disk, a device that refuses writes: nothing was replaced
        where = f"{err.filename}: " if err.filename else ""
        print(f"error: {where}cannot write the outputs ({err.strerror or err}): no file was changed; free space or "
              f"choose other paths")
        return 2
    s = result.stats
    print(f"rows in: {s['rows_in']}, invalid: {s['invalid_in']}, kept: {s['kept']}, rejected: {s['rejected']}")
    print("reasons: " + json.dumps(s["reasons"]) + "  pii: " + json.dumps(s["pii"]))
    print("balance: " + json.dumps(s["balance"]))
    if s["rows_in"] and not s["valid_in"]:  # an output with nothing in it is not a success
        print(f"error: none of the {s['rows_in']} rows is a chat row, so {args.out} is empty: each is in "
              f"{args.rejects} with its reason; is this the right file? (python -m helpers.data validate {args.path})")
        return 1
    return 0


def cmd_split(args: argparse.Namespace) -> int:
    outputs = {f"--out-dir {name}.jsonl": Path(args.out_dir) / f"{name}.jsonl" for name in SPLITS}
    try:
        check_outputs(args.path, outputs)
    except DataFormatError as err:
        print(err)
        return 2
    report = validate(args.path)
    if report.unreadable:
        print(report.file_problems[0].format(args.path))
        return 2
    errors = [p for p in report.problems if p.is_error]
    if errors:
        first = next((r for r in report.rows if not r.valid), None)
        try:
            kind = detect_format(first.data) if first is not None else "messages"
        except DataFormatError:
            kind = "messages"
        if kind != "messages":
            print(f"{report.path}:{first.line}: split needs chat rows (messages) and these are {kind} rows: convert them"
                  f" first (python -m helpers.data convert {report.path} --out ROWS.jsonl --to messages)")
        elif not report.n_invalid:  # a problem of the whole file (its encoding), not of a row
            print(f"error: {errors[0].format(args.path)}")
        else:
            print(f"error: {report.n_invalid} of {report.n_rows} rows {'is' if report.n_invalid == 1 else 'are'} "
                  f"invalid (first: {errors[0].format(args.path)}): split needs valid chat rows: clean them first "
                  f"(python -m helpers.data clean {report.path} --out CLEAN.jsonl --rejects REJECTS.jsonl)")
        return 2
    rows = report.valid_rows()
    cfg = SplitConfig(seed=args.seed, near_threshold=args.near_threshold)
    splits = split_rows(rows, cfg)
    try:
        write_files({outputs[f"--out-dir {name}.jsonl"]: jsonl_writer(split) for name, split in splits.items()})
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        print(f"error: {where}cannot write the splits ({err.strerror or err}): no file was changed; free space or "
              f"choose another --out-dir")
        return 2
    leakage = check_leakage(splits, cfg.near_threshold)
    print(", ".join(f"{k}: {len(v)}" for k, v in splits.items()) + f"; {leakage.summary()}")
    for name, split in splits.items():
        if not split:
            print(f"warning: the {name} split is empty ({len(rows)} rows in all): add rows, or do not use that split")
    return 0 if leakage.ok else 1


def cmd_convert(args: argparse.Namespace) -> int:
    to = "prompt_completion" if args.to == "csv" else args.to
    try:
        check_outputs(args.path, {"--out": args.out})
        rows = read_rows(args.path, system_prompt=args.system)
        if not rows:
            raise DataFormatError(f"{display_path(args.path)}: no rows to convert (an empty file, or a CSV header with "
                                  f"nothing under it): check the file")
        tokenizer = _load_tokenizer(args.tokenizer) if args.tokenizer else None
        roles = OPENAI_ROLES if args.to == "openai" else ROLES
        out_rows = []
        for number, row in enumerate(rows, 1):
            messages = row.get("messages") if isinstance(row, dict) else None
            for turn in messages if isinstance(messages, list) else []:
                role = turn.get("role") if isinstance(turn, dict) else None
                if role not in roles:
                    raise DataFormatError(f"{display_path(args.path)}: row {number}: unknown_role: a turn has role "
                                          f"{role!r}, not one of {', '.join(sorted(roles))}: fix or remove the row "
                                          f"(python -m helpers.data validate {display_path(args.path)} lists them all)")
            try:
                out_rows.extend(convert([row], to, tokenizer, args.system))
            except (DataFormatError, KeyError, TypeError, AttributeError) as err:
                reason = f"missing key {err}" if isinstance(err, KeyError) else str(err)
                raise DataFormatError(f"{display_path(args.path)}: row {number}: {reason}") from None
        if args.to == "csv":
            write_csv(out_rows, args.out)
        else:
            write_jsonl(out_rows, args.out)
    except (DataFormatError, TokenizerLoadError) as err:
        message = str(err).removeprefix("error: ")
        print(f"error: {message}")
        return 2
    except OSError as err:  # checked first; a disk that fills or a file that vanishes meanwhile
        print(f"error: {display_path(err.filename or args.path)}: {err.strerror or err}: no output was written; check "
              f"the path and free space")
        return 2
    print(f"wrote {len(out_rows)} rows to {display_path(args.out)} ({args.to})")
    return 0


def cmd_pii_scores(args: argparse.Namespace) -> int:

    try:
        cases = read_pii_set(args.set)
    except ValueError as err:  # UnicodeDecodeError too
        print(f"error: {err}"[:400])
        return 2
    except OSError as err:
        print(f"error: {args.set}: cannot read the labelled set ({err.strerror or err})")
        return 2
    if not cases:
        print(f"error: {args.set}: the labelled set holds no cases: precision and recall of nothing are not scores; "
              f"add labelled lines (see data/pii/labelled.jsonl)")
        return 2
    scores = pii_scores(cases)
    print(f"{'kind':<9}{'labelled':>9}{'flagged':>9}{'precision':>11}{'recall':>8}")
    for kind, s in scores.items():
        print(f"{kind:<9}{s['labelled']:>9}{s['flagged']:>9}{s['precision']:>11.3f}{s['recall']:>8.3f}")
    return 0


def _tokenizer_arg(text: str) -> str:
    """An argparse type for ``--tokenizer``: a folder or a hub id, never an empty string (which meant "none")."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty tokenizer: name a folder with tokenizer files (e.g. data/tiny-llama) "
                                         "or a cached hub id, or leave the option out")
    return text


def _fraction(text: str) -> float:
    """An argparse type: a similarity in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 1:  # NaN fails too
        raise argparse.ArgumentTypeError(f"{text!r} is not a Jaccard similarity in (0, 1]: use e.g. 0.8")
    return value


def _at_least(minimum: int):
    """An argparse type: a whole number >= ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}: use a number >= {minimum}")
        return value

    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.data", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="regenerate data/tickets (deterministic)")
    b.add_argument("--out", type=path_arg, default=TICKETS_DIR)
    v = sub.add_parser("validate", help="check a chat JSONL file; exit 0 valid, 1 invalid rows, 2 unreadable")
    v.add_argument("path", type=path_arg)
    v.add_argument("--tokenizer", type=_tokenizer_arg, help="tokenizer path or hub id: token counts and assistant-label coverage")
    v.add_argument("--max-tokens", type=_at_least(1), help="flag rows over this many tokens (needs --tokenizer)")
    v.add_argument("--openai", action="store_true", help="OpenAI fine-tuning format (stricter keys and roles)")
    c = sub.add_parser("clean", help="normalise, scrub PII, filter, deduplicate; every removed row goes to --rejects")
    c.add_argument("path", type=path_arg)
    c.add_argument("--out", required=True, type=path_arg)
    c.add_argument("--rejects", required=True, type=path_arg)
    c.add_argument("--near-threshold", type=_fraction, default=0.8, help="Jaccard similarity in (0, 1]")
    c.add_argument("--min-chars", type=_at_least(0), default=20)
    c.add_argument("--max-chars", type=_at_least(1), default=2000)
    c.add_argument("--keep-pii", action="store_true", help="do not scrub emails, phones, cards, addresses")
    s = sub.add_parser("split", help="80/10/10 stratified, group-aware splits + leakage check")
    s.add_argument("path", type=path_arg)
    s.add_argument("--out-dir", required=True, type=path_arg)
    s.add_argument("--seed", type=int, default=42)
    s.add_argument("--near-threshold", type=_fraction, default=0.8, help="Jaccard similarity in (0, 1]")
    k = sub.add_parser("convert", help="convert JSONL/CSV/JSON-array rows between formats")
    k.add_argument("path", type=path_arg)
    k.add_argument("--out", required=True, type=path_arg)
    k.add_argument("--to", choices=("messages", "prompt_completion", "text", "openai", "csv"), default="messages")
    k.add_argument("--tokenizer", type=_tokenizer_arg, help="needed for --to text (the chat template renders rows)")
    k.add_argument("--system", help="system prompt to add when converting prompt/completion rows")
    q = sub.add_parser("pii-scores", help="precision and recall of PII scrubbing per kind on a hand-labelled set")
    q.add_argument("--set", type=path_arg, default=None, help="labelled JSONL (default: data/pii/labelled.jsonl)")
    args = parser.parse_args(argv)
    if args.command == "pii-scores" and args.set is None:

        args.set = PII_SET
    if args.command == "clean" and args.min_chars > args.max_chars:
        c.error(f"--min-chars {args.min_chars} is above --max-chars {args.max_chars}: every row would be rejected")
    if args.command == "build":
        try:
            check_outputs("", {"--out": Path(args.out) / "tickets.jsonl"})
            build(args.out)
        except (DataFormatError, OSError) as err:
            print(f"error: {str(err).removeprefix('error: ')}")
            return 2
        return 0
    commands = {"validate": cmd_validate, "clean": cmd_clean, "split": cmd_split, "convert": cmd_convert,
                "pii-scores": cmd_pii_scores}
    return commands[args.command](args)


if __name__ == "__main__":
    from helpers.cli import run

    sys.exit(run(main))
