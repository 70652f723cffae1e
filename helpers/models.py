"""Load the embedded tiny model or a hub model, in 4-bit or not. Taught in 00_setup.

``python -m helpers.models info`` prints what is shipped in ``data/tiny-llama``; ``python -m helpers.models build-tiny``
rebuilds it with :mod:`helpers.build.tiny` (the build code lives there, out of the modules the notebooks import).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from helpers.build import cpu_model  # cpu_model.build, looked up when called: tests replace it
from helpers.build.cpu_model import CpuModelError
from helpers.build.tiny import TinyRecipe, build_tiny, pretraining_steps
from helpers.checksums import sha256
from helpers.cli import path_arg
from helpers.config import CPU_MODEL_NAME, TINY_MODEL_DIR, Profile, artifacts_dir, fp32_compute, unwritable_folder
from helpers.data.rows import load_split
from helpers.memory import load_preflight
from helpers.plots import _pyplot
from helpers.templates import (  # the chat template and its marker checks: re-exported, as 00 and 02 use them here
    CHAT_TEMPLATE, CHATML_MARKED, CHATML_TURN, EOS, GENERATION_MARKER, PAD, RENDER_CHECKS, SPECIAL_TOKENS,
    has_generation_markers, mark_chatml_template, rendering_differences, use_training_template,
)

if TYPE_CHECKING:  # heavy imports stay out of module import time
    from transformers import BitsAndBytesConfig, PreTrainedModel, PreTrainedTokenizerBase


class ModelLoadError(RuntimeError):
    """A model or tokenizer that cannot be loaded; the message names it and the fix."""


class NonFiniteLogitsError(ModelLoadError):
    """NaN or inf logits right after loading: the model overflows in this dtype on this device (fp16 on a T4).

    ``detail`` is what was seen, in a few words (how many logits, which dtype), for the recorded verdict.
    """

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message)
        self.detail = detail



# ---------------------------------------------------------------------------------------------------- loading


def bnb_config(cfg: Profile, quant_storage: str | None = None) -> "BitsAndBytesConfig":
    """The QLoRA quantization config (NF4, double quantization, the profile's compute dtype). Taught in 03.

    ``quant_storage`` is the dtype the packed 4-bit weights are stored in (default uint8). FSDP and DeepSpeed ZeRO-3
    shard only float tensors, so a sharded launch stores them in the compute dtype (see :func:`sharded_launch`).
    """
    import torch
    from transformers import BitsAndBytesConfig

    extra = {"bnb_4bit_quant_storage": getattr(torch, quant_storage)} if quant_storage else {}
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=getattr(torch, cfg.bnb_compute_dtype),
        **extra,
    )


def sharded_launch() -> str | None:
    """``"fsdp"`` or ``"zero3"`` when ``accelerate launch`` shards the model's weights across processes, else None.

    Taught in 08_scale_out. Read from the variables ``accelerate launch`` sets (``ACCELERATE_USE_FSDP``,
    ``ACCELERATE_USE_DEEPSPEED`` with ``ACCELERATE_DEEPSPEED_ZERO_STAGE``). DDP and ZeRO-2 keep a whole copy of the
    weights on every GPU, so they load the model as one process would.
    """
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true"):
        return "fsdp"
    if (os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() in ("1", "true")
            and os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3"):
        return "zero3"
    return None


def is_wheel_model(model_id: str | Path) -> bool:
    """Is this the folder the cpu profile's model is built into from its pinned wheel (built or not yet)?"""
    path = Path(model_id).expanduser()
    return path.name == CPU_MODEL_NAME and (not path.exists() or (path / "SOURCE.json").is_file()
                                            or not any(path.iterdir()))


def ensure_model(model_id: str | Path, log: Any = print) -> Path:
    """The cpu profile's model folder, built from its pinned wheel when it is missing or damaged.

    The folder lives in the model cache (``~/.cache/finetune-course/models``, or ``$COURSE_MODEL_CACHE``); it is
    checked against its ``SHA256SUMS`` on every load and rebuilt from the wheel (about 30 s, offline) if anything differs.
    """
    path = Path(model_id).expanduser()
    problems = checksum_problems(path) if (path / "SHA256SUMS").is_file() else ["not built yet"]
    if not problems:
        return path
    if problems != ["not built yet"]:
        log(f"{path}: {problems[0]}: rebuilding it from the wheel")
    try:
        return cpu_model.build(path, log=log)
    except CpuModelError as err:
        raise ModelLoadError(str(err)) from None


def check_source(model_id: str) -> None:
    """Fail early, in one line, for a missing local path or a hub id that cannot be fetched offline."""
    if is_wheel_model(model_id):
        ensure_model(model_id)
        return
    if model_id.startswith((".", "/", "~")) or Path(model_id).exists():
        path = Path(model_id).expanduser()
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"no model at {path} (config.json missing): restore it with `git checkout -- data/tiny-llama` "
                f"or rebuild it with `python -m helpers.models build-tiny`"
            )
        bad = checksum_problems(path)
        if bad:
            raise ModelLoadError(f"{path}: {bad[0]}{f' (and {len(bad) - 1} more)' if len(bad) > 1 else ''}: restore "
                                 f"the folder (`git checkout -- data/tiny-llama` for the course model) or rebuild it "
                                 f"with `python -m helpers.models build-tiny`")
        return
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")
    if offline:
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(model_id, "config.json"), str):
            raise ModelLoadError(
                f"hub model {model_id!r} is not in the local cache and HF_HUB_OFFLINE=1: unset HF_HUB_OFFLINE and "
                f"download it once online, or use the offline profile (PROFILE = 'cpu-tiny')"
            )


