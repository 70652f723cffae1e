#!/usr/bin/env bash
# Builds the wheelhouse .whl/ (git-ignored) that lets bench/gpu_check.sh run on a GPU machine that reaches no
# registry: only the wheels that machine's image lacks, for its CPython 3.12 on x86-64 Linux, at the course's pins.
# Run it here, where PyPI answers: `bash bench/gpu_wheelhouse.sh`. Then carry `.whl` to the GPU machine beside the
# repository and run `bash bench/gpu_check.sh` there (it installs from .whl/ alone, --no-index).
#
# The GPU machine's image (its published package list): Python 3.12.3, torch 2.11.0+cu130, transformers 5.17.0, accelerate 1.15.0,
# peft (version not listed), huggingface-hub 1.33.0, tokenizers 0.23.2, safetensors 0.8.0, pyarrow, pandas, numpy,
# fsspec, xxhash, filelock, jinja2, pyyaml, psutil, tqdm; no trl, bitsandbytes, datasets, dill or multiprocess.
# What is carried, and why:
#   trl, bitsandbytes, datasets   the course's pins (pyproject.toml); the image has none of them
#   transformers                  the course's pin, 5.23.0, over the image's 5.17.0 (12.7 MiB): trl 1.16.0 itself only
#                                 asks transformers>=4.56.2, but the course does not run on 5.17.0: helpers.train's
#                                 SFTConfig(activation_checkpointing=...) is refused there ("unexpected keyword
#                                 argument", found by the rehearsal below). 5.23.0's own requirements (huggingface-hub
#                                 >=1.31, tokenizers >=0.23.1,<0.24, safetensors >=0.8) are met by the image.
#   peft                          the course's pin: the image has a peft of unlisted version, and the QLoRA path is peft
#   dill, multiprocess            datasets' dependencies missing from the image (datasets 5.2.0 wants dill<0.4.2,
#                                 multiprocess<0.70.20; these are the versions of the course's tested environment)
# bitsandbytes 0.50.2's wheel is 41 MiB because it carries one library per CUDA/ROCm/XPU version; the slim copy keeps
# libbitsandbytes_cuda130.so (the image's torch is CUDA 13.0; bitsandbytes loads the highest 13.x library <= the
# runtime's, so it also serves any 13.x) and libbitsandbytes_cpu.so (loaded when no GPU is seen: the CPU rehearsal),
# with RECORD rewritten (sha256 and size of every kept file) and the same file name and tags.
#
# Measured 2026-12-06 on the course's 2-core development machine (pip 26.3, warm pip cache; the script takes ~3 s):
#   wheelhouse 18.7 MiB in 7 wheels: transformers 12.7, bitsandbytes 3.4 (slimmed from 41.1), trl 0.9, peft 0.8,
#   datasets 0.6, multiprocess 0.1, dill 0.1; the repository's files (tracked, and untracked not ignored) 33.0 MiB;
#   together 51.6 MiB of the 64 MiB that travel to the GPU machine.
#   Rehearsal of the GPU image: a fresh Python 3.12.1 venv with PyPI's torch 2.11.0+cu130 (no GPU here, so torch sees
#   none), transformers 5.17.0, accelerate 1.15.0, peft 0.18.1, tokenizers 0.23.2, huggingface-hub 1.33.0, numpy 2.5.2,
#   pyarrow, pandas and the image's other packages the course touches; the registry switched off (PIP_NO_INDEX=1,
#   PIP_INDEX_URL and HTTPS_PROXY pointing at a closed port): gpu_check.sh installed the wheelhouse in 3 s and
#   `bash bench/gpu_check.sh --cpu-rehearsal --steps 2 --real-steps 2` (t4, l4, a100) passed in 25 s in all. With
#   the image's transformers 5.17.0 instead of the carried 5.23.0 it failed at once (see transformers above).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
OUT="${WHEELHOUSE:-.whl}"
LIMIT_MIB="${LIMIT_MIB:-60}"   # 64 MiB in all travel to the GPU machine; keep room for notes and outputs
KEEP_CUDA="${KEEP_CUDA:-130}"  # libbitsandbytes_cuda<KEEP_CUDA>.so: the image's torch is 2.11.0+cu130

