"""Production monitoring: is this week's traffic still the traffic the model was tested on? Taught in 06_export.

Labels arrive late or never in production, so a monitor watches what it can see at once: the tickets (input drift)
and the model's answers (output health). Each statistic of a week is compared with a *reference window* — held-out
tickets from the training distribution and the shipped model's answers to them — and flagged when it is both

- **unusual**: beyond the 99.5th (or 0.5th) percentile of the same statistic on weeks of the same size resampled
  from the reference window, each compared with the window resampled at its own size (small weeks are noisy, and so
  is a small window; a fixed cut-off would fire every week); for a share of tickets
  (:data:`RATES`), of a binomial count around the window's rate with half an event added, so that a window without a
  single event does not turn one event into an alarm, and
- **material**: at least a stated change (:data:`MATERIAL`), so a tiny but real shift does not page anyone.

Distributions are compared with the population stability index, ``PSI = Σ (q - p)·ln(q / p)`` over bins (p: the
reference's share, q: this week's, both counted with half a ticket added to every bin so that an empty bin
stays finite). The usual reading: < 0.1 stable, 0.1–0.25 a
moderate shift, > 0.25 a large one.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence
from unittest import mock

from helpers.data import generate
from helpers.data.clean import normalise_whitespace, scrub_pii
from helpers.evaluate.common import INVALID, EvaluationError
from helpers.evaluate.grounding import is_grounded
from helpers.evaluate.metrics import parse_json, unicode_tokens

if TYPE_CHECKING:
    import pandas as pd

# statistic -> (side, direction that is bad, what it measures)
STATISTICS: dict[str, tuple[str, str, str]] = {
    "length_psi": ("input", "up", "PSI of ticket length (words) over the reference's quintile bins"),
    "oov_rate": ("input", "up", "share of ticket words (numbers aside) never seen in the training tickets"),
    "json_valid": ("output", "down", "share of answers that parse as a JSON object"),
    "ungrounded": ("output", "up", "share of answers with a product or order id the ticket does not contain"),
    "unknown_product": ("output", "up", "share of answers naming a product outside the training catalogue"),
    "category_psi": ("output", "up", "PSI of the answered category (invalid answers as their own class)"),
}
MATERIAL = {"length_psi": 0.1, "oov_rate": 0.02, "json_valid": 0.05, "ungrounded": 0.1, "unknown_product": 0.1,
            "category_psi": 0.1}  # smallest change worth acting on, in the statistic's units
RATES = ("json_valid", "ungrounded", "unknown_product")  # shares of tickets: their null is a binomial count
PSI_FLOOR = 1e-3  # share given to an empty bin so ln(q / p) stays finite


class MonitorError(EvaluationError):
    """Bad input to the monitor: says what and how to fix it."""


def psi(reference: Sequence[float], current: Sequence[float], floor: float = PSI_FLOOR) -> float:
    """Population stability index between two distributions given as shares per bin (used by :class:`Monitor`)."""
    if len(reference) != len(current) or not reference:
        raise MonitorError(f"{len(reference)} reference bins vs {len(current)} current bins: pass shares per bin, "
                           f"the same bins on both sides")
    total = 0.0
    for p, q in zip(reference, current):
        p, q = max(p, floor), max(q, floor)
        total += (q - p) * math.log(q / p)
    return total


def _shares(values: Sequence[Any], bins: Sequence[Any], prior: float = 0.5) -> list[float]:
    # add-half smoothing: a bin a small week happens to miss is not treated as impossible
    return [(sum(v == b for v in values) + prior) / (len(values) + prior * len(bins)) for b in bins]


def _length_bin(words: int, edges: Sequence[float]) -> int:
    return sum(words > edge for edge in edges)


@dataclass
class Monitor:
    """A reference window and the thresholds a week is checked against (built by :func:`fit_monitor`)."""

    vocabulary: set[str]
    catalogue: set[str]
    length_edges: list[float]
    categories: list[str]
    reference: list[dict[str, Any]]  # per-ticket features of the reference window
    thresholds: dict[str, float] = field(default_factory=dict)
    reference_values: dict[str, float] = field(default_factory=dict)
    week_size: int = 0

    def features(self, tickets: Sequence[str], outputs: Sequence[str]) -> list[dict[str, Any]]:
        """Per ticket: length bin, OOV share, and its answer's validity, grounding, product and category."""
        if isinstance(tickets, str) or len(tickets) != len(outputs):
            raise MonitorError(f"{len(tickets)} tickets but {len(outputs)} outputs: pass the ticket texts and the "
                               f"model's raw answers, one per ticket, in the same order")
        rows = []
        for ticket, output in zip(tickets, outputs):
            words = [w for w in unicode_tokens(ticket) if not any(ch.isdigit() for ch in w)]  # ids are always new
            answer = parse_json(output)
            product = (answer or {}).get("product")
            values = [(k, (answer or {}).get(k)) for k in ("product", "order_id")]
            rows.append({
                "length_bin": _length_bin(len(words), self.length_edges),
                "oov": sum(w not in self.vocabulary for w in words) / max(len(words), 1),
                "json_valid": float(answer is not None),
                "ungrounded": float(any(v is not None and not is_grounded(k, v, ticket) for k, v in values)),
                "unknown_product": float(product is not None and product not in self.catalogue),
                "category": answer.get("category") if answer and answer.get("category") in self.categories else INVALID,
            })
        return rows

    def statistics(self, rows: Sequence[dict[str, Any]],
                   reference: Sequence[dict[str, Any]] | None = None) -> dict[str, float]:
        """The statistics of :data:`STATISTICS` for one week's feature rows (PSIs against ``reference``, by default
        the monitor's reference window)."""
        bins = list(range(len(self.length_edges) + 1))
        classes = [*self.categories, INVALID]
        n = len(rows) or 1
        reference = self.reference if reference is None else reference
        ref_len = _shares([r["length_bin"] for r in reference], bins)
        ref_cat = _shares([r["category"] for r in reference], classes)
        return {
            "length_psi": psi(ref_len, _shares([r["length_bin"] for r in rows], bins)),
            "oov_rate": sum(r["oov"] for r in rows) / n,
            "json_valid": sum(r["json_valid"] for r in rows) / n,
            "ungrounded": sum(r["ungrounded"] for r in rows) / n,
            "unknown_product": sum(r["unknown_product"] for r in rows) / n,
            "category_psi": psi(ref_cat, _shares([r["category"] for r in rows], classes)),
        }

    def check(self, tickets: Sequence[str], outputs: Sequence[str]) -> "pd.DataFrame":
        """One row per statistic: side, reference, this week, threshold, flagged. Taught in 06_export."""
        import pandas as pd

        week = self.statistics(self.features(tickets, outputs))
        rows = []
        for name, (side, bad, meaning) in STATISTICS.items():
            value, threshold, ref = week[name], self.thresholds[name], self.reference_values[name]
            unusual = value < threshold if bad == "down" else value > threshold
            material = abs(value - ref) >= MATERIAL[name]
            rows.append({"statistic": name, "side": side, "reference": ref, "this week": value,
                         "threshold": threshold, "flagged": bool(unusual and material), "meaning": meaning})
        return pd.DataFrame(rows).set_index("statistic")


