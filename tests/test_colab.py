"""Colab: the bootstrap cell, the one repository setting, Drive hand-offs; and what runs offline where."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import types

import nbformat
import pytest

from helpers import colab, config, course, env
from helpers.config import NOTEBOOKS_DIR, REPO_ROOT

NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))


def first_code_cell(path):
    return next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_notebook_opens_with_the_bootstrap_cell(path):
    cell = first_code_cell(path)
    assert cell.source == colab.bootstrap_source(), f"{path.name}: run `python -m helpers.colab set-repo OWNER/NAME`"
    assert "skip-execution" not in cell.metadata.get("tags", []), "Run all on Colab must run it"
    badge = nbformat.read(path, as_version=4).cells[0].source
    assert f"colab.research.google.com/github/{colab.repository()}/blob/main/notebooks/{path.name}" in badge


def test_readme_badges_point_at_the_configured_repository():
    readme = (REPO_ROOT / "README.md").read_text()
    found = set(re.findall(r"colab\.research\.google\.com/github/([^/]+/[^/]+)/blob", readme))
    assert found == {colab.repository()}


def run_bootstrap(monkeypatch, on_colab: bool, importable: bool):
    """Execute the bootstrap cell with Colab and the course's importability faked; return the commands it ran."""
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, check=False: calls.append(cmd))
    monkeypatch.setattr(os, "chdir", lambda path: calls.append(["cd", path]))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if importable else None)
    if on_colab:
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    path_before = list(sys.path)
    exec(compile(colab.bootstrap_source(), "bootstrap", "exec"), {})
    added = [p for p in sys.path if p not in path_before]
    sys.path[:] = path_before
    return calls, added


def test_bootstrap_does_nothing_outside_colab_or_once_installed(monkeypatch):
    assert run_bootstrap(monkeypatch, on_colab=False, importable=False) == ([], [])
    assert run_bootstrap(monkeypatch, on_colab=True, importable=True) == ([], [])


def test_bootstrap_on_a_fresh_colab_runtime_clones_installs_and_imports(monkeypatch):
    monkeypatch.setattr(os.path, "isdir", lambda path: False)
    calls, added = run_bootstrap(monkeypatch, on_colab=True, importable=False)
    assert calls[0][:2] == ["git", "clone"] and f"https://github.com/{colab.repository()}" in calls[0]
    assert calls[1][1:] == ["/content/course/helpers/colab.py", "install"]
    assert calls[2] == ["cd", "/content/course/notebooks"] and added == ["/content/course"]


def test_colab_install_keeps_colab_torch_and_installs_the_course(capsys):
    commands = colab.install(dry_run=True)
    assert "torch==" not in commands[0] and "transformers==" in commands[0] and "trl==" in commands[0]
    assert commands[1].endswith(f"--no-deps -e {REPO_ROOT}")


def test_the_install_script_runs_with_the_standard_library_alone():
    """The bootstrap runs helpers/colab.py before anything is installed: as a script, with -S (no site-packages)."""
    out = subprocess.run([sys.executable, "-S", str(REPO_ROOT / "helpers" / "colab.py"), "install", "--dry-run"],
                         capture_output=True, text=True, check=True)
    assert "transformers==" in out.stdout and "torch==" not in out.stdout