def checksum_problems(folder: Path) -> list[str]:
    """Files of a model folder that are missing or differ from its ``SHA256SUMS`` (none when it has no such file)."""
    sums = folder / "SHA256SUMS"
    if not sums.is_file():
        return []
    problems = []
    for line in sums.read_text(encoding="utf-8", errors="replace").splitlines():
        digest, _, name = line.partition("  ")
        if not name:
            continue
        path = folder / name
        if not path.is_file():
            problems.append(f"{name} is missing (listed in SHA256SUMS)")
        elif sha256(path) != digest:
            problems.append(f"{name} differs from its SHA256SUMS checksum (truncated or changed)")
    return problems


def _source(cfg_or_path: Profile | str | Path) -> str:
    return cfg_or_path.model_id if isinstance(cfg_or_path, Profile) else str(cfg_or_path)


def load_tokenizer(cfg_or_path: Profile | str | Path, log: Any = print) -> "PreTrainedTokenizerBase":
    """The tokenizer of a profile's model (or of a path / hub id): a distinct pad token, a training chat template.

    Taught in 00_setup. The same call loads the tokenizer for training, evaluation and serving, so all three use the
    same template (see :func:`use_training_template`).
    """
    from transformers import AutoTokenizer

    model_id = _source(cfg_or_path)
    check_source(model_id)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_id)
    except Exception as err:  # noqa: BLE001 - OSError, ValueError, the tokenizers library's own errors...
        raise ModelLoadError(f"cannot load the tokenizer of {model_id!r}: {_first_line(err)}") from None
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        # pad == eos with the wrong collator teaches a model never to stop: give padding its own token if one exists.
        for candidate in ("<|pad|>", "<|finetune_right_pad_id|>", "<|fim_pad|>", "<|endoftext|>"):
            if candidate in tokenizer.get_vocab():
                tokenizer.pad_token = candidate
                break
    use_training_template(tokenizer, log=log)
    return tokenizer


def saved_chat_template(folder: str | Path) -> str | None:
    """The chat template saved beside a tokenizer (``chat_template.jinja`` or ``tokenizer_config.json``), or None.

    Taught in 04_evaluation: the adapter folder keeps the template it was trained with, to serve with the same one.
    """
    folder = Path(folder)
    if (folder / "chat_template.jinja").is_file():
        return (folder / "chat_template.jinja").read_text(encoding="utf-8")
    config_path = folder / "tokenizer_config.json"
    if config_path.is_file():
        return json.loads(config_path.read_text(encoding="utf-8")).get("chat_template")
    return None


def load_model(
    cfg: Profile, quantized: bool = True, model_id: str | None = None
) -> "PreTrainedModel":
    """Load the profile's model, in 4-bit NF4 (the QLoRA base) or in the profile's dtype. Taught in 00_setup.

    In fp16 the logits are checked right after loading (:func:`check_finite_logits`); a model that overflows is
    recorded and loaded again with fp32 compute, the known-good setting, with a message (and later loads of it on
    this GPU go to fp32 at once; :func:`helpers.train.precision` reads the same record for the trainer's flags).
    """
    half = "float16" in (cfg.torch_dtype, cfg.bnb_compute_dtype if quantized else cfg.torch_dtype)
    verdict = recorded_fp16_verdict(cfg) if half else None
    how = "recorded earlier: loaded"
    if verdict is None or verdict["finite"]:
        model = _load_model(cfg, quantized, model_id)
        if not half:
            return model
        try:
            check_finite_logits(model)
            return model
        except NonFiniteLogitsError as err:
            verdict, how = record_fp16_verdict(cfg, False, err.detail), "recorded, and loaded again"
            del model
            free_memory()
    print(f"{cfg.model_id} overflows in fp16 on this GPU ({verdict['detail']}): {how} with fp32 compute, the "
          f"known-good setting (slower, finite)")
    return _load_model(fp32_compute(cfg), quantized, model_id)