# One version each. The first five are pyproject.toml's pins (tests/test_gpu_wheelhouse.py checks they agree).
PINS=(
  trl==1.16.0
  bitsandbytes==0.50.2
  datasets==5.2.0
  transformers==5.23.0
  peft==0.21.2
  dill==0.4.1
  multiprocess==0.70.19
)
PLATFORMS=(manylinux_2_39_x86_64 manylinux_2_35_x86_64 manylinux_2_34_x86_64 manylinux_2_31_x86_64
           manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64
           manylinux2014_x86_64 manylinux1_x86_64)

echo "downloading ${PINS[*]} for CPython 3.12 x86-64 Linux into $OUT/"
mkdir -p "$OUT"
rm -f "$OUT"/*.whl
FULL="$(mktemp -d)"
trap 'rm -rf "$FULL"' EXIT
"$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --abi cp312 --abi abi3 --abi none "${PLATFORMS[@]/#/--platform=}" -d "$FULL" "${PINS[@]}"

# Slim bitsandbytes: keep the CUDA 13.0 and CPU libraries, rewrite RECORD, same name and tags.
"$PY" - "$FULL" "$OUT" "$KEEP_CUDA" <<'EOF'
import base64, hashlib, re, shutil, sys, zipfile
from pathlib import Path

full, out, keep_cuda = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
keep = {f"libbitsandbytes_cuda{keep_cuda}.so", "libbitsandbytes_cpu.so"}


def digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


for wheel in sorted(full.glob("*.whl")):
    if not wheel.name.startswith("bitsandbytes-"):
        shutil.copy2(wheel, out / wheel.name)
        continue
    target = out / wheel.name
    dropped, records = [], []
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as dst:
        names = [i.filename for i in src.infolist()]
        record = next(n for n in names if re.fullmatch(r"[^/]+\.dist-info/RECORD", n))
        present = {Path(n).name for n in names if n.endswith(".so")}
        missing = keep - present
        if missing:
            sys.exit(f"error: {wheel.name} has no {', '.join(sorted(missing))} (it has {', '.join(sorted(present))})")
        for info in src.infolist():
            name = info.filename
            if name == record:
                continue
            if name.endswith(".so") and Path(name).name not in keep:
                dropped.append(Path(name).name)
                continue
            data = src.read(info)
            dst.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
            records.append(f"{name},{digest(data)},{len(data)}")
        records.append(f"{record},,")
        dst.writestr(src.getinfo(record), "\n".join(records) + "\n", compress_type=zipfile.ZIP_DEFLATED)
    # check what was written: every file but RECORD listed once, with its hash and size
    with zipfile.ZipFile(target) as z:
        listed = {l.split(",")[0]: l.split(",")[1:] for l in z.read(record).decode().splitlines()}
        for name in z.namelist():
            if name != record:
                data = z.read(name)
                assert listed.pop(name) == [digest(data), str(len(data))], name
        assert list(listed) == [record], listed
    mib = lambda p: p.stat().st_size / 2**20  # noqa: E731
    print(f"bitsandbytes slimmed: {mib(wheel):.1f} -> {mib(target):.1f} MiB, kept {', '.join(sorted(keep))}, "
          f"dropped {len(dropped)} libraries")
EOF

# Sizes: the wheelhouse, and everything that travels to the GPU machine (tracked files, untracked files git does not ignore,
# and the wheelhouse).
"$PY" - "$OUT" "$LIMIT_MIB" <<'EOF'
import subprocess, sys
from pathlib import Path

out, limit = Path(sys.argv[1]), float(sys.argv[2])
size = lambda paths: sum(p.stat().st_size for p in paths if p.is_file() and not p.is_symlink())  # noqa: E731
wheels = sorted(out.glob("*.whl"))
for w in wheels:
    print(f"  {w.stat().st_size / 2**20:6.2f} MiB  {w.name}")
listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], check=True,
                        capture_output=True).stdout.decode().split("\0")
repo = size(Path(p) for p in listed if p)
house = size(wheels)
total = (repo + house) / 2**20
print(f"wheelhouse {house / 2**20:.1f} MiB in {len(wheels)} wheels; repository (tracked + untracked, not ignored) "
      f"{repo / 2**20:.1f} MiB; together {total:.1f} MiB (limit {limit:.0f} MiB; 64 MiB travel to the GPU machine)")
if total > limit:
    sys.exit(f"error: {total:.1f} MiB is over {limit:.0f} MiB: too much to send to the GPU machine")
EOF
