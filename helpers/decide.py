"""Prompting, RAG or fine-tuning? The decision framework as data, and the prompting baselines. Taught in 01_decide.

The guides' questions (specialised knowledge? static? consistent format? can prompting do it? how many examples?
latency or cost pressure? current data?) form a tree of :class:`Node` and :class:`Leaf` objects in :data:`TREE`;
:func:`recommend` walks it and returns the path with a reason for every step. The baselines (zero-shot, few-shot,
JSON Schema in the prompt) are measured with the same ``helpers.evaluate.generate`` and ``helpers.evaluate.score``
the evaluation notebook uses, so their numbers sit in one table with the fine-tuned model's.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from helpers import config, evaluate, memory
from helpers.config import DATA_DIR, REPO_ROOT
from helpers.data.generate import CATEGORIES, SYSTEM_PROMPT, TICKET_SCHEMA
from helpers.data.rows import answer_of, ticket_text
from helpers.plots import _pyplot

if TYPE_CHECKING:  # heavy imports stay out of module import time
    import pandas as pd
    from matplotlib.figure import Figure

    from helpers.config import Profile

APPROACHES = ("prompting", "rag", "fine-tuning", "rag+fine-tuning")
SIZE_LABELS = ("<100", "100-999", ">=1000")  # the guides' thresholds: ~100 examples for style, ~1,000 for more


# ------------------------------------------------------------------------------------------------ the tree


@dataclass
class Answers:
    """What you know about your task; every field is one question of the framework."""

    specialised_knowledge: bool = False  # needs facts the base model does not have (your products, your policies)
    knowledge_static: bool = True  # those facts change rarely (not weekly)
    needs_current_data: bool = False  # answers depend on live data (order status, stock, today's prices)
    consistent_format: bool = False  # every answer must follow one style or format (a JSON schema, a tone)
    prompting_suffices: bool = True  # instructions / examples / a schema in the prompt reach your quality bar
    n_examples: int = 0  # labelled input -> output examples you have (or can make)
    latency_cost_pressure: bool = False  # high volume or tight latency: long prompts cost real money or time


@dataclass(frozen=True)
class Node:
    """A question of the framework: which answer field it reads and where each answer leads."""

    id: str
    text: str
    field: str
    branches: dict[str, str]  # answer label ("yes", "no", or a SIZE_LABELS bucket) -> next node or leaf id
    why: dict[str, str]  # answer label -> what that answer implies (becomes a reason)


@dataclass(frozen=True)
class Leaf:
    """An end of the tree: the approach to take and the reason."""

    id: str
    approach: str
    reason: str


@dataclass(frozen=True)
class Recommendation:
    """The path through the tree, the approach at its end and one reason per step."""

    approach: str
    leaf: str
    path: tuple[str, ...]
    reasons: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.approach.upper()}\n" + "\n".join(f"  - {r}" for r in self.reasons)


def _yes_no(id: str, text: str, field: str, yes: str, no: str, why_yes: str, why_no: str) -> Node:
    return Node(id, text, field, {"yes": yes, "no": no}, {"yes": why_yes, "no": why_no})


def _sizes(id: str, text: str, small: str, medium: str, large: str, whys: tuple[str, str, str]) -> Node:
    return Node(id, text, "n_examples", dict(zip(SIZE_LABELS, (small, medium, large))), dict(zip(SIZE_LABELS, whys)))


NODES: tuple[Node, ...] = (
    _yes_no("knowledge", "Does the task need specialised knowledge the base model does not have?",
            "specialised_knowledge", "static", "format",
            "the model must be given facts it does not know", "the base model already knows enough"),
    _yes_no("static", "Is that knowledge static (it changes rarely, not weekly)?", "knowledge_static",
            "current", "format_dynamic",
            "static facts can be indexed once and rarely need re-indexing",
            "facts that change must be looked up at query time"),
    _yes_no("current", "Do answers also need current data at query time (order status, stock, today's prices)?",
            "needs_current_data", "data_current", "data_static",
            "live data can only come from retrieval", "nothing has to be looked up at query time"),
    _sizes("data_current", "How many labelled examples do you have?", "rag_live", "rag_live", "rag_ft_live",
           ("too few examples to fine-tune; retrieval brings the facts and the live data",
            "retrieval brings the facts; a fine-tune on top (how answers are written) needs more examples",
            "enough examples to fine-tune how answers are written (format, style, use of the passages)")),
    _sizes("data_static", "How many labelled examples do you have?", "rag_static", "rag_static", "rag_ft_static",
           ("too few examples to fine-tune; retrieval brings the facts",
            "retrieval brings the facts; a fine-tune on top (how answers are written) needs more examples",
            "enough examples to fine-tune how answers are written (format, style, use of the passages)")),
    _yes_no("format_dynamic", "Must every answer follow a consistent style or format?", "consistent_format",
            "prompt_dynamic", "rag_fresh",
            "the format has to be enforced as well", "free-form answers are fine"),
    _yes_no("prompt_dynamic", "Can prompting alone (instructions, a schema, a few examples) achieve that format?",
            "prompting_suffices", "rag_prompted", "data_dynamic",
            "the retrieval prompt can carry the format instructions", "prompting misses the format"),
    _sizes("data_dynamic", "How many labelled examples do you have?", "rag_collect", "rag_ft_format", "rag_ft_format",
           ("too few examples to fine-tune the format", "enough examples to fine-tune a format (LoRA)",
            "plenty of examples to fine-tune the format")),
    _yes_no("format", "Must every answer follow a consistent style or format?", "consistent_format",
            "prompt_ok", "prompt_general",
            "the format has to be enforced", "free-form answers are fine"),
    _yes_no("prompt_ok", "Can prompting alone (instructions, a schema, a few examples) achieve that format?",
            "prompting_suffices", "latency", "data_format",
            "a prompt already reaches the quality bar", "prompting misses the quality bar"),
    _yes_no("latency", "Is there latency or cost pressure (high volume, long few-shot prompts)?",
            "latency_cost_pressure", "data_latency", "prompt_format",
            "every prompt token is paid for on every request", "prompt length does not matter"),
    _sizes("data_latency", "How many labelled examples do you have?", "prompt_collect", "prompt_collect", "ft_distil",
           ("too few examples to replace the prompt", "probably too few to match a good prompt",
            "enough examples to move the prompt into the weights")),
    _sizes("data_format", "How many labelled examples do you have?", "prompt_fewshot", "ft_lora", "ft_format",
           ("too few examples to fine-tune", "enough for a LoRA adapter that learns the format",
            "plenty of examples for a robust fine-tune")),
)

LEAVES: tuple[Leaf, ...] = (
    Leaf("rag_live", "rag", "Retrieve the knowledge and the live data into the prompt; collect examples until "
         "you have ~1,000, then consider a fine-tune for how answers are written (not for the facts)."),
    Leaf("rag_ft_live", "rag+fine-tuning", "Retrieve the knowledge and the live data at query time, and fine-tune "
         "on your examples for the behaviour (format, style, answering from the passages): fine-tuning teaches "
         "behaviour, it does not reliably add facts."),
    Leaf("rag_static", "rag", "Put the knowledge in the prompt with retrieval: fine-tuning teaches behaviour "
         "(format, style, the task), not facts, and a fine-tune on top needs more examples."),
    Leaf("rag_ft_static", "rag+fine-tuning", "Retrieve the facts even though they are static (fine-tuning "
         "teaches behaviour, it does not reliably add facts), and fine-tune on your examples so the model answers "
         "from the passages in your format with a shorter prompt."),
    Leaf("rag_fresh", "rag", "Changing knowledge, free-form answers: retrieval keeps answers fresh without "
         "retraining."),
    Leaf("rag_prompted", "rag", "Retrieval for freshness, with the format asked for in the prompt."),
    Leaf("rag_collect", "rag", "Retrieval for freshness; collect ~100+ examples before fine-tuning the format."),
    Leaf("rag_ft_format", "rag+fine-tuning", "Retrieval for freshness plus a fine-tune (LoRA) that makes the "
         "format reliable."),
    Leaf("prompt_general", "prompting", "A general task with free-form answers: a clear prompt is enough."),
    Leaf("prompt_format", "prompting", "Prompting reaches the bar and its cost does not matter: keep prompting."),
    Leaf("prompt_collect", "prompting", "Keep prompting, and log requests and answers to build a fine-tuning "
         "dataset."),
    Leaf("ft_distil", "fine-tuning", "Fine-tune so a short prompt (or a smaller model) does what the long prompt "
         "did: fewer tokens per request, lower latency."),
    Leaf("prompt_fewshot", "prompting", "Prompting with examples is the best available; collect ~100+ examples "
         "before fine-tuning."),
    Leaf("ft_lora", "fine-tuning", "Fine-tune a LoRA adapter on the examples you have; watch held-out quality "
         "closely at this size."),
    Leaf("ft_format", "fine-tuning", "Prompting misses the format and there is plenty of data: fine-tune."),
)

TREE: dict[str, Node | Leaf] = {n.id: n for n in (*NODES, *LEAVES)}
ROOT = "knowledge"


def answer_label(node: Node, answers: Answers) -> str:
    """The branch label an answer selects at ``node``: ``yes``/``no``, or a size bucket for ``n_examples``."""
    value = getattr(answers, node.field)
    if node.field == "n_examples":
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"n_examples={value!r}: give a whole number of examples >= 0")
        return SIZE_LABELS[0] if value < 100 else SIZE_LABELS[1] if value < 1000 else SIZE_LABELS[2]
    return "yes" if value else "no"


def recommend(answers: Answers | dict[str, Any]) -> Recommendation:
    """Walk the tree from :data:`ROOT` and return the approach with a reason per step. Taught in 01_decide."""
    if isinstance(answers, dict):
        unknown = set(answers) - {f for f in Answers.__dataclass_fields__}
        if unknown:
            raise ValueError(f"unknown answer field(s) {sorted(unknown)}: use {list(Answers.__dataclass_fields__)}")
        answers = Answers(**answers)
    node_id, path, reasons = ROOT, [], []
    while isinstance(TREE[node_id], Node):
        node = TREE[node_id]
        label = answer_label(node, answers)
        path.append(node.id)
        reasons.append(f"{node.text} {label} -> {node.why[label]}")
        node_id = node.branches[label]
    leaf = TREE[node_id]
    assert isinstance(leaf, Leaf)
    return Recommendation(leaf.approach, leaf.id, tuple(path + [leaf.id]), tuple(reasons + [leaf.reason]))


def tree_problems() -> list[str]:
    """Structural checks: every branch points at a known id, every leaf is reachable, approaches are known."""
    problems = [f"{n.id}: branch {label!r} -> unknown {target!r}" for n in NODES
                for label, target in n.branches.items() if target not in TREE]
    problems += [f"{leaf.id}: unknown approach {leaf.approach!r}" for leaf in LEAVES if leaf.approach not in APPROACHES]
    reached = {t for n in NODES for t in n.branches.values()}
    problems += [f"{i}: unreachable" for i in TREE if i != ROOT and i not in reached]
    return problems


APPROACH_COLORS = {"prompting": "C0", "rag": "C2", "fine-tuning": "C1", "rag+fine-tuning": "C4"}


def tree_layout() -> dict[str, tuple[float, float]]:
    """(column, row) of every node and leaf of :data:`TREE`: questions by depth from :data:`ROOT`, leaves in one
    last column in the order a walk meets them, each question centred on what it leads to."""
    depth: dict[str, int] = {}
    rows: dict[str, float] = {}

    def place(node_id: str, level: int) -> float:
        item = TREE[node_id]
        if node_id in rows:
            return rows[node_id]
        if isinstance(item, Leaf):
            rows[node_id] = float(sum(isinstance(TREE[i], Leaf) for i in rows))
            return rows[node_id]
        depth[node_id] = level
        children = list(dict.fromkeys(item.branches.values()))  # two answers may lead to the same place
        rows[node_id] = sum(place(c, level + 1) for c in children) / len(children)
        return rows[node_id]

    place(ROOT, 0)
    last = max(depth.values()) + 1.6  # room for the answer labels in front of the leaves
    return {i: (float(depth.get(i, last)), rows[i]) for i in rows}


def plot_tree() -> "Figure":
    """The decision tree drawn from :data:`TREE`: one box per question and per leaf, answers on the arrows.

    Taught in 01_decide. Leaves are coloured by approach.
    """
    import textwrap

    from matplotlib.patches import FancyBboxPatch, Patch

    plt = _pyplot()
    where = tree_layout()
    n_rows = max(y for _, y in where.values()) + 1
    fig, ax = plt.subplots(figsize=(16, 0.55 * n_rows + 1.2))
    w, h = 0.72, 0.8  # box size in (column, row) units
    for node in NODES:  # arrows first, under the boxes
        x0, y0 = where[node.id]
        targets: dict[str, list[str]] = {}
        for label, target in node.branches.items():
            targets.setdefault(target, []).append(label)
        for target, labels in targets.items():
            x1, y1 = where[target]
            ax.annotate("", (x1 - w / 2, y1), (x0 + w / 2, y0), arrowprops={"arrowstyle": "->", "color": "0.5"})
            at = 0.3 if x1 - x0 > 1.5 else 0.5  # a third of the way along long arrows: fans stay apart
            ax.text(x0 + w / 2 + at * (x1 - x0 - w), y0 + at * (y1 - y0), " / ".join(labels), fontsize=7,
                    ha="center", va="center", color="0.2", bbox={"fc": "white", "ec": "none", "pad": 0.5})
    for item_id, (x, y) in where.items():
        item = TREE[item_id]
        if isinstance(item, Node):
            text, color, size = textwrap.fill(item.text, 32), "white", 7
        else:
            text, color, size = f"{item.approach.upper()}\n({item.id})", APPROACH_COLORS[item.approach], 7.5
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0,rounding_size=0.08",
                                    fc=color, ec="0.3", alpha=0.9 if isinstance(item, Leaf) else 1, gid=item_id))
        ax.text(x, y, text, ha="center", va="center", fontsize=size)
    ax.set_xlim(-0.5, max(x for x, _ in where.values()) + 0.5)
    ax.set_ylim(n_rows - 0.4, -0.6)  # the first leaf on top
    ax.axis("off")
    ax.legend(handles=[Patch(fc=c, label=a) for a, c in APPROACH_COLORS.items()], loc="lower left", fontsize=8,
              title="leaf: approach", title_fontsize=8)
    ax.set_title(f"Prompting, RAG or fine-tuning: {len(NODES)} questions, {len(LEAVES)} answers (start at the left)")
    fig.tight_layout()
    plt.close(fig)
    return fig


# ------------------------------------------------------------------------------------------------ comparison table

# General expectations from the guides, not measurements: the course's measured numbers are in the decision table
# (01_decide section 4.1, completed by 04_evaluation section 4.13).
COMPARISON: dict[str, dict[str, str]] = {
    "prompting": {"update_cost": "edit a prompt (minutes)", "knowledge_freshness": "only what the base model knows",
                  "latency": "grows with prompt length (few-shot, schema)",
                  "cost_per_query": "pays for every prompt token",
                  "consistency": "varies; format drifts on hard inputs"},
    "rag": {"update_cost": "re-index documents (minutes)", "knowledge_freshness": "as fresh as the index",
            "latency": "+ retrieval + long context", "cost_per_query": "pays for retrieved passages in every prompt",
            "consistency": "depends on what is retrieved"},
    "fine-tuning": {"update_cost": "collect data + retrain (hours)", "knowledge_freshness": "frozen at training time",
                    "latency": "below few-shot / schema prompts of the same model (shorter prompt); about that of a "
                    "short prompt on the same model; lower than that only if a smaller model can do the task",
                    "cost_per_query": "saves the few-shot / schema prompt tokens of the same model; training is "
                    "paid up front", "consistency": "high once trained: the format is in the weights"},
    "rag+fine-tuning": {"update_cost": "re-index often, retrain rarely", "knowledge_freshness": "as fresh as the index",
                        "latency": "retrieval + short instructions",
                        "cost_per_query": "passages, but no long instructions",
                        "consistency": "high: format from the weights, facts from retrieval"},
}


def comparison_table() -> "pd.DataFrame":
    """The approaches side by side: update cost, freshness, latency, cost, consistency. Taught in 01_decide.

    General expectations from the guides, not measurements: :func:`decision_table` holds the measured ones.
    """
    import pandas as pd

    return pd.DataFrame.from_dict(COMPARISON, orient="index").rename_axis("approach")


def decision_form() -> Any:
    """An ipywidgets form over :class:`Answers` that shows :func:`recommend` live. Taught in 01_decide."""
    import ipywidgets as widgets

    defaults = Answers()
    controls: dict[str, Any] = {}
    for name, value in asdict(defaults).items():
        label = name.replace("_", " ")
        if isinstance(value, bool):
            controls[name] = widgets.Checkbox(value=value, description=label, indent=False)
        else:
            controls[name] = widgets.BoundedIntText(value=value, min=0, max=10**7, description=label)
    out = widgets.HTML()

    def update(_change: Any = None) -> None:
        rec = recommend({k: c.value for k, c in controls.items()})
        items = "".join(f"<li>{r}</li>" for r in rec.reasons)
        out.value = f"<b>{rec.approach}</b><ul>{items}</ul>"

    for control in controls.values():
        control.observe(update, names="value")
    update()
    return widgets.VBox([*controls.values(), out])


# ------------------------------------------------------------------------------------------------ prompt baselines

JSON_ONLY = "Reply with the JSON object only, no other text."
INSTRUCTION = f"{SYSTEM_PROMPT} {JSON_ONLY}"  # the system turn of every prompting baseline


def zero_shot_messages(ticket: str) -> list[dict[str, str]]:
    """System instruction + the ticket, no examples. Taught in 01_decide."""
    return [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": ticket}]


def schema_messages(ticket: str, schema: dict[str, Any] = TICKET_SCHEMA) -> list[dict[str, str]]:
    """The instruction plus the JSON Schema the answer must validate against. Taught in 01_decide."""
    text = f"{INSTRUCTION}\nThe answer must validate against this JSON Schema:\n{json.dumps(schema)}"
    return [{"role": "system", "content": text}, {"role": "user", "content": ticket}]


def pick_examples(train_rows: Sequence[dict[str, Any]], k: int, seed: int = 0) -> list[dict[str, Any]]:
    """``k`` training rows, categories taken in turn so the examples cover the taxonomy. Taught in 01_decide."""
    if k < 0 or k > len(train_rows):
        raise ValueError(f"k={k} examples requested from {len(train_rows)} training rows: use 0 <= k <= rows")
    rng = random.Random(seed)
    by_cat: dict[str, list[dict[str, Any]]] = {c: [] for c in CATEGORIES}
    for i, row in enumerate(train_rows):
        try:
            category = json.loads(answer_of(row)).get("category")
        except (KeyError, IndexError, TypeError, json.JSONDecodeError, AttributeError):
            raise ValueError(f"training row {i} has no JSON assistant answer: pass chat rows like "
                             "data/tickets/train.jsonl") from None
        by_cat.setdefault(category, []).append(row)
    pools = [rng.sample(rows, len(rows)) for rows in by_cat.values() if rows]
    rng.shuffle(pools)
    picked: list[dict[str, Any]] = []
    while len(picked) < k:
        for pool in pools:
            if pool and len(picked) < k:
                picked.append(pool.pop())
    return picked


def few_shot_messages(ticket: str, examples: Sequence[dict[str, Any]], system_prompt: str = INSTRUCTION
                      ) -> list[dict[str, str]]:
    """Instruction, then each example as a user/assistant turn pair, then the ticket. Taught in 01_decide."""
    messages = [{"role": "system", "content": system_prompt}]
    for row in examples:
        messages += [{"role": "user", "content": ticket_text(row)}, {"role": "assistant", "content": answer_of(row)}]
    return messages + [{"role": "user", "content": ticket}]


# ------------------------------------------------------------------------------------------------ measuring


def prompt_token_counts(tokenizer: Any, conversations: Sequence[list[dict[str, str]]]) -> list[int]:
    """Tokens each chat prompt costs once the chat template is applied (generation prompt included)."""
    prompts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
    return [len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]]


def cost_per_1k(prompt_tokens: float, completion_tokens: float, price_in_per_m: float, price_out_per_m: float) -> float:
    """Dollars per 1,000 requests for mean tokens per request and prices per million tokens. Taught in 01_decide."""
    return 1000 * (prompt_tokens * price_in_per_m + completion_tokens * price_out_per_m) / 1e6


@dataclass
class BaselineRun:
    """One approach measured: its decision-table row and the raw predictions (for error analysis)."""

    row: dict[str, Any]
    predictions: list[str] = field(repr=False)


def run_baseline(
    approach: str,
    model: Any,
    tokenizer: Any,
    conversations: Sequence[list[dict[str, str]]],
    references: Sequence[str],
    max_new_tokens: int,
    batch_size: int | None = None,
    price_in_per_m: float = 0.5,
    price_out_per_m: float = 1.5,
    schema: dict[str, Any] | None = TICKET_SCHEMA,
    progress: bool = False,
) -> BaselineRun:
    """Generate with ``helpers.evaluate.generate``, score with ``helpers.evaluate.score``, time it, price it.

    Latency is wall time / requests in batched generation (what a batch job sees). Taught in 01_decide.
    """
    if len(conversations) != len(references) or not references:
        raise ValueError(f"{len(conversations)} prompts for {len(references)} references: pass one per example")
    started = time.perf_counter()
    predictions = evaluate.generate(model, tokenizer, list(conversations), max_new_tokens, batch_size=batch_size,
                                    progress=progress)
    latency = (time.perf_counter() - started) / len(conversations)
    metrics = evaluate.score(predictions, list(references), schema=schema)
    prompt = sum(prompt_token_counts(tokenizer, conversations)) / len(conversations)
    completion = sum(completion_token_counts(tokenizer, predictions)) / len(predictions)
    row = decision_row(approach, metrics, prompt, completion, latency, price_in_per_m, price_out_per_m)
    return BaselineRun(row=row, predictions=predictions)


def completion_token_counts(tokenizer: Any, predictions: Sequence[str]) -> list[int]:
    """Tokens each answer costs: its text plus the end-of-turn token that ends it. Taught in 04_evaluation."""
    return [len(ids) + 1 for ids in tokenizer(list(predictions), add_special_tokens=False)["input_ids"]]


def decision_row(approach: str, metrics: dict[str, Any], prompt_tokens: float, completion_tokens: float,
                 latency_s: float, price_in_per_m: float = 0.5, price_out_per_m: float = 1.5) -> dict[str, Any]:
    """One approach's row of the decision table: quality, mean tokens, latency, price, then every other metric.

    ``metrics`` is a :func:`helpers.evaluate.score` dictionary; tokens are means per request. 01_decide's
    baselines and 04_evaluation's fine-tuned model build their rows here. Taught in 04_evaluation.
    """
    return {"approach": approach, "json_valid": metrics["json_valid"], "schema_valid": metrics["schema_valid"],
            "field_accuracy": metrics["field_accuracy"], "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens, "latency_s": latency_s,
            "cost_per_1k": cost_per_1k(prompt_tokens, completion_tokens, price_in_per_m, price_out_per_m),
            **{k: v for k, v in metrics.items() if k not in ("json_valid", "schema_valid", "field_accuracy")}}


DECISION_COLUMNS = ("approach", "json_valid", "schema_valid", "field_accuracy", "prompt_tokens", "latency_s",
                    "cost_per_1k")


def decision_table(rows: Sequence[dict[str, Any]]) -> "pd.DataFrame":
    """One row per approach, decision columns first (notebook 04 appends its row). Taught in 01_decide."""
    import pandas as pd

    df = pd.DataFrame(list(rows))
    missing = [c for c in DECISION_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"decision-table rows lack {missing}: build them with run_baseline()")
    return df[list(DECISION_COLUMNS) + [c for c in df.columns if c not in DECISION_COLUMNS]]


def plot_decision_table(df: "pd.DataFrame", quality: str = "field_accuracy") -> "Figure":
    """Quality against prompt tokens (left) and latency (right), one point per approach. Taught in 01_decide."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, x, label in ((axes[0], "prompt_tokens", "prompt tokens per request"),
                         (axes[1], "latency_s", "latency per request (s)")):
        ax.scatter(df[x], df[quality])
        for i, (_, r) in enumerate(df.iterrows()):  # staggered labels: close points stay readable
            ax.annotate(r["approach"], (r[x], r[quality]), textcoords="offset points", xytext=(4, 4 + 11 * (i % 4)),
                        fontsize=8)
        ax.set_xlabel(label)
        ax.set_ylim(-0.05, 1.05)  # quality is a share: the full scale keeps small differences honest
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(quality)
    fig.suptitle(f"{quality} vs what it costs")
    fig.tight_layout()
    return fig


