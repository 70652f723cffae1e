#!/usr/bin/env bash
# The GPU check in one command, for the day a GPU machine is available (no hub access needed): the t4 and a100
# profiles' QLoRA path on real-size stand-ins, with measured peak memory vs the estimate, s/step and tokens/s,
# written to bench/results.md. About 5 minutes on one H100-class GPU. Extra arguments go to bench/gpu_check.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if ! "$PY" -c "import torch, transformers, trl, peft, bitsandbytes, helpers" 2>/dev/null; then
  echo "installing the course's pins (keeping this machine's CUDA torch)"
  "$PY" helpers/colab.py install
fi
HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 "$PY" bench/gpu_check.py "$@"
