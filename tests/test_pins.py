"""One source of truth for versions: pyproject.toml; environment.yml and the Colab cells agree with it."""

from __future__ import annotations

import re

import nbformat

from helpers import env
from helpers.colab import listed_dependencies
from helpers.config import NOTEBOOKS_DIR, REPO_ROOT

TEXT = (REPO_ROOT / "pyproject.toml").read_text()
PINNED = env.pyproject_dependencies(TEXT) + listed_dependencies(TEXT, "dev")  # no tomllib: runs on Python 3.10


def pins_in(text: str) -> dict[str, str]:
    return {m.group(1).lower(): m.group(2) for m in re.finditer(r"([A-Za-z0-9_.\-]+)==([0-9][^\s\"']*)", text)}


def test_direct_dependencies_are_pinned_with_a_reason():
    source = (REPO_ROOT / "pyproject.toml").read_text()
    for dep in PINNED:
        assert "==" in dep or dep.split(">=")[0] in ("pandas", "numpy"), f"{dep} is not pinned"
        line = next(ln for ln in source.splitlines() if f'"{dep}"' in ln)
        assert "#" in line, f"{dep}: say which notebooks need it"
    for name in ("jupyterlab", "ipywidgets", "torch", "transformers", "peft", "trl", "bitsandbytes", "datasets",
                 "matplotlib", "nbmake"):
        assert any(d.startswith(name + "==") for d in PINNED), f"{name} must be a pinned dependency"
    assert not any("git+" in d for d in PINNED)


def test_environment_yml_matches_pyproject():
    yml = (REPO_ROOT / "environment.yml").read_text()
    listed = [ln.strip()[2:] for ln in yml.splitlines() if ln.strip().startswith("- ") and ("==" in ln or ">=" in ln)]
    assert sorted(listed) == sorted(PINNED)


def test_colab_installs_the_pyproject_pins_and_keeps_colab_torch():
    from helpers import colab

    pinned = pins_in("\n".join(PINNED))
    found = pins_in("\n".join(colab.colab_pins()))
    assert "torch" not in found and "ipykernel" not in found, "Colab keeps its own CUDA torch and Jupyter stack"
    assert {"transformers", "peft", "trl", "bitsandbytes", "accelerate", "datasets"} <= set(found)
    for name, version in found.items():
        assert pinned.get(name) == version, f"Colab installs {name}=={version}, pyproject says {pinned.get(name)}"
    for cell in [c for p in sorted(NOTEBOOKS_DIR.glob("*.ipynb")) for c in nbformat.read(p, as_version=4).cells]:
        if "pip install" not in cell.source:
            continue
        # the course's packages install through helpers/colab.py, which reads pyproject.toml; a skip-execution cell
        # may show how to install an outside tool (vLLM, llama.cpp's converter), never one of the course's pins
        assert "skip-execution" in cell.metadata.get("tags", []), "installs go through helpers/colab.py"
        for line in re.findall(r"pip install ([^\n#]+)", cell.source):
            names = {re.split(r"[=<>\[]", word)[0].lower() for word in line.split() if not word.startswith("-")}
            assert not names & set(pinned), f"{line!r} installs a course pin: use helpers/colab.py"


def test_makefile_installs_the_pinned_torch_first():
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "torch==" in makefile or 'grep -oE \'"torch==' in makefile
    assert makefile.index("TORCH_PIN)") < makefile.index('-e ".[dev]"')


def test_env_reads_the_same_pins():
    assert env.pinned_versions()["transformers"] == pins_in("\n".join(PINNED))["transformers"]


def test_the_python_claim_is_what_the_pinned_libraries_require():
    """transformers 5 and trl 1 require Python 3.11: the course must not claim 3.10 (an Ubuntu 22.04 GPU image's
    Python), and make must say so before pip does (issue 26)."""
    import re
    from importlib.metadata import metadata

    from helpers.config import REPO_ROOT

    ours = re.search(r'requires-python = ">=(\d+)\.(\d+)"', (REPO_ROOT / "pyproject.toml").read_text()).groups()
    for package in ("transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes"):
        theirs = re.match(r">=\s*(\d+)\.(\d+)", metadata(package)["Requires-Python"] or ">=3.0").groups()
        assert tuple(map(int, ours)) >= tuple(map(int, theirs)), f"{package} requires Python {'.'.join(theirs)}+"
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert f"sys.version_info >= ({ours[0]}, {ours[1]})" in makefile, "make checks the same Python version first"
    readme = (REPO_ROOT / "README.md").read_text()
    assert f"Python {ours[0]}.{ours[1]}+" in readme and "3.10+" not in readme
