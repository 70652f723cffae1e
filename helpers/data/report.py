"""The data report: token lengths with the real tokenizer, balance, duplicates, PII, coverage. Taught in 02_dataset.

:func:`data_report` measures, :func:`write_report` saves ``report.md`` and PNG plots (for example to
``config.artifacts_dir(cfg, "data_report")``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers.data.clean import balance_report
from helpers.data.validation import require_generation_markers, token_stats


@dataclass
class DataReport:
    """Per-split token statistics and category balance, plus what cleaning removed and found."""

    max_length: int
    tokens: dict[str, list[int]] = field(default_factory=dict)  # split -> tokens per row (chat template applied)
    trainable: dict[str, list[int]] = field(default_factory=dict)  # split -> assistant tokens left after truncation
    balance: dict[str, dict[str, int]] = field(default_factory=dict)
    clean_stats: dict[str, Any] = field(default_factory=dict)

    def table(self) -> list[dict[str, Any]]:
        """One row per split: rows, token max / p95 / mean, rows over max_length, rows with no trainable token."""
        out = []
        for split, lengths in self.tokens.items():
            ordered = sorted(lengths)
            trainable = self.trainable[split]
            out.append({
                "split": split, "rows": len(lengths), "max_tokens": ordered[-1] if ordered else 0,
                "p95_tokens": percentile(ordered, 95), "mean_tokens": round(sum(ordered) / max(1, len(ordered)), 1),
                "over_max_length": sum(n > self.max_length for n in lengths),
                "no_trainable": sum(t == 0 for t in trainable),
                "trainable_tokens": sum(trainable),
            })
        return out

    def markdown(self) -> str:
        """The report as markdown: the split table, balance, cleaning counts."""
        rows = self.table()
        lines = ["# Data report", "", f"Token counts use the model's chat template; max length {self.max_length}.", ""]
        lines += _md_table(rows)
        categories = sorted({c for b in self.balance.values() for c in b})
        lines += ["", "## Category balance", ""]
        lines += _md_table([{"category": c, **{s: b.get(c, 0) for s, b in self.balance.items()}} for c in categories])
        if self.clean_stats:
            stats = self.clean_stats
            lines += ["", "## Cleaning", "", f"- rows in: {stats.get('rows_in', stats.get('valid_in'))}, "
                      f"kept: {stats.get('kept')}, rejected: {stats.get('rejected')}"]
            lines += [f"- removed, {reason}: {n}" for reason, n in stats.get("reasons", {}).items()]
            lines += [f"- PII scrubbed, {kind}: {n}" for kind, n in stats.get("pii", {}).items()]
        lines += ["", "![token lengths](token_lengths.png)", "", "![category balance](balance.png)", ""]
        return "\n".join(lines)


def percentile(ordered: list[int], q: float) -> int:
    """Nearest-rank percentile of an already sorted list (0 for an empty one)."""
    if not ordered:
        return 0
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100)
    return ordered[int(rank) - 1]


def _md_table(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    keys = list(rows[0])
    return ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)] + [
        "| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]


def data_report(splits: dict[str, list[dict[str, Any]]], tokenizer: Any, max_length: int,
                clean_stats: dict[str, Any] | None = None) -> DataReport:
    """Measure every split with the real tokenizer and chat template. Taught in 02_dataset."""
    require_generation_markers(tokenizer)
    report = DataReport(max_length=max_length, clean_stats=dict(clean_stats or {}))
    for split, rows in splits.items():
        stats = token_stats([r["messages"] for r in rows], tokenizer, max_length)
        bad = [i for i, s in enumerate(stats) if isinstance(s, str)]
        if bad:
            raise ValueError(f"{split} row {bad[0]}: the chat template fails ({stats[bad[0]]}): "
                             f"validate the split first")
        report.tokens[split] = [s[0] for s in stats]
        report.trainable[split] = [s[2] for s in stats]
        report.balance[split] = balance_report(rows)
    return report


def plot_report(report: DataReport) -> tuple[Any, Any]:
    """Two matplotlib figures: token-length histograms per split (max length marked) and category balance."""
    import matplotlib.pyplot as plt

    fig_len, ax = plt.subplots(figsize=(7, 3.5))
    for split, lengths in report.tokens.items():
        ax.hist(lengths, bins=40, density=True, histtype="step", linewidth=1.5, label=split)
    ax.axvline(report.max_length, color="black", linestyle="--", label=f"max length {report.max_length}")
    ax.set(xlabel="tokens per row (chat template)", ylabel="share of the split (density)", title="Token lengths")
    ax.legend()
    fig_len.tight_layout()
    fig_bal, ax = plt.subplots(figsize=(7, 3.5))
    categories = sorted({c for b in report.balance.values() for c in b})
    width = 0.8 / max(1, len(report.balance))
    for k, (split, counts) in enumerate(report.balance.items()):
        total = max(1, sum(counts.values()))
        ax.bar([i + k * width for i in range(len(categories))], [counts.get(c, 0) / total for c in categories],
               width=width, label=split)
    ax.set_xticks([i + width * (len(report.balance) - 1) / 2 for i in range(len(categories))], categories,
                  rotation=20)
    ax.set(ylabel="share of the split", title="Category balance")
    ax.legend(loc="lower center", ncol=len(report.balance))
    fig_bal.tight_layout()
    return fig_len, fig_bal


def write_report(report: DataReport, out_dir: str | Path) -> dict[str, Path]:
    """Save ``report.md``, ``token_lengths.png`` and ``balance.png`` in ``out_dir``. Taught in 02_dataset."""
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig_len, fig_bal = plot_report(report)
    paths = {"markdown": out / "report.md", "token_lengths": out / "token_lengths.png", "balance": out / "balance.png"}
    fig_len.savefig(paths["token_lengths"], dpi=100)
    fig_bal.savefig(paths["balance"], dpi=100)
    plt.close(fig_len)
    plt.close(fig_bal)
    paths["markdown"].write_text(report.markdown(), encoding="utf-8")
    return paths
