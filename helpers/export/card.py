"""The model card: README.md with Hub front matter, the run's facts and metrics, and no machine paths (06_export).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

from helpers.config import repo_relative
from helpers.export.merge import ADAPTER_CONFIG, CARD_NAME, ExportError

# A slash that starts a path (not inside a word, a URL or a relative path), then at least one folder.
ABSOLUTE_PATH = re.compile(r"(?<![\w:/.~-])(?:/|[A-Za-z]:\\)[\w.+@-]+[/\\]")


def portable_name(value: Any) -> str:
    """A path or model id as a card may print it: repo-relative, a hub id as is, another machine path by its name."""
    text = str(repo_relative(str(value)))
    if text.startswith(("~", "/")) or re.match(r"[A-Za-z]:\\", text) or ABSOLUTE_PATH.search(text):
        return Path(text.replace("\\", "/")).name or "local"
    return text


def _card_front_matter(base_model: str, library: str, license: str, datasets: Sequence[str],
                       metrics: dict[str, Any]) -> str:
    from huggingface_hub import ModelCardData

    tags = ["lora", "qlora", "sft", "trl", "json-extraction", "support-tickets", "course"]
    data = ModelCardData(base_model=base_model, library_name=library, license=license, tags=tags,
                         datasets=list(datasets) or None, metrics=sorted(metrics) or None,
                         pipeline_tag="text-generation")
    return f"---\n{data.to_yaml()}\n---\n"


def _metric_table(metrics: dict[str, Any]) -> list[str]:
    """Markdown rows: one per metric; a metric given as {column: value} gets one column each (e.g. tuned, majority)."""
    columns: list[str] = []
    for value in metrics.values():
        for key in value if isinstance(value, dict) else ["value"]:
            columns += [key] if key not in columns else []
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else "" if v is None else str(v)  # noqa: E731
    rows = [f"| metric | {' | '.join(columns)} |", "|---" * (len(columns) + 1) + "|"]
    for name, value in metrics.items():
        cells = value if isinstance(value, dict) else {"value": value}
        rows.append(f"| {name} | {' | '.join(fmt(cells.get(c)) for c in columns)} |")
    return rows


def _run_facts(manifest: dict[str, Any]) -> list[str]:
    """The run manifest's key facts as markdown bullets (profile, data, adapter, steps, losses, versions)."""
    settings = manifest.get("profile_settings") or {}
    configs = manifest.get("configs") or {}
    lora, sft, bnb = configs.get("lora") or {}, configs.get("sft") or {}, configs.get("bnb")
    metrics = manifest.get("metrics") or {}
    versions = manifest.get("versions") or {}
    gpu = (manifest.get("hardware") or {}).get("gpu")
    facts = [
        f"profile `{manifest.get('profile')}`, seed {manifest.get('seed')}, "
        f"{manifest.get('wall_time_s')} s on {gpu['name'] if gpu else 'CPU'}",
        f"method: {'QLoRA (4-bit NF4 base)' if bnb else 'LoRA'}, rank {lora.get('r')}, alpha {lora.get('lora_alpha')}, "
        f"dropout {lora.get('lora_dropout')}, target modules {lora.get('target_modules')}",
        f"{metrics.get('global_step')} optimizer steps of batch {settings.get('per_device_batch_size')} x "
        f"{settings.get('gradient_accumulation_steps')}, learning rate {sft.get('learning_rate', settings.get('learning_rate'))}, "
        f"max length {sft.get('max_length', settings.get('max_seq_length'))}, assistant-only loss "
        f"{sft.get('assistant_only_loss')}",
        f"final training loss {metrics.get('final_train_loss')}, best validation loss {metrics.get('best_eval_loss')}",
        "libraries: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v),
    ]
    decoding = manifest.get("decoding")
    if decoding:
        facts.append("decoding: " + ", ".join(f"{k}={v}" for k, v in decoding.items()))
    return [f"- {fact}" for fact in facts]


