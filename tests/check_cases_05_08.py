"""Cases for the checkers of notebooks 05-08 (``helpers/check/nb05.py`` ... ``nb08.py``); tests/test_check.py runs them.

Fixtures are small and hand-made (a run table, a schedule, a cost estimate, files of known sizes) or read from the
course's data (training rows, the profiles); nothing loads a model.
"""

from __future__ import annotations

import json
import math
import statistics
import tempfile
from functools import cache
from pathlib import Path

import pandas as pd

from check_cases import Case
from helpers import config, data, evaluate, memory, train

# ---------------------------------------------------------------------------------------------------- 05_iterate


def _runs():
    table = pd.DataFrame({"eval_loss": [0.20, 0.57, 4.30, 0.55, 0.59, 4.60],
                          "field_accuracy": [0.67, 0.13, 0.0, 0.06, 0.14, 0.0]},
                         index=pd.Index(["continue-fix", "recipe", "lr-x30", "r4", "r64", "prompt-tuning"], name="run"))
    return table, ["recipe", "lr-x30", "r4", "r64", "prompt-tuning"]


def _schedule():
    # 4 warmup steps (the last at 95% of the peak), then a cosine decay over 36 steps
    return [0.0, 0.3, 0.6, 0.95] + [0.5 * (1 + math.cos(math.pi * k / 36)) for k in range(36)]


def _epochs(profiles, n_rows, accumulation=True):
    return {name: p.max_steps * p.per_device_batch_size * (p.gradient_accumulation_steps if accumulation else 1)
            / n_rows for name, p in profiles.items()}


# ---------------------------------------------------------------------------------------------------- 06_export


def _cost():
    tokens = 263_447
    return {"rows": 1392, "tokens_per_epoch": tokens, "epochs": 3, "billed_tokens": 3 * tokens,
            "price_per_million": 3.0, "price_date": "2024-07-23", "cost_usd": round(3 * tokens * 3.0 / 1e6, 4)}, 10.0