def _load_model(cfg: Profile, quantized: bool, model_id: str | None) -> "PreTrainedModel":
    """:func:`load_model` without the fp16 check: the model as the profile's dtypes make it."""
    import torch
    from transformers import AutoModelForCausalLM

    model_id = model_id or cfg.model_id
    check_source(model_id)
    if not quantized and not sharded_launch():  # a full-precision copy: say what it takes, refuse what cannot fit

        load_preflight(cfg, model_id)
    # bitsandbytes logs a warning on CPU about an optional hub kernel it cannot fetch offline; the fp32 path needs none.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    kwargs: dict[str, Any] = {"dtype": getattr(torch, cfg.torch_dtype)}
    sharded = sharded_launch()
    if quantized and sharded:
        # FSDP / ZeRO-3 (08_scale_out): 4-bit weights stored in the compute dtype so they can be sharded, the model
        # in that same dtype, and no device_map: the launcher places the shards.
        kwargs["quantization_config"] = bnb_config(cfg, quant_storage=cfg.bnb_compute_dtype)
        kwargs["dtype"] = getattr(torch, cfg.bnb_compute_dtype)
    elif quantized:
        kwargs["quantization_config"] = bnb_config(cfg)
        # one whole copy per process: each process of a DDP launch on its own GPU (LOCAL_RANK), a single run on GPU 0
        kwargs["device_map"] = {"": "cpu"} if cfg.device == "cpu" else {"": int(os.environ.get("LOCAL_RANK", "0"))}
    try:
        model = AutoModelForCausalLM.from_pretrained(model_id, **kwargs)
    except Exception as err:  # noqa: BLE001 - OSError, safetensors' errors for a truncated file, ValueError...
        raise ModelLoadError(f"cannot load model {model_id!r}: {_first_line(err)}") from None
    if not quantized and cfg.device == "cuda" and not sharded:
        model = model.to(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
    return model


FINITE_CHECK_TEXT = "Hi, my order ORD-123456 arrived broken. Please refund it as soon as possible, thanks!"


def free_memory() -> dict[str, float | None]:
    """Free the models nothing refers to any more, now: a full garbage collection, then CUDA's cache. Taught in 05.

    A trained or loaded model is not freed by ``del``: accelerate and PEFT store bound methods of the model on the model
    itself (its wrapped ``forward``, PEFT's ``base_model_prepare_inputs_for_generation``), a reference cycle that only
    Python's full collection breaks, and that may come much later. Notebooks that load one model after another (05,
    06, 07) call this when they move on; :func:`helpers.train.experiment` and ``train_adapter`` call it when they
    return. Returns the GPU memory held by tensors before and after, in GiB (``None`` on a CPU).
    """
    import gc

    import torch

    cuda = torch.cuda.is_available()
    before = torch.cuda.memory_allocated() / 2**30 if cuda else None
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return {"before_gib": before, "after_gib": torch.cuda.memory_allocated() / 2**30 if cuda else None}


def check_finite_logits(model: "PreTrainedModel", tokenizer: "PreTrainedTokenizerBase | None" = None,
                        text: str = FINITE_CHECK_TEXT) -> float:
    """One forward pass; raise :class:`ModelLoadError` if any logit is NaN or inf. Taught in 03_qlora_training.

    Some models (Qwen2 among them) overflow in fp16 on GPUs without bf16 (T4, V100) and then write "!!!!" or
    nothing: better to know right after loading than after an hour of training. Returns the largest |logit|.
    """
    import torch

    device = next(model.parameters()).device
    if tokenizer is not None:
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    else:  # no tokenizer at hand: a fixed spread of token ids
        vocab = int(model.config.get_text_config().vocab_size)
        ids = (torch.arange(1, 33) * 997 % max(vocab - 1, 1) + 1)[None]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(input_ids=ids.to(device)).logits
    finally:
        model.train(was_training)
    finite = torch.isfinite(logits)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        detail = f"{bad} of {logits.numel()} logits are NaN/inf after loading {model.config.name_or_path!r} with " \
                 f"{model.dtype}"
        raise NonFiniteLogitsError(
            f"{detail}: the model overflows in fp16 on this GPU; fix: compute in fp32 "
            "(models.load_model and train.precision run this check and switch to fp32 by themselves; by hand: "
            "cfg = config.fp32_compute(cfg): slower, always finite) or "
            "use a GPU with bf16 (compute capability >= 8: L4, A100, H100)", detail)
    return float(logits.abs().max())


FP16_VERDICTS = "fp16_verdicts.json"  # in artifacts/<profile>/: the fp16 check's outcome per model, GPU and versions


def _fp16_key(model_id: str) -> str:
    """What an fp16 verdict holds for: the model, the GPU, and the torch / transformers / bitsandbytes versions."""
    import importlib.metadata as md

    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    versions = []
    for package in ("torch", "transformers", "bitsandbytes"):
        try:
            versions.append(f"{package} {md.version(package)}")
        except md.PackageNotFoundError:
            versions.append(f"{package} -")
    return f"{model_id} | {gpu} | {', '.join(versions)}"


def recorded_fp16_verdict(cfg: Profile) -> dict[str, Any] | None:
    """The recorded outcome of :func:`fp16_verdict` for this profile's model here, or None when none is recorded."""
    path = artifacts_dir(cfg) / FP16_VERDICTS
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8")).get(_fp16_key(cfg.model_id))
    except (json.JSONDecodeError, AttributeError):
        return None  # a damaged record is checked again, and rewritten


def record_fp16_verdict(cfg: Profile, finite: bool, detail: str) -> dict[str, Any]:
    """Write the fp16 check's outcome for this profile's model on this GPU (see :func:`fp16_verdict`)."""
    path = artifacts_dir(cfg) / FP16_VERDICTS
    try:
        known = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except json.JSONDecodeError:
        known = {}
    verdict = {"finite": bool(finite), "detail": detail}
    known[_fp16_key(cfg.model_id)] = verdict
    path.write_text(json.dumps(known, indent=1) + "\n", encoding="utf-8")
    return verdict


def fp16_verdict(cfg: Profile) -> dict[str, Any]:
    """Does the profile's model give finite logits in fp16 here? Load it as training does, check, record.

    Qwen2 models are reported to overflow in fp16 on GPUs without bf16 (Qwen issues 826 and 868: NaN logits, "!!!!"
    answers). The fused attention kernels (SDPA, transformers' default, and FlashAttention) accumulate in fp32 and avoid
    the overflow that the eager implementation hits (transformers PR 33317); where the network still overflows, the
    known-good setting is fp32 compute. :func:`helpers.train.precision` calls this once per model, GPU and library
    versions (the outcome is kept in ``artifacts/<profile>/fp16_verdicts.json``) and switches to fp32 when it fails.
    """
    recorded = recorded_fp16_verdict(cfg)
    if recorded is not None:
        return recorded
    model = _load_model(cfg, True, None)  # as training loads it: 4-bit, the profile's compute dtype
    try:
        largest = check_finite_logits(model)
    except NonFiniteLogitsError as err:
        return record_fp16_verdict(cfg, False, err.detail)
    finally:
        del model
        free_memory()
    return record_fp16_verdict(cfg, True, f"finite logits in fp16, the largest |logit| {largest:.1f}")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:300]}" if text else type(err).__name__


