"""QLoRA training glue, one module per concern. Taught in 03_qlora_training (05_iterate, 08_scale_out add to it).

Notebook 03 builds ``BitsAndBytesConfig``, ``LoraConfig``, ``SFTConfig`` and ``SFTTrainer`` in view of the learner;
this package holds the glue around them and :func:`train_adapter`, the same recipe in one call for later notebooks
("teach once, import after": ``tests/test_train.py`` checks that both build the same configs). Its modules, each
importing only those above it in this list:

- ``setup``: LoRA and SFT configs, precision, the recipe's defaults, trainable parameters.
- ``masks``: training rows, the assistant-mask check, padding arithmetic and packing.
- ``curves``: live loss curves while training, and the plots that read runs back.
- ``manifest``: ``run_manifest.json`` (versions, hardware, data hashes, metrics) and a tracked run's record.
- ``runconfig``: run configs (``configs/*.yaml``) for the script, and the output folder a run may claim.
- ``fallback``: the shipped fallback (``USE_FALLBACK``): adapters, runs, launches and results the course made.
- ``recipe``: the recipe in one call (:func:`fit`, :func:`train_adapter`, :func:`quick_run`).
- ``experiments``: 05's tracked experiments and their comparison table.
- ``script``: ``python -m helpers.train --config configs/<profile>.yaml [--resume]`` (:func:`run_script`, taught in
  08_scale_out) and its launcher.

Every name stays importable from ``helpers.train`` (``train.fit``, ``train.LiveCurves``, ...), as the notebooks use it.
"""

from helpers.plots import _pyplot  # drawn by decide, evaluate, memory and models before the split
from helpers.train.setup import (
    BF16_WEIGHTS_MIN_LR, DEFAULTS, keep_4bit_trainable, last_checkpoint, lora_config, match_adapter_dtype,
    PEFT_CHECKPOINTING_WARNING, precision, sft_config, trainable_parameters, TrainDefaults, TrainingSetupError,
)
from helpers.train.masks import (
    batched_padding, check_assistant_masks, MaskReport, packing_helps, padding_fraction, read_jsonl, split_path,
    to_dataset,
)
from helpers.train.curves import (
    CURVES_NAME, _ignore_event, learning_rate_schedule, linear_dims, LiveCurves, log_series, plot_curves, plot_log,
    plot_lora, plot_runs, run_curves, tensorboard_scalars,
)
from helpers.train.manifest import (
    final_metrics, hardware, LIBRARIES, library_versions, MANIFEST_NAME, portable_adapter_config, Run, RUN_COLUMNS,
    _to_jsonable, write_manifest,
)
from helpers.train.runconfig import (
    claim_output_dir, CONFIG_MAX_BYTES, DEFAULTS_KEYS, _key_lines, LEARNING_RATE_USUAL, load_run_config, MAX_VALUES,
    output_dir_problem, PATH_KEYS, POSITIVE_KEYS, PROFILE_KEYS, RUN_MARKER, SCRIPT_KEYS, ScriptConfig,
    ScriptConfigError, _value_problem,
)
from helpers.train.fallback import (
    copy_fallback, _fingerprint, _inputs_sha, load_fallback, recorded_outputs, _run_settings, save_log,
    save_results, _shipped_launch, shipped_results, _shipped_run, _WHERE_NOT_WHAT,
)
from helpers.train.recipe import (
    fit, Fitted, quick_run, train_adapter,
)
from helpers.train.experiments import (
    best_run, compare_runs, experiment, _quiet_progress,
)
from helpers.train.script import (
    check_checkpoint, data_parallel_batch, _first_line_of, _keep_launch, launch_script, main, non_finite_guard,
    NonFiniteLossError, _rank, read_chat_rows, run_script, save_adapter,
)