def _folders():
    root = Path(tempfile.mkdtemp(prefix="check_06_"))
    merged, adapter = root / "merged", root / "adapter"
    merged.mkdir()
    adapter.mkdir()
    (merged / "model-00001-of-00002.safetensors").write_bytes(b"\0" * 5000)  # a sharded merge
    (merged / "model-00002-of-00002.safetensors").write_bytes(b"\0" * 3000)
    (merged / "config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(b"\0" * 400)
    (adapter / "adapter_config.json").write_text("{}")
    return merged, adapter


# ---------------------------------------------------------------------------------------------------- 07_preference


@cache
def _rows():
    return data.load_split("train")[:40]


def _group():
    row = next(r for r in _rows() if json.loads(data.answer_of(r))["order_id"] is None)
    ticket, reference = data.ticket_text(row), data.answer_of(row)
    invented = json.dumps({**json.loads(reference), "order_id": "ORD-000001"})
    return [reference, reference[:-5], invented, reference], reference, ticket


def _advantages(group, reference, ticket, scale="sample"):
    rewards = [evaluate.json_reward(a, reference, ticket) for a in group]
    mean = statistics.mean(rewards)
    std = {"sample": statistics.stdev(rewards), "population": statistics.pstdev(rewards), "none": 1.0}[scale]
    return [(r - mean) / std for r in rewards]


def _pairs():
    rows = _rows()[:8]
    answers = []
    for i, row in enumerate(rows):
        reference = json.loads(data.answer_of(row))
        if i % 4 == 0:
            answers.append(json.dumps(reference))  # right: no pair
        elif i % 4 == 1:
            answers.append("{not json")  # invalid
        elif i % 4 == 2:
            other = next(p for p in ("low", "medium", "high", "urgent") if p != reference["priority"])
            answers.append(json.dumps({**reference, "priority": other}))  # wrong priority
        else:
            answers.append(json.dumps({**reference, "order_id": "ORD-999999"}))  # an id the ticket lacks
    return data.preference_pairs(rows, answers), rows


def _gaps(pairs, rows, sign=1.0):
    gaps = {}
    for pair in pairs:
        row = rows[pair["metadata"]["row"]]
        reference, ticket = data.answer_of(row), data.ticket_text(row)
        gap = (evaluate.json_reward(pair["chosen"][-1]["content"], reference, ticket)
               - evaluate.json_reward(pair["rejected"][-1]["content"], reference, ticket))
        gaps.setdefault(pair["kind"], []).append(sign * gap)
    return {kind: statistics.mean(values) for kind, values in gaps.items()}


# ---------------------------------------------------------------------------------------------------- 08_scale_out


def _keeps(cfg):
    keeps = []
    for n in range(1, 17):
        try:
            train.data_parallel_batch(cfg, n)
            keeps.append(n)
        except train.TrainingSetupError:
            pass
    return keeps


def _fewest_l4(seq_len, batch, strategy="fsdp", headroom=True):
    est = memory.estimate(memory.PRESETS["llama-3-8b"], memory.TrainSetup(method="full", seq_len=seq_len, batch=batch,
                                                                          grad_checkpointing=True))
    gib = next(g.memory_gib for g in memory.GPUS if g.name == "L4 24 GB") * (memory.HEADROOM if headroom else 1)
    return next((n for n in range(1, 65) if memory.per_device(est, n, strategy)["total"] <= gib), 64)


LENGTHS = [120, 35, 80, 64, 200, 33, 90, 41, 150, 77]  # 10 rows: batches of 4 leave a short last batch


def _sorted_waste(lengths, batch_size):
    order = sorted(lengths)
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return 1 - sum(lengths) / sum(max(b) * len(b) for b in batches)


CASES = {
    "05_1": Case(context=_runs,
                 solution=lambda table, cands: table.loc[cands, "eval_loss"].idxmin(),
                 wrong=[lambda table, cands: table["eval_loss"].idxmin(),  # ignores the candidates
                        lambda table, cands: table.loc[cands, "field_accuracy"].idxmax(),  # the other rule
                        lambda table, cands: table.loc[cands, "eval_loss"].idxmax(),
                        lambda table, cands: "no-such-run"]),
    "05_2": Case(context=lambda: (config.PROFILES, 1392),
                 solution=lambda profiles, n: _epochs(profiles, n),
                 wrong=[lambda profiles, n: _epochs(profiles, n, accumulation=False),
                        lambda profiles, n: {name: p.max_steps * p.per_device_batch_size
                                             for name, p in profiles.items()},
                        lambda profiles, n: {"cpu-tiny": _epochs(profiles, n)["cpu-tiny"]},
                        lambda profiles, n: 1.4]),
    "05_3": Case(context=lambda: (_schedule(),),
                 solution=lambda s: sum(r >= 0.9 * max(s) for r in s),
                 wrong=[lambda s: sum(r < 0.9 * max(s) for r in s),
                        lambda s: sum(r >= 0.9 * max(s) for r in s[s.index(max(s)):]),  # warmup left out
                        lambda s: sum(r >= 0.5 * max(s) for r in s),
                        lambda s: 0.9]),
    "06_1": Case(context=_cost,
                 solution=lambda cost, budget: int(budget // (cost["tokens_per_epoch"] * cost["price_per_million"]
                                                              / 1e6)),
                 wrong=[lambda cost, budget: int(budget // cost["cost_usd"]),  # the price of all epochs
                        lambda cost, budget: math.ceil(budget / (cost["tokens_per_epoch"] * cost["price_per_million"]
                                                                 / 1e6)),
                        lambda cost, budget: budget / (cost["tokens_per_epoch"] * cost["price_per_million"] / 1e6)]),
    "06_2": Case(context=_folders,
                 solution=lambda merged, adapter: sum(p.stat().st_size for p in merged.glob("*.safetensors"))
                 / (adapter / "adapter_model.safetensors").stat().st_size,
                 wrong=[lambda merged, adapter: 400 / 8000,  # upside down
                        lambda merged, adapter: 5000 / 400,  # the first shard only
                        lambda merged, adapter: 1.0]),
    "07_1": Case(context=_group,
                 solution=lambda group, ref, ticket: _advantages(group, ref, ticket),
                 wrong=[lambda group, ref, ticket: [evaluate.json_reward(a, ref, ticket) for a in group],
                        lambda group, ref, ticket: _advantages(group, ref, ticket, "none"),
                        lambda group, ref, ticket: _advantages(group, ref, ticket, "population"),
                        lambda group, ref, ticket: _advantages(group, ref, ticket)[:-1]]),
    "07_2": Case(context=_pairs,
                 solution=lambda pairs, rows: _gaps(pairs, rows),
                 wrong=[lambda pairs, rows: _gaps(pairs, rows, sign=-1.0),
                        lambda pairs, rows: statistics.mean(_gaps(pairs, rows).values()),
                        lambda pairs, rows: {kind: 1.0 for kind in _gaps(pairs, rows)},
                        lambda pairs, rows: {"invalid": 1.0}]),
    "08_1": Case(context=lambda: (1024, 1),
                 solution=lambda seq_len, batch: _fewest_l4(seq_len, batch),
                 wrong=[lambda seq_len, batch: _fewest_l4(seq_len, batch, headroom=False),
                        lambda seq_len, batch: _fewest_l4(seq_len, batch, "zero2"),
                        lambda seq_len, batch: 1,
                        lambda seq_len, batch: float(_fewest_l4(seq_len, batch))]),
    "08_2": Case(context=lambda: (config.PROFILES["t4"],),
                 solution=_keeps,
                 wrong=[lambda cfg: list(range(1, 17)),
                        lambda cfg: [1, 2, 4, 8],
                        lambda cfg: [2, 4, 8, 16],
                        lambda cfg: 16]),
    "08_3": Case(context=lambda: (LENGTHS, 4),
                 solution=_sorted_waste,
                 wrong=[lambda lengths, b: train.padding_fraction(lengths, b),  # shuffled, as 03 batches
                        lambda lengths, b: 100 * _sorted_waste(lengths, b),  # a percentage
                        lambda lengths, b: 1 - sum(lengths) / (len(lengths) * max(lengths))]),  # pad to the longest
}
