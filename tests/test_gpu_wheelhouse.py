"""The offline GPU check: bench/gpu_wheelhouse.sh carries the course's pins, bench/gpu_check.sh installs from that
wheelhouse alone. Static reading of both scripts, one run of gpu_check.sh against a stand-in python that records what
it is asked to do, and the bitsandbytes slimming on a synthetic wheel: no network, no GPU, well under two seconds."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as md
import os
import re
import stat
import subprocess
import sys
import zipfile

import pytest
from packaging.requirements import Requirement

from helpers import env
from helpers.config import REPO_ROOT

CHECK = (REPO_ROOT / "bench" / "gpu_check.sh").read_text()
WHEELHOUSE = (REPO_ROOT / "bench" / "gpu_wheelhouse.sh").read_text()
PYPROJECT = {re.split(r"[=<>]", d)[0].lower(): d.split("==")[1] for d in
             env.pyproject_dependencies((REPO_ROOT / "pyproject.toml").read_text()) if "==" in d}


def wheelhouse_pins() -> dict[str, str]:
    block = re.search(r"^PINS=\((.*?)^\)", WHEELHOUSE, re.DOTALL | re.MULTILINE).group(1)
    pins = re.findall(r"^\s*([A-Za-z0-9_.\-]+)==(\S+)\s*$", block, re.MULTILINE)
    names = [n.lower() for n, _ in pins]
    assert len(names) == len(set(names)), "one version of each: two stop the offline install"
    return {n.lower(): v for n, v in pins}


def offline_branch() -> str:
    """gpu_check.sh's lines from the wheelhouse test to its `else` (the online way in)."""
    match = re.search(r'^if compgen -G "\$WHEELHOUSE/\*\.whl".*?$(.*?)^else$', CHECK, re.DOTALL | re.MULTILINE)
    assert match, "gpu_check.sh: the offline branch is `if compgen -G \"$WHEELHOUSE/*.whl\" ...` up to `else`"
    return match.group(1)


def test_the_wheelhouse_carries_exactly_the_pyproject_pins():
    pins = wheelhouse_pins()
    for name in ("trl", "bitsandbytes", "datasets", "transformers", "peft"):
        assert name in pins, f"{name}: the GPU image lacks it or holds another version"
    for name, version in pins.items():
        if name in PYPROJECT:
            assert version == PYPROJECT[name], f"{name}: wheelhouse {version}, pyproject.toml {PYPROJECT[name]}"
    # the unpinned ones are datasets' dependencies the image lacks, at versions datasets accepts
    extra = {n: v for n, v in pins.items() if n not in PYPROJECT}
    assert set(extra) == {"dill", "multiprocess"}
    needs = {Requirement(r).name.lower(): Requirement(r) for r in md.requires("datasets") if "extra" not in r}
    for name, version in extra.items():
        assert needs[name].specifier.contains(version), f"datasets needs {needs[name]}, the wheelhouse has {version}"
    assert md.version("datasets") == PYPROJECT["datasets"]  # that metadata is the pinned datasets'


def test_the_check_verifies_what_the_wheelhouse_carries():
    from bench import gpu_check

    assert set(gpu_check.CARRIED) == set(wheelhouse_pins())


def test_offline_every_pip_install_is_from_the_wheelhouse_only():
    branch = offline_branch()
    installs = [ln for ln in branch.splitlines() if re.search(r"\bpip\b.*\binstall\b", ln)]
    assert installs, "the offline branch installs the wheelhouse"
    for line in installs:
        for flag in ("--no-index", "--no-deps", "--target"):
            assert flag in line, f"offline pip install without {flag}: {line.strip()}"
        assert re.search(r'"\$WHEELHOUSE"/\*\.whl\s*$', line), f"installs something besides the wheels: {line}"
        assert not re.search(r"(--index-url|--extra-index-url|-e\b|--editable|colab\.py)", line)
    assert "colab.py" not in branch and "pip download" not in branch
    assert "PYTHONPATH=" in branch, "the course is imported from the checkout, not installed"
    # the registry way in is the other branch, and the only other pip user
    outside = CHECK.replace(branch, "")
    assert [ln for ln in outside.splitlines() if re.search(r"\bpip\b", ln) and not ln.lstrip().startswith("#")] == []
    after = CHECK.split(branch, 1)[1]
    assert re.match(r"else\n.*colab\.py install.*^fi$", after, re.DOTALL | re.MULTILINE)


