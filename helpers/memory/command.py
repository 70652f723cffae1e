"""``python -m helpers.memory --model NAME_OR_PATH --method qlora ...``: the estimate and its verdicts as a command.

It prints the estimated peak memory of one training step, component by component, and a verdict per GPU (``--json``
for a machine-readable report); ``helpers/memory/__main__.py`` runs :func:`main`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from helpers.memory.estimate import DTYPE_BYTES, LINEAR_NAMES, MAX_BATCH, MAX_SEQ_LEN, METHODS, MemoryEstimateError, OPTIMIZERS, PRESETS, TrainSetup, resolve_shape
from helpers.memory.verdicts import report

def _print_table(rep: dict[str, Any]) -> None:
    s = rep["setup"]
    params = rep["params"]
    size = f"{params / 1e9:.2f} B" if params >= 1e9 else f"{params / 1e6:.1f} M"
    print(f"{rep['model']['name']}: {size} params, {s['method']}, seq {s['seq_len']} x batch "
          f"{s['batch']}, LoRA r={s['lora_r']}, {s['optimizer']}, grad checkpointing {s['grad_checkpointing']}")
    print(f"trainable parameters: {rep['trainable_params']:,}")
    for name, value in rep["components_gib"].items():
        print(f"  {name:<22}{value:>10.3f} GiB")
    for note in rep["notes"]:
        print(f"  note: {note}")
    for gpu, v in rep["gpus"].items():
        line = f"{gpu:<12} {v['verdict']}"
        if v["changes"]:
            line += f" (~{v['changed_gib']:.1f} GiB after): " + "; ".join(v["changes"])
        elif v["verdict"] == "does not fit":
            line += f" (even the smallest setup tried needs ~{v['smallest_gib']:.1f} GiB)"
        print(line)


def _between(low: int, high: int) -> Any:
    """An argparse type: a whole number in [low, high]."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {low}..{high}")
        return value

    return parse


def main(argv: list[str] | None = None) -> int:
    """Command line: estimate one setup and print the components and a verdict per GPU."""
    parser = argparse.ArgumentParser(prog="python -m helpers.memory", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help=f"preset ({', '.join(PRESETS)}), model folder, config.json "
                                                       "or cached hub id")
    parser.add_argument("--method", choices=METHODS, default="qlora")
    parser.add_argument("--seq-len", type=_between(1, MAX_SEQ_LEN), default=512)
    parser.add_argument("--batch", type=_between(1, MAX_BATCH), default=4)
    parser.add_argument("--lora-r", type=_between(1, 4096), default=16)
    parser.add_argument("--lora-targets", default=",".join(LINEAR_NAMES), help="comma-separated linear names")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="adamw")
    parser.add_argument("--dtype", choices=tuple(DTYPE_BYTES), default="bfloat16")
    parser.add_argument("--grad-checkpointing", action="store_true")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    targets = tuple(t.strip() for t in args.lora_targets.split(",") if t.strip())
    if args.method != "full" and not targets:
        parser.error(f"--lora-targets {args.lora_targets!r} names no linear layer: use names from "
                     f"{','.join(LINEAR_NAMES)}")
    try:
        shape = resolve_shape(args.model)
        setup = TrainSetup(method=args.method, seq_len=args.seq_len, batch=args.batch, lora_r=args.lora_r,
                           lora_targets=tuple(t.strip() for t in args.lora_targets.split(",") if t.strip()),
                           optimizer=args.optimizer, grad_checkpointing=args.grad_checkpointing, dtype=args.dtype)
    except MemoryEstimateError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rep = report(shape, setup)
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        _print_table(rep)
        for text in shape.assumed:
            print(f"assumed: {text}")
    return 0
