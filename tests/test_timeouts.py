"""Issue 12, item 17: CI must not fail because the machine was busy: no wall-clock asserts, a wide nbmake timeout."""

from __future__ import annotations

import json
import re
from pathlib import Path

from helpers.config import NOTEBOOKS_DIR, REPO_ROOT

TIME_WORDS = re.compile(r"\b\w*(seconds|_s|elapsed|time|duration|minutes)\w*\b\s*(<=|<|>=|>)|(<=|<|>=|>)\s*\w*(seconds|"
                        r"elapsed|duration|minutes)")


def code_lines(path: Path) -> list[str]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    return [line for c in nb["cells"] if c["cell_type"] == "code" for line in "".join(c["source"]).splitlines()]


def test_no_notebook_asserts_on_wall_clock_time():
    offending = [f"{p.name}: {line.strip()}" for p in sorted(NOTEBOOKS_DIR.glob("*.ipynb")) for line in code_lines(p)
                 if line.lstrip().startswith("assert") and TIME_WORDS.search(line)]
    assert offending == [], "time limits belong in bench/, which prints ratios: " + "; ".join(offending)


def test_make_test_sets_a_wide_per_cell_timeout():
    makefile = (REPO_ROOT / "Makefile").read_text()
    test_rule = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    match = re.search(r"--nbmake-timeout[= ](\d+)", test_rule)
    assert match, "make test must set --nbmake-timeout (nbmake's default, 300 s, fails notebook 03 on a busy machine)"
    assert int(match.group(1)) >= 3 * 300, "keep at least 3x the slowest cell's measured time (~300 s on 2 busy cores)"


def test_a_benchmark_times_the_tiny_fine_tune_against_its_budget():
    bench = REPO_ROOT / "bench" / "bench_finetune_time.py"
    assert bench.is_file()
    source = bench.read_text()
    assert "BUDGET_S = 300" in source and "ratio" in source