def test_set_repo_points_every_badge_and_bootstrap_at_a_fork(tmp_path):
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copy(REPO_ROOT / "README.md", tmp_path / "README.md")
    shutil.copytree(NOTEBOOKS_DIR, tmp_path / "notebooks")
    changed = colab.set_repo("my-school/ft-course", root=tmp_path)
    assert len(changed) == 2 + len(NOTEBOOKS)
    assert colab.repository(tmp_path / "pyproject.toml") == "my-school/ft-course"
    for path in sorted((tmp_path / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cell = first_code_cell(path)
        assert cell.source == colab.bootstrap_source("my-school/ft-course")
        assert "github/my-school/ft-course/blob/main" in nbformat.read(path, as_version=4).cells[0].source
        nbformat.validate(nbformat.read(path, as_version=4))
    assert "fine-tune-course/course" not in (tmp_path / "README.md").read_text()
    with pytest.raises(SystemExit, match="OWNER/NAME"):
        colab.set_repo("not a repo", root=tmp_path)


def test_drive_is_opt_in_and_colab_only(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert colab.keep_artifacts_on_drive(True) is None and colab.keep_artifacts_on_drive(False) is None


def test_handoff_finds_rebuilds_or_says_what_is_missing(tmp_path, capsys, monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    target = tmp_path / "adapter" / "adapter_config.json"
    course.handoff(target, "03_qlora_training", rebuild=lambda: (target.parent.mkdir(), target.write_text("{}")),
                   how="training one")
    out = capsys.readouterr().out
    assert target.is_file() and "missing" in out and "03_qlora_training has not run" in out and "training one" in out
    course.handoff(target, "03_qlora_training", rebuild=lambda: pytest.fail("must not rebuild what exists"))
    assert "found adapter_config.json" in capsys.readouterr().out
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    course.handoff(tmp_path / "decision_table.csv", "01_decide")
    assert "DRIVE = True" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="01_decide"):
        course.handoff(tmp_path / "table.csv", "01_decide", rebuild=lambda: None)


# ---------------------------------------------------------------------------------------------------- offline


def make_dry_run(*args: str) -> str:
    return subprocess.run(["make", "-n", "-B", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout


def test_make_course_on_a_gpu_profile_is_not_forced_offline():
    assert "HF_HUB_OFFLINE" not in make_dry_run("course", "PROFILE=t4")
    assert "HF_HUB_OFFLINE=1" in make_dry_run("test")
    assert "export HF_HUB_OFFLINE" not in (REPO_ROOT / "Makefile").read_text()


def test_make_installs_cpu_torch_from_pytorchs_index_with_a_fallback():
    dry = make_dry_run("install", "TORCH_INDEX=https://example.invalid/cpu")
    assert "--index-url \"https://example.invalid/cpu\"" in dry and "cannot be reached" in dry
    assert dry.index("torch==") < dry.index('-e ".[dev]"')
    default = make_dry_run("install", "TORCH_INDEX=")
    assert '[ -n "" ]' in default, "an empty TORCH_INDEX goes straight to pip's default index"


def test_course_runner_sets_offline_only_for_the_local_profile(monkeypatch, tmp_path):
    saved = dict(os.environ)  # the runner sets the profile and metrics folder for its kernels in os.environ
    os.environ.pop("HF_HUB_OFFLINE", None)
    probe = "import os\nprint('OFFLINE=' + os.environ.get('HF_HUB_OFFLINE', 'unset'))"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('PROFILE = "auto"  # x', metadata={
        "tags": ["parameters"]}), nbformat.v4.new_code_cell(probe)])
    path = tmp_path / "99_probe.ipynb"
    nbformat.write(nb, path)
    try:
        seen = {}
        for profile in ("t4", "cpu-tiny"):
            (tmp_path / profile).mkdir()
            assert course.run_notebook(path, tmp_path / profile, profile).status == "ok"
            executed = nbformat.read(tmp_path / profile / path.name, as_version=4)
            seen[profile] = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert "OFFLINE=unset" in seen["t4"], "a GPU profile may reach the hub for its model"
    assert "OFFLINE=1" in seen["cpu-tiny"], "the offline profile never tries"


def test_embedder_loads_offline_without_switching_the_whole_process_offline(monkeypatch):
    from helpers import rag

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    embedder = rag.load_embedder()
    assert embedder.encode(["hello"]).shape[0] == 1
    assert "HF_HUB_OFFLINE" not in os.environ


def test_env_check_turns_telemetry_off(monkeypatch):
    import huggingface_hub.constants as constants

    monkeypatch.delenv("HF_HUB_DISABLE_TELEMETRY", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", False)
    env.check(config.get_profile("cpu-tiny"), strict=False, quiet=True)
    assert os.environ["HF_HUB_DISABLE_TELEMETRY"] == "1" and constants.HF_HUB_DISABLE_TELEMETRY is True


def test_pins_are_read_without_tomllib_on_python_3_10(monkeypatch):
    text = (REPO_ROOT / "pyproject.toml").read_text()
    with_tomllib = env.pyproject_dependencies(text)
    monkeypatch.setitem(sys.modules, "tomllib", None)  # what `import tomllib` finds on Python 3.10
    assert env.pyproject_dependencies(text) == with_tomllib and len(with_tomllib) > 20
