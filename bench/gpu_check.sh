#!/usr/bin/env bash
# The GPU check in one command (no hub access needed): the t4, l4 and a100 profiles' QLoRA path on real-size
# stand-ins, on filled rows and on the course's real rows, with measured peak memory vs the estimate, s/step and
# tokens/s, written to bench/results.md. About 7 minutes on one H100 (see bench/gpu_check.py). Extra arguments go to
# bench/gpu_check.py (e.g. --cpu-rehearsal, --profiles t4).
#
# Two ways in, never mixed:
#   offline (a wheelhouse .whl/ is present, built elsewhere by bench/gpu_wheelhouse.sh): pip installs those wheels
#     alone, --no-index --no-deps, into a folder of its own; no registry is asked. The course is not installed: it is
#     imported from this checkout (PYTHONPATH), so nothing (setuptools, an editable install) is fetched either.
#   online (no wheelhouse, and the course's libraries are not importable): helpers/colab.py install, from the registry.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
WHEELHOUSE="${WHEELHOUSE:-.whl}"
SITE="${GPU_CHECK_SITE:-/tmp/gpu-check-site}"
started=$(date +%s)
if compgen -G "$WHEELHOUSE/*.whl" >/dev/null; then
  echo "offline: installing $(cd "$WHEELHOUSE" && echo *.whl) from $WHEELHOUSE/ only (no index, no dependencies) into $SITE; the course is imported from $PWD, not installed"
  PIP_CONFIG_FILE=/dev/null "$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELHOUSE"/*.whl
  export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
  echo "installed in $(( $(date +%s) - started )) s"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  if ! "$PY" -c "import torch, transformers, trl, peft, bitsandbytes, datasets" 2>/dev/null; then
    echo "online: no wheelhouse in $WHEELHOUSE/: installing the course's pins from the package registry (keeping this machine's CUDA torch)"
    "$PY" helpers/colab.py install
  fi
fi
HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 "$PY" bench/gpu_check.py "$@"
echo "gpu_check.sh: $(( $(date +%s) - started )) s in all"