def model_size(model: "PreTrainedModel") -> dict[str, float]:
    """Parameter count (millions) and memory footprint (MB) of a loaded model. Taught in 00_setup."""
    params = sum(p.numel() for p in model.parameters())
    return {"params_m": params / 1e6, "footprint_mb": model.get_memory_footprint() / 2**20}


NF4_BLOCKSIZE = 64  # weights per absmax scale in bitsandbytes' 4-bit quantization (QLoRA paper)


def nf4_levels() -> list[float]:
    """The 16 values an NF4 code can stand for, read from bitsandbytes' own table (``get_4bit_type("nf4")``)."""
    from bitsandbytes.functional import get_4bit_type

    return get_4bit_type("nf4", device="cpu").tolist()


def absmax_normalise(weight: Any, blocksize: int = NF4_BLOCKSIZE) -> Any:
    """The weight flattened into blocks of ``blocksize`` consecutive values, each divided by its largest absolute
    value: the numbers in [-1, 1] that bitsandbytes rounds to the nearest NF4 level (a last, shorter block too)."""
    import torch

    flat = weight.detach().float().flatten().cpu()
    cut = flat.numel() - flat.numel() % blocksize
    parts = [flat[:cut].view(-1, blocksize), flat[cut:].view(1, -1)]
    tiny = torch.finfo(torch.float32).tiny  # an all-zero block stays zero instead of 0 / 0
    return torch.cat([p.div(p.abs().amax(1, keepdim=True).clamp_min(tiny)).flatten() for p in parts if p.numel()])