def save_decision_table(df: "pd.DataFrame", cfg: "Profile") -> dict[str, Any]:
    """Write ``decision_table.csv`` and ``decision_table.png`` to ``artifacts/<profile>/``. Taught in 01_decide."""
    import matplotlib.pyplot as plt

    folder = config.artifacts_dir(cfg)
    csv_path, png_path = folder / "decision_table.csv", folder / "decision_table.png"
    df.to_csv(csv_path, index=False)
    fig = plot_decision_table(df)
    fig.savefig(png_path, dpi=120)
    plt.close(fig)
    return {"csv": csv_path, "png": png_path}


# ------------------------------------------------------------------------------------------------ choosing a base


CANDIDATES_CSV = DATA_DIR / "model-configs" / "candidates.csv"
CANDIDATE_COLUMNS = ("model_id", "kind", "licence", "params_card", "context_card", "profiles", "shape", "source",
                     "evidence")
KINDS = ("base", "instruct")
CANDIDATE_GPUS = ("T4 16 GB", "L4 24 GB", "A100 40 GB")  # the GPUs of the course's profiles (names in memory.GPUS)


def read_candidates(path: str | Path = CANDIDATES_CSV) -> list[dict[str, str]]:
    """Candidate base models with their cited facts (kind, licence, context, source) from a CSV. Taught in 01_decide."""
    import csv

    path = Path(path)
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in CANDIDATE_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}: the header must hold "
                             f"{','.join(CANDIDATE_COLUMNS)}")
        rows = list(reader)
    for line, row in enumerate(rows, start=2):
        if row["kind"] not in KINDS:
            raise ValueError(f"{path}:{line}: kind {row['kind']!r} is not one of {', '.join(KINDS)}: say whether "
                             f"{row['model_id']} is a base (pretrained only) or an instruct (chat-tuned) model")
        if not row["shape"] or not row["source"]:
            raise ValueError(f"{path}:{line}: {row['model_id']} needs a shape (a memory preset or a config folder "
                             f"under data/) and a source (the model card's URL)")
    return rows


