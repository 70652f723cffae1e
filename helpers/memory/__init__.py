"""Memory pre-flight: will this fine-tuning run fit on that GPU? Taught in 03_qlora_training.

``python -m helpers.memory --model NAME_OR_PATH --method qlora --seq-len 512 --batch 4 [--grad-checkpointing] --json``
prints the estimated peak memory of one training step, component by component, and a verdict per GPU (T4, L4,
A100 40/80 GB, H100): fits / does not fit / fits with these changes. Its modules, each importing only those above it:

- ``estimate``: model shapes from a config, and the estimate of one step (what it counts and why: its docstring).
- ``verdicts``: fits / does not fit / fits with these changes, per GPU; plots; several GPUs (08_scale_out).
- ``device``: free and peak memory of the machine at hand, and the pre-flights before a run or a load.
- ``command``: the command line (``helpers/memory/__main__.py``).

Every name stays importable from ``helpers.memory`` (``memory.estimate``, ``memory.GPUS``, ...).
"""

from helpers.memory.estimate import (
    ALIASES, check_config_numbers, CONFIG_LIMITS, CUDA_OVERHEAD_GIB, DTYPE_BYTES, Estimate, estimate, GIB, GPU,
    GPUS, HEADROOM, LINEAR_NAMES, LOSS_TILE, LOSS_TILE_COPIES, LOSSES, MAX_BATCH, MAX_SEQ_LEN, MemoryEstimateError,
    MemoryPreflightError, METHODS, ModelShape, MOE_KEYS, NF4_DQ_BITS, _optimizer_bytes_per_param, OPTIMIZERS,
    PRESETS, read_config, resolve_shape, shape_from_config, _shape_from_hub, TrainSetup, weights_gib,
)
from helpers.memory.verdicts import (
    _changes, _fit, gpu_estimates, method_rows, net_changes, per_device, plot_memory, report, setup_from_profile,
    SHARDED, STRATEGIES, trainable_share, verdict, verdict_grid,
)
from helpers.memory.device import (
    available_gib, free_gib, load_preflight, peak_gib, preflight, reset_peak, used_gib,
)
from helpers.memory.command import (
    _between, main, _print_table,
)
