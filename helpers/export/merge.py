"""Adapters and the 16-bit merge: what a saved adapter holds, several on one base, and folding one into the weights.

06_export teaches it: :func:`adapter_files`, :func:`load_adapters` (switch with ``model.set_adapter(name)``) and
:func:`merge_to_16bit`, which folds an adapter into a full-precision copy of the base (never the 4-bit one) and saves it
with the training chat template and the end/pad ids.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from helpers.config import PROFILES, Profile
from helpers.models import free_memory, load_model, load_tokenizer

if TYPE_CHECKING:  # heavy imports stay out of module import time
    from peft import PeftModel
    from transformers import PreTrainedModel
    from transformers import PreTrainedTokenizerBase


HALF_DTYPES = ("float16", "bfloat16")
MERGE_DTYPES = ("float32", *HALF_DTYPES)
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
CARD_NAME = "README.md"


class ExportError(ValueError):
    """An export step that cannot run or would ship something broken; the message names what, where and the fix."""


def adapter_files(adapter_dir: str | Path) -> dict[str, bytes]:
    """The files of a saved adapter (name -> bytes, top level only: no checkpoints). Taught in 06_export.

    What you ship or upload when you ship an adapter: its config and weights (megabytes, not the base's gigabytes),
    the tokenizer with the chat template it was trained with, and the run manifest.
    """
    folder = Path(adapter_dir)
    missing = [name for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS) if not (folder / name).is_file()]
    if missing:
        raise ExportError(f"{folder} is not a saved adapter ({', '.join(missing)} missing): point at the folder "
                          f"train_adapter / trainer.save_model wrote (03_qlora_training)")
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def load_adapters(base: "PreTrainedModel", adapters: dict[str, str | Path]) -> "PeftModel":
    """Several adapters on one base model, by name; the first is active. Taught in 06_export.

    ``model.set_adapter(name)`` switches between them in place (no reload of the base), and inside
    ``with model.disable_adapter():`` the model is the bare base again.
    """
    from peft import PeftModel

    if not adapters:
        raise ExportError("no adapters given: pass {name: adapter_dir}, e.g. {'tickets': artifacts / 'adapter'}")
    names = list(adapters)
    for name in names:
        adapter_files(adapters[name])  # each folder must hold an adapter: fails with its path
    model = PeftModel.from_pretrained(base, str(adapters[names[0]]), adapter_name=names[0])
    for name in names[1:]:
        model.load_adapter(str(adapters[name]), adapter_name=name)
    model.set_adapter(names[0])
    model.eval()
    return model


def _base_profile(cfg_or_base: Profile | str | Path, dtype: Any = None) -> Profile:
    """The profile to load the base with: the given one, or cpu-tiny's settings for a path / hub id (fp32)."""
    if not isinstance(cfg_or_base, (Profile, str, Path)):
        kind = type(cfg_or_base).__name__
        raise ExportError(
            f"merge/verify take the profile or the base model's path, not a loaded {kind}: they load a fresh "
            f"full-precision copy, because merging into the 4-bit model you trained on rounds every merged weight "
            f"(pass cfg, or cfg.model_id)")
    cfg = cfg_or_base if isinstance(cfg_or_base, Profile) else PROFILES["cpu-tiny"].replace(model_id=str(cfg_or_base))
    name = str(dtype).replace("torch.", "") if dtype is not None else cfg.torch_dtype
    if name not in MERGE_DTYPES:
        raise ExportError(f"cannot merge in {dtype!r}: merge into a 16- or 32-bit copy of the base "
                          f"(dtype one of {', '.join(MERGE_DTYPES)}), never a 4- or 8-bit one")
    return cfg.replace(torch_dtype=name)


def _refuse_quantized_checkpoint(model_id: str) -> None:
    """A base saved already quantized (``quantization_config`` in its config.json) cannot be merged exactly."""
    from transformers import AutoConfig

    try:
        quant = getattr(AutoConfig.from_pretrained(model_id), "quantization_config", None)
    except (OSError, ValueError):
        return  # load_model reports a missing or broken base with its own message
    if quant:
        method = quant.get("quant_method", "?") if isinstance(quant, dict) else type(quant).__name__
        raise ExportError(
            f"the base {model_id!r} is saved quantized ({method}): merging into quantized weights rounds every "
            f"merged weight, so the result is not the model you evaluated. Merge into the original 16-bit "
            f"checkpoint of the same model (the one without a quantization_config)")


def load_full_base(cfg_or_base: Profile | str | Path, dtype: Any = None) -> "PreTrainedModel":
    """The base model in full precision (the profile's torch_dtype; fp32 for a path), never in 4-bit."""
    cfg = _base_profile(cfg_or_base, dtype)
    _refuse_quantized_checkpoint(cfg.model_id)
    return load_model(cfg, quantized=False)


def _serving_tokenizer(cfg_or_base: Profile | str | Path, adapter_dir: Path) -> "PreTrainedTokenizerBase":
    """The tokenizer saved with the adapter (its training chat template); the base's when the adapter has none."""
    from transformers import AutoTokenizer

    if not (adapter_dir / "tokenizer_config.json").is_file():
        return load_tokenizer(_base_profile(cfg_or_base).model_id, log=lambda _m: None)
    try:  # saved by train_adapter from load_tokenizer: pad token and template are already the course's
        return AutoTokenizer.from_pretrained(adapter_dir)
    except Exception as err:  # noqa: BLE001 - OSError, ValueError, the tokenizers library's own errors
        raise ExportError(f"cannot load the tokenizer saved in {adapter_dir} ({type(err).__name__}: {err}): save "
                          f"it again with tokenizer.save_pretrained(adapter_dir)") from None


def _with_id(value: Any, token_id: int) -> Any:
    """``value`` (an id, a list of ids or None) that includes ``token_id``."""
    if value is None:
        return token_id
    ids = list(value) if isinstance(value, (list, tuple)) else [value]
    return value if token_id in ids else [token_id, *ids]  # the base's own end ids keep working too


def _ids(value: Any) -> list[int]:
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [] if value is None else [int(value)]


def set_end_ids(model: "PreTrainedModel", tokenizer: "PreTrainedTokenizerBase") -> None:
    """Make the model's config and generation config end on the tokenizer's EOS and pad with its pad token.

    A server (vLLM, TGI, llama.cpp) reads these files, not the course's code: an EOS id missing there is a model
    that never stops.
    """
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    if eos is None:
        raise ExportError("the tokenizer has no eos_token: load it with helpers.models.load_tokenizer")
    text_config = model.config.get_text_config()
    for config in {id(c): c for c in (model.config, text_config)}.values():
        config.eos_token_id = _with_id(config.eos_token_id, eos)
        if pad is not None:
            config.pad_token_id = pad
    model.generation_config.eos_token_id = _with_id(model.generation_config.eos_token_id, eos)
    if pad is not None:
        model.generation_config.pad_token_id = pad


def merge_to_16bit(cfg_or_base_path: Profile | str | Path, adapter_dir: str | Path, out_dir: str | Path,
                   dtype: Any = None) -> Path:
    """Fold a LoRA adapter into a full-precision copy of the base and save a standalone model. Taught in 06_export.

    The base is loaded in the profile's ``torch_dtype`` (fp32 on the CPU, fp16 on a T4, bf16 on an A100/H100) or in
    ``dtype``, never in 4-bit: merging into NF4 weights would add a rounding error to every merged weight. Saved in
    ``out_dir``: the weights (safetensors), the adapter's tokenizer with the chat template it was trained with, and
    config / generation config whose EOS and pad ids are the tokenizer's. Returns ``out_dir``.
    """
    from peft import PeftModel

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    adapter_files(adapter_dir)
    if out_dir.resolve() in (adapter_dir.resolve(), Path(_base_profile(cfg_or_base_path).model_id).resolve()):
        raise ExportError(f"out_dir {out_dir} is the adapter or base folder: write the merged model to a new folder")
    tokenizer = _serving_tokenizer(cfg_or_base_path, adapter_dir)
    base = load_full_base(cfg_or_base_path, dtype)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    set_end_ids(merged, tokenizer)
    merged.config.name_or_path = out_dir.name  # not this machine's path
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    del base, merged
    free_memory()  # the full-precision copy goes now, not at some later garbage collection
    return out_dir