def fit_monitor(train_tickets: Sequence[str], reference_tickets: Sequence[str], reference_outputs: Sequence[str],
                week_size: int, catalogue: Sequence[str], categories: Sequence[str], n_weeks: int = 400,
                quantile: float = 0.995, seed: int = 0) -> Monitor:
    """A :class:`Monitor` whose thresholds come from resampled reference weeks of week_size. Taught in 06_export."""
    if len(reference_tickets) < 20 or week_size < 1:
        raise MonitorError(f"{len(reference_tickets)} reference tickets, weeks of {week_size}: a reference window "
                           f"needs at least 20 tickets (use the test split) and a week at least one")
    vocabulary = {w for t in train_tickets for w in unicode_tokens(t)}
    lengths = sorted(len(unicode_tokens(t)) for t in reference_tickets)
    edges = sorted({lengths[int(len(lengths) * k / 5)] for k in range(1, 5)})  # quintiles
    monitor = Monitor(vocabulary, set(catalogue), edges, list(categories), [], week_size=week_size)
    monitor.reference = monitor.features(reference_tickets, reference_outputs)
    monitor.reference_values = monitor.statistics(monitor.reference)
    rng = random.Random(seed)
    # The reference window is a sample too: a PSI between a fresh week and it carries the window's own noise, which
    # weeks resampled from the window alone leave out (a 50-ticket window flagged 10 of 40 ordinary weeks that way).
    # So each simulated week is compared with a window resampled at the window's size: both samples vary, as in use.
    size = len(monitor.reference)
    weeks = [monitor.statistics(rng.choices(monitor.reference, k=week_size), rng.choices(monitor.reference, k=size))
             for _ in range(n_weeks)]
    for name, (_, bad, _) in STATISTICS.items():
        if name in RATES:  # a count of events: binomial around the window's rate, plus half an event
            events = monitor.reference_values[name] if bad == "up" else 1 - monitor.reference_values[name]
            count = _binomial_quantile(week_size, (events * len(monitor.reference) + 0.5) / (len(monitor.reference) + 1),
                                       quantile)
            monitor.thresholds[name] = count / week_size if bad == "up" else 1 - count / week_size
            continue
        values = sorted(week[name] for week in weeks)
        q = 1 - quantile if bad == "down" else quantile
        monitor.thresholds[name] = values[min(int(q * n_weeks), n_weeks - 1)]
    return monitor