def _data_facts(manifest: dict[str, Any]) -> list[str]:
    validation = manifest.get("validation") or {}
    lines = []
    for split in ("train", "validation"):
        info = validation.get(split)
        if info:
            lines.append(f"- {split}: {info.get('rows')} rows, {info.get('mean_tokens', 0):.0f} tokens on average "
                         f"({info.get('mean_trained_tokens', 0):.0f} trained: the assistant's answer), "
                         f"{info.get('truncated')} truncated")
    for path, info in (manifest.get("data_files") or {}).items():
        digest = (info or {}).get("sha256")
        lines.append(f"- file `{portable_name(path)}`" + (f", sha256 `{digest[:16]}...`" if digest else ""))
    return lines or ["- not recorded (no run manifest)"]


def model_card(manifest: dict[str, Any], metrics: dict[str, Any], base_model: str, out_dir: str | Path,
               license: str = "apache-2.0", datasets: Sequence[str] = (), limits: Sequence[str] = ()) -> Path:
    """Write ``README.md`` (Hub front matter, intended use, limits, data, run facts, metrics). Taught in 06_export.

    ``out_dir`` is an adapter folder (``library_name: peft``) or a merged model (``transformers``); ``manifest`` is
    its ``run_manifest.json``; ``metrics`` maps a metric to a value or to ``{column: value}`` (tuned, base,
    majority answer...). ``limits`` adds what your own evaluation found. No absolute path of this machine is
    written: paths are repo-relative, other local paths shown by their folder name. Returns the card's path.
    """
    out_dir = Path(out_dir)
    if (out_dir / ADAPTER_CONFIG).is_file():
        library = "peft"
    elif (out_dir / "config.json").is_file():
        library = "transformers"
    else:
        raise ExportError(f"{out_dir} holds neither an adapter ({ADAPTER_CONFIG}) nor a model (config.json): write "
                          f"the card into the folder you ship")
    base = portable_name(base_model)
    title = portable_name(out_dir.resolve())
    how = (["```python", "from peft import PeftModel", "from transformers import AutoModelForCausalLM, AutoTokenizer",
            f'base = AutoModelForCausalLM.from_pretrained("{base}")', f'model = PeftModel.from_pretrained(base, "{title}")',
            f'tokenizer = AutoTokenizer.from_pretrained("{title}")  # the chat template the adapter was trained with',
            "```"] if library == "peft" else
           ["```python", "from transformers import AutoModelForCausalLM, AutoTokenizer",
            f'model = AutoModelForCausalLM.from_pretrained("{title}")',
            f'tokenizer = AutoTokenizer.from_pretrained("{title}")  # the training chat template', "```"])
    lines = [
        f"# {title}", "",
        f"`{base}` fine-tuned to turn customer support tickets into JSON (summary, category, product, order_id, "
        f"priority), as {'a LoRA adapter' if library == 'peft' else 'a merged, standalone model'}.", "",
        "## Intended use", "",
        "Extraction of the five fields from English support tickets of the course's fictional shop, with the system "
        "prompt the model was trained with (`helpers.data.generate.SYSTEM_PROMPT`) and greedy decoding. A teaching "
        "artifact of the fine-tuning course: not for decisions about real customers.", "",
        "## Limits", "",
        "- Trained on synthetic tickets generated by the course (one shop, fourteen products, English): other shops, "
        "products or languages are out of distribution.",
        "- Valid JSON is learned, not guaranteed: parse and validate every answer (`helpers.export.generate_json`), "
        "or decode with the JSON schema as a constraint.",
        "- A valid answer can still be wrong (a category, an order id the ticket never named): check the metrics "
        "below against the majority-answer baseline before relying on a field.",
        *[f"- {limit}" for limit in limits], "",
        "## Training data", "", *_data_facts(manifest), "",
        "## Training run", "", *_run_facts(manifest), "",
        "## Evaluation (held-out test split)", "", *(_metric_table(metrics) if metrics else ["not measured"]), "",
        "## How to use", "", *how, "",
    ]
    text = _card_front_matter(base, library, license, datasets, metrics) + "\n".join(lines)
    leak = ABSOLUTE_PATH.search(text)
    if leak:
        raise ExportError(f"the model card would contain a machine path ({text[leak.start():leak.start() + 60]!r}): "
                          f"pass repo-relative paths or hub ids")
    path = out_dir / CARD_NAME
    path.write_text(text, encoding="utf-8")
    return path