def plot_nf4(weight: Any, name: str = "", blocksize: int = NF4_BLOCKSIZE) -> Any:
    """NF4's 16 levels over the normal curve they are cut from and a real weight matrix's histogram. Taught in 00_setup.

    The weights are divided by the absmax of their block, as bitsandbytes does before rounding each to the nearest
    level; the curve is N(0, 1) rescaled the way NF4 is built (its outermost quantile becomes 1).
    """
    import inspect
    from statistics import NormalDist

    import numpy as np
    from bitsandbytes.functional import create_normal_map

    plt = _pyplot()
    levels = nf4_levels()
    values = absmax_normalise(weight, blocksize).numpy()
    # NF4's levels are N(0, 1) quantiles divided by the quantile at `offset`: the same rescaling maps the pdf
    edge = NormalDist().inv_cdf(inspect.signature(create_normal_map).parameters["offset"].default)
    x = np.linspace(-1, 1, 401)
    fig, ax = plt.subplots(figsize=(8, 4.4))
    ax.hist(values, bins=np.linspace(-1, 1, 129), density=True, color="C0", alpha=0.5,
            label=f"weights / absmax of their block of {blocksize} ({values.size:,} values)")
    ax.plot(x, [edge * NormalDist().pdf(edge * v) for v in x], color="C1", lw=2,
            label=f"N(0, 1) scaled so that {edge:.2f} standard deviations -> 1 (how NF4 is built)")
    for i, level in enumerate(levels):
        ax.axvline(level, color="black", lw=0.8, alpha=0.7, gid="nf4-level",
                   label="the 16 NF4 levels (bitsandbytes' table)" if i == 0 else None)
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel("value / block absmax")
    ax.set_ylabel("density")
    ax.set_title(f"{name or 'weight'} {tuple(weight.shape)}: NF4 puts its levels where the weights are", fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    fig.tight_layout()
    plt.close(fig)
    return fig


# ---------------------------------------------------------------------------------------------------- stand-ins

MODEL_CONFIGS_DIR = TINY_MODEL_DIR.parent / "model-configs"
# Tiny dimensions for a CPU rehearsal: the architecture (Qwen2: GQA, biases on q/k/v, tied or untied head) stays.
# A wider initialisation than the real 0.02 gives 64-wide logits room to move, so a rehearsal can teach the stand-in
# one short answer (and to stop after it) in a few dozen steps.
TINY_DIMS = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "max_window_layers": 2, "initializer_range": 0.2}


def stand_in_dir(model_id: str) -> Path:
    """``data/model-configs/<name>`` for a GPU profile's hub id (e.g. ``Qwen/Qwen2.5-1.5B-Instruct``)."""
    folder = MODEL_CONFIGS_DIR / model_id.split("/")[-1].lower()
    if not (folder / "stand_in.json").is_file():
        known = ", ".join(sorted(p.name for p in MODEL_CONFIGS_DIR.iterdir() if p.is_dir()))
        raise ModelLoadError(f"no stand-in config for {model_id!r} in {MODEL_CONFIGS_DIR}: add its config.json, "
                             f"generation_config.json and stand_in.json there (known: {known})")
    return folder