def _binomial_quantile(n: int, p: float, quantile: float) -> int:
    """The smallest count x with P(X <= x) >= quantile for X ~ Binomial(n, p)."""
    total = 0.0
    for x in range(n + 1):
        total += math.comb(n, x) * p**x * (1 - p) ** (n - x)
        if total >= quantile:
            return x
    return n


def simulate_week(n: int, seed: int, launch: str | None = None, launch_share: float = 0.0,
                  category_weights: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """n generator tickets of one week; optionally a product launch and a shifted category mix. Taught in 06_export.

    ``launch`` adds a product to the generator's catalogue (``helpers.data.generate.PRODUCTS``) for this call only;
    ``launch_share`` of the week's tickets name it. ``category_weights`` (default 1 each) tilt the category mix.
    """
    if n < 1 or not 0 <= launch_share <= 1 or (launch_share and not launch):
        raise MonitorError(f"n={n}, launch={launch!r}, launch_share={launch_share}: need n >= 1 and a share in "
                           f"[0, 1], with a product name when the share is above 0")
    unknown = set(category_weights or {}) - set(generate.CATEGORIES)
    if unknown:
        raise MonitorError(f"category_weights names {sorted(unknown)}: use categories of {generate.CATEGORIES}")
    added = {launch: (launch, launch.lower(), launch.replace(" ", ""))} if launch else {}
    with mock.patch.dict(generate.PRODUCTS, added):
        pool = generate.generate_tickets(40 * n, seed=seed, resubmit_rate=0)
    rng = random.Random(seed)
    weights = category_weights or {}

    def pick(rows: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
        # weighted sampling without replacement: the k largest keys u^(1/w) (Efraimidis & Spirakis)
        keyed = [(rng.random() ** (1 / max(weights.get(_answer(r)["category"], 1.0), 1e-9)), i, r)
                 for i, r in enumerate(rows)]
        return [r for _, _, r in sorted(keyed, reverse=True)[:k]]

    named = [r for r in pool if launch and _answer(r)["product"] == launch]
    others = [r for r in pool if not (launch and _answer(r)["product"] == launch)]
    k = round(n * launch_share)
    week = pick(named, k) + pick(others, n - k)
    rng.shuffle(week)
    for row in week:  # what the service logs: whitespace normalised and PII scrubbed, as the training tickets were
        user = row["messages"][1]
        user["content"] = scrub_pii(normalise_whitespace(user["content"]))[0]
    return week


def _answer(row: dict[str, Any]) -> dict[str, Any]:
    return parse_json(row["messages"][-1]["content"]) or {}


def plot_retraining(weeks: Sequence[str], values: Sequence[float], threshold: float, label: str = "OOV rate") -> Any:
    """A monitored statistic per week against its threshold, and the retraining loop it starts. Taught in 06_export."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    fig, (ax, loop) = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw={"width_ratios": [1, 1]})
    crossed = [i for i, v in enumerate(values) if v > threshold]
    ax.plot(range(len(values)), values, marker="o", color="tab:blue", label=label)
    ax.axhline(threshold, color="tab:red", linestyle="--", label="threshold (99.5th pct. of reference weeks)")
    if crossed:
        ax.axvspan(crossed[0] - 0.4, len(values) - 0.6, color="tab:red", alpha=0.08)
        ax.annotate("alert: start the loop", (crossed[0], values[crossed[0]]), xytext=(-140, -20),
                    textcoords="offset points", arrowprops={"arrowstyle": "->"})
    ax.set_xticks(range(len(weeks)), weeks, rotation=30, fontsize=8)
    ax.set_ylabel(label)
    ax.set_title("weekly monitoring")
    ax.legend(fontsize=8, loc="upper left")
    steps = ["monitor weekly\n(inputs, outputs)", "threshold crossed:\nrelabel a sample", "retrain\n(old + new data)",
             "evaluate: frozen test\n+ fresh test set", "roll out behind\nan A/B test (6.10)"]
    angles = [90 - 72 * i for i in range(len(steps))]
    points = [(math.cos(math.radians(a)), math.sin(math.radians(a))) for a in angles]
    for i, ((x, y), text) in enumerate(zip(points, steps)):
        loop.add_patch(FancyBboxPatch((x - 0.5, y - 0.2), 1.0, 0.4, boxstyle="round,pad=0.02",
                                      facecolor="tab:red" if i == 1 else "0.92", alpha=0.35 if i == 1 else 1))
        loop.text(x, y, text, ha="center", va="center", fontsize=7.5)
        nx, ny = points[(i + 1) % len(points)]
        loop.annotate("", (x + 0.62 * (nx - x), y + 0.62 * (ny - y)), (x + 0.38 * (nx - x), y + 0.38 * (ny - y)),
                      arrowprops={"arrowstyle": "->", "color": "0.4"})
    loop.set_xlim(-1.6, 1.6)
    loop.set_ylim(-1.15, 1.3)
    loop.set_aspect("equal")
    loop.axis("off")
    loop.set_title("the retraining loop")
    fig.tight_layout()
    return fig