def card_params(text: str) -> float | None:
    """``"1.54B"`` -> 1.54e9, ``"4.00M"`` -> 4.0e6 (the leading number of a card's parameter count); else None."""
    import re

    match = re.match(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([MB])\b", text or "")
    return float(match.group(1)) * (1e9 if match.group(2) == "B" else 1e6) if match else None


def candidate_table(candidates: Sequence[dict[str, str]], setup: Any,
                    gpus: Sequence[str] = CANDIDATE_GPUS) -> "pd.DataFrame":
    """Per candidate: cited facts, parameters counted from its config, the QLoRA estimate and a verdict per GPU.

    Taught in 01_decide. ``setup`` is a ``helpers.memory.TrainSetup``; the verdicts are ``helpers.memory.verdict``'s
    (``fits``, ``fits with these changes``, ``does not fit``) for the GPUs named in ``gpus``.
    """
    import pandas as pd

    sizes = {gpu.name: gpu.memory_gib for gpu in memory.GPUS}
    unknown = [g for g in gpus if g not in sizes]
    if unknown:
        raise ValueError(f"unknown GPU(s) {unknown}: use names from helpers.memory.GPUS ({', '.join(sizes)})")
    rows = []
    for c in candidates:
        where = c["shape"]
        shape = memory.resolve_shape(REPO_ROOT / where if where.startswith("data/") else where)
        params, card = shape.total_params(), card_params(c["params_card"])
        row = {"model": c["model_id"], "kind": c["kind"], "licence": c["licence"], "context (card)": c["context_card"],
               "profiles": c["profiles"], "params_b (config)": round(params / 1e9, 3),
               "params_b (card)": None if card is None else round(card / 1e9, 3),
               "qlora GiB": round(memory.estimate(shape, setup).total_gib, 2)}
        for gpu in gpus:
            row[gpu] = memory.verdict(shape, setup, sizes[gpu])["verdict"]
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")