def _stand_in_tokenizer(spec: dict[str, Any], vocab_size: int = 1024) -> "PreTrainedTokenizerBase":
    """A small byte-level BPE trained on the course's tickets, with the real model's special tokens and template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    import trl

    texts = [m["content"] for row in load_split("train")[:600] for m in row["messages"]]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = [spec["pad_token"], *spec["additional_special_tokens"]]
    tok.train_from_iterator(texts, trainer=trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=spec["eos_token"], pad_token=spec["pad_token"],
                                        additional_special_tokens=spec["additional_special_tokens"],
                                        model_max_length=32768, padding_side="right")
    tokenizer.chat_template = (Path(trl.__file__).parent / spec["chat_template"].split("/", 1)[1]).read_text()
    return tokenizer


def build_stand_in(model_id: str, out_dir: str | Path, tiny: bool = True, dtype: str = "float32",
                   device: str = "cpu", seed: int = 0) -> Path:
    """A random-initialised model of a GPU profile's real architecture, with its chat template and special tokens.

    ``tiny=True`` shrinks the dimensions (:data:`TINY_DIMS`) and the vocabulary for a CPU rehearsal of notebooks 03-04;
    ``tiny=False`` keeps the published sizes (``bench/gpu_check.py``). It generates noise: it proves code paths,
    memory and speed, never quality. Returns ``out_dir``, loadable with :func:`load_tokenizer` / :func:`load_model`.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    folder, out_dir = stand_in_dir(model_id), Path(out_dir)
    spec = json.loads((folder / "stand_in.json").read_text())
    tokenizer = _stand_in_tokenizer(spec)
    real_to_token = {real: token for token, real in spec["token_ids"].items()}
    remap = lambda i: tokenizer.convert_tokens_to_ids(real_to_token[i]) if i in real_to_token else i  # noqa: E731
    raw = json.loads((folder / "config.json").read_text())
    raw.update({k: remap(raw[k]) for k in ("bos_token_id", "eos_token_id") if raw.get(k) is not None})
    if tiny:
        raw.update(TINY_DIMS, vocab_size=len(tokenizer))
    config = AutoConfig.for_model(**{k: v for k, v in raw.items() if k not in ("architectures", "transformers_version")})
    config.architectures = raw["architectures"]
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    gen = json.loads((folder / "generation_config.json").read_text())
    gen.pop("transformers_version", None)
    for key in ("bos_token_id", "pad_token_id", "eos_token_id"):
        value = gen.get(key)
        gen[key] = [remap(v) for v in value] if isinstance(value, list) else remap(value)
    model.generation_config = GenerationConfig(**gen)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    """``build-tiny`` or ``info``."""
    parser = argparse.ArgumentParser(prog="python -m helpers.models", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build-tiny", help="pretrain the embedded tiny model (about 35 minutes on 2 cores)")
    build.add_argument("--out", type=path_arg, default=TINY_MODEL_DIR)
    build.add_argument("--steps", type=pretraining_steps, default=None, help="pretraining steps (default: the "
                                                                             "recipe's)")
    sub.add_parser("info", help="show the shipped tiny model's recipe and size")
    args = parser.parse_args(argv)
    if args.command == "build-tiny":
        problem = unwritable_folder(args.out)  # found now, not after the pretraining
        if not problem and args.out.is_dir() and any(args.out.iterdir()) and not (args.out / "recipe.json").is_file():
            problem = f"{args.out} holds files that are not a tiny model (no recipe.json)"
        if problem:
            print(f"error: --out {problem}: give a new folder, or the model's own folder (data/tiny-llama)",
                  file=sys.stderr)
            return 2

        recipe = TinyRecipe() if args.steps is None else TinyRecipe(steps=args.steps)
        build_tiny(args.out, recipe, log=lambda m: print(m, flush=True))
        return 0
    return info(TINY_MODEL_DIR)


def info(folder: Path) -> int:
    """``models info``: the shipped model's size and perplexity, after checking its files against ``SHA256SUMS``."""
    fix = "restore it with `git checkout -- data/tiny-llama` or rebuild it with `python -m helpers.models build-tiny`"
    bad = checksum_problems(folder)
    if bad:
        print(f"error: {folder}: {bad[0]}{f' (and {len(bad) - 1} more)' if len(bad) > 1 else ''}: {fix}")
        return 2
    keys = ("params", "heldout_perplexity", "uniform_perplexity")
    try:
        recipe = json.loads((folder / "recipe.json").read_text(encoding="utf-8"))
        numbers = {k: recipe[k] for k in keys}
        size = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
    except FileNotFoundError:
        print(f"error: {folder / 'recipe.json'} not found: {fix}")
        return 2
    except (OSError, ValueError, KeyError, TypeError) as err:
        what = f"lacks {err}" if isinstance(err, KeyError) else f"is unreadable ({type(err).__name__})"
        print(f"error: {folder / 'recipe.json'} {what}: {fix}")
        return 2
    print(json.dumps(numbers), f"{size:.1f} MB")
    return 0


if __name__ == "__main__":
    from helpers.cli import run

    sys.exit(run(main))