def test_gpu_check_sh_installs_the_wheelhouse_and_runs_the_check(tmp_path):
    """The script itself, run with PYTHON= a recorder: with wheels present it asks pip for them alone, with
    --no-index, and then runs bench/gpu_check.py with the site folder and the checkout on PYTHONPATH."""
    repo = tmp_path / "repo"
    (repo / "bench").mkdir(parents=True)
    (repo / "bench" / "gpu_check.sh").write_text(CHECK)
    (repo / ".whl").mkdir()
    for name in ("trl-1.16.0-py3-none-any.whl", "datasets-5.2.0-py3-none-any.whl"):
        (repo / ".whl" / name).write_bytes(b"")
    log = tmp_path / "calls"
    recorder = tmp_path / "python"
    recorder.write_text(f'#!/bin/sh\necho "$* | PYTHONPATH=$PYTHONPATH" >> {log}\n')
    recorder.chmod(recorder.stat().st_mode | stat.S_IEXEC)
    run = subprocess.run(["bash", str(repo / "bench" / "gpu_check.sh"), "--profiles", "t4"], capture_output=True,
                         text=True, timeout=30, env={"PATH": os.environ["PATH"], "PYTHON": str(recorder),
                                                     "GPU_CHECK_SITE": str(tmp_path / "site")})
    assert run.returncode == 0, run.stderr
    first = run.stdout.splitlines()[0]
    assert first.startswith("offline: installing datasets-5.2.0-py3-none-any.whl trl-1.16.0-py3-none-any.whl from "
                            ".whl/ only"), first
    calls = log.read_text().splitlines()
    assert len(calls) == 2, calls
    pip, check = calls
    assert pip.startswith("-m pip install") and "--no-index" in pip and "--no-deps" in pip
    assert f"--target {tmp_path / 'site'} .whl/datasets-5.2.0-py3-none-any.whl .whl/trl-1.16.0-py3-none-any.whl |" in pip
    assert check.startswith("bench/gpu_check.py --profiles t4 |")
    assert check.endswith(f"PYTHONPATH={tmp_path / 'site'}:{repo}")


def slimmer() -> str:
    """The Python program gpu_wheelhouse.sh runs to slim bitsandbytes (its first here-document)."""
    return re.search(r"<<'EOF'\n(.*?)^EOF$", WHEELHOUSE, re.DOTALL | re.MULTILINE).group(1)


def fake_wheel(path, files: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
        z.writestr("bitsandbytes-0.50.2.dist-info/RECORD", "stale\n")


@pytest.mark.parametrize("keep", ["130", "999"])
def test_the_bitsandbytes_wheel_is_slimmed_with_a_correct_record(tmp_path, keep):
    full, out = tmp_path / "full", tmp_path / "out"
    full.mkdir(), out.mkdir()
    name = "bitsandbytes-0.50.2-py3-none-manylinux_2_24_x86_64.whl"
    libs = {f"bitsandbytes/libbitsandbytes_{v}.so": v.encode() * 100 for v in
            ("cpu", "cuda118", "cuda128", "cuda130", "cuda132", "rocm72", "xpu2026")}
    fake_wheel(full / name, {"bitsandbytes/__init__.py": b"x = 1\n", **libs,
                             "bitsandbytes-0.50.2.dist-info/WHEEL": b"Tag: py3-none-manylinux_2_24_x86_64\n"})
    (full / "trl-1.16.0-py3-none-any.whl").write_bytes(b"copied as it is")
    run = subprocess.run([sys.executable, "-", str(full), str(out), keep], input=slimmer(), capture_output=True,
                         text=True, timeout=30)
    if keep == "999":  # a CUDA library the wheel lacks: said, not papered over
        assert run.returncode != 0 and "has no libbitsandbytes_cuda999.so" in run.stderr
        return
    assert run.returncode == 0, run.stderr
    assert (out / "trl-1.16.0-py3-none-any.whl").read_bytes() == b"copied as it is"
    with zipfile.ZipFile(out / name) as z:
        names = z.namelist()
        assert sorted(n for n in names if n.endswith(".so")) == ["bitsandbytes/libbitsandbytes_cpu.so",
                                                                  "bitsandbytes/libbitsandbytes_cuda130.so"]
        record = z.read("bitsandbytes-0.50.2.dist-info/RECORD").decode().splitlines()
        assert record[-1] == "bitsandbytes-0.50.2.dist-info/RECORD,,"
        listed = {ln.split(",")[0]: ln.split(",")[1:] for ln in record[:-1]}
        assert set(listed) == set(names) - {"bitsandbytes-0.50.2.dist-info/RECORD"}
        for member, (digest, size) in listed.items():
            data = z.read(member)
            want = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert digest == f"sha256={want}" and size == str(len(data)), member
    assert "kept libbitsandbytes_cpu.so, libbitsandbytes_cuda130.so, dropped 5 libraries" in run.stdout
