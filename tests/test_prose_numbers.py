"""Every number in the notebooks' prose comes from the run that shows it, or is a stated constant (issue 30).

**The rule.** A Markdown cell may not type a *result-shaped* number: a decimal (0.07, 4.127), a percentage (95%), a
multiplier (10x, 10×), a count "N of M", or a "±" interval. Results are printed by code cells, or rendered from the
run into a sentence (07's section 7.6), where they cannot go stale. What may stay in prose is a **stated constant**,
listed below with its kind: a library default or a hyper-parameter written in the notebook's code, a formula's
constant, a hardware fact, a version, a download's size, a statistical convention, a figure of a cited paper, or the
example numbers of an exercise statement. Section references (``section 4.12``), notebook numbers, numbers in
``code spans``, headings and link targets are not results. Each notebook's ``**Time:**`` line states a runtime
measured by the course runner: it is checked against the README's notebook table (which ``python -m helpers.course
readme`` writes from a run's report), not listed here.

A new result-shaped number in prose fails this test: print it from a code cell, or, if it is a constant, add it
below with its kind.
"""

from __future__ import annotations

import json
import re

import pytest

from helpers.config import NOTEBOOKS_DIR, REPO_ROOT

RESULT_SHAPED = re.compile(
    r"(?<![\w.])\d+(?:,\d{3})*(?:\.\d+)+(?![\w.])"  # a decimal or a version: 0.07, 4.127, 0.21.2
    r"|(?<![\w.])\d+(?:\.\d+)?\s?(?:%|x\b|×)"  # a percentage or a multiplier: 95%, 10x, 8 ×
    r"|(?<![\w.])\d+\s+of\s+\d+\b"  # a count: 13 of 16
    r"|±\s?\d+")  # an interval: ±10

# (notebook, token) -> the kind of stated constant it is
STATED: dict[tuple[str, str], str] = {
    ("00", "±1"): "formula: NF4 normalises each block by its absmax",
    ("00", "8.0"): "hardware fact: an A100's compute capability (exercise statement)",
    ("00", "9.0"): "hardware fact: an H100's compute capability (exercise statement)",
    ("01", "2.0"): "a licence's name (Apache-2.0)",
    ("02", "0.01"): "unit: one percentage point (exercise statement)",
    ("03", "4.127"): "formula: NF4 + double quantization bits per parameter (helpers.memory)",
    ("03", "5%"): "constant of the estimator: headroom kept free (helpers.memory)",
    ("03", "95%"): "constant of the estimator: the share a run may use (helpers.memory)",
    ("03", "8 ×"): "the cited guides' setup: batch 8 × 1,024 tokens",
    ("03", "0.5"): "formula: double quantization's bits per parameter before (QLoRA paper)",
    ("03", "0.127"): "formula: double quantization's bits per parameter after (QLoRA paper)",
    ("03", "10×"): "a cited guideline: full fine-tuning's smaller learning rate",
    ("04", "95%"): "statistical convention: a 95% interval",
    ("04", "1.0"): "formula: a judge that always picks the first position",
    ("04", "12 ×"): "a canary's question (arithmetic)",
    ("05", "4 ×"): "hyper-parameter in helpers.config: t4's batch × accumulation",
    ("05", "1.0"): "a library default: max_grad_norm",
    ("05", "5.23"): "a pinned version (transformers)",
    ("05", "0.21.2"): "a pinned version (peft)",
    ("05", "1.16"): "a pinned version (TRL)",
    ("05", "90%"): "exercise statement: the threshold to count",
    ("05", "10%"): "exercise statement: a replay share to try",
    ("06", "0.3.36"): "a pinned version (llama-cpp-python)",
    ("06", "76.6"): "a download's size: the pinned llama-cpp-python sdist (SHA-256 checked)",
    ("06", "0.05"): "statistical convention: significance level α",
    ("06", "80%"): "statistical convention: power",
    ("07", "0.25"): "hyper-parameter in the code: schema_reward's weight",
    ("07", "0.75"): "hyper-parameter in the code: field_reward's weight",
    ("07", "1.0"): "hyper-parameter in the code: grounding_penalty's weight",
    ("08", "5%"): "constant of the estimator: headroom kept free (helpers.memory)",
    ("08", "20%"): "constant of notebook 03's packing rule (packing_threshold in helpers.train)",
    ("08", "2x"): "the benchmark's target, stated in its issue",
}


def _sections() -> set[str]:
    """Every section and exercise number of the course ("4.12"): references to them are not results."""
    found = set()
    for path in NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            for line in "".join(cell["source"]).splitlines():
                match = re.match(r"#+\s+(?:Exercise\s+)?(\d+\.\d+)", line)
                if match:
                    found.add(match.group(1))
    return found


def result_numbers(markdown: str, sections: set[str]) -> list[str]:
    """The result-shaped numbers of a Markdown cell's prose (headings, code spans, links and Time lines left out)."""
    found = []
    for line in markdown.splitlines():
        if line.startswith("#") or line.startswith("**Time:**"):
            continue
        prose = re.sub(r"\]\([^)]*\)", "]", re.sub(r"`[^`]*`", "", line))
        prose = re.sub(r"\b\d+\.\d+\s*[–-]\s*\d+\.\d+\b", "", prose)  # a range of sections: 4.3–4.13
        found += [m.group(0) for m in RESULT_SHAPED.finditer(prose) if m.group(0) not in sections]
    return found


def _prose_numbers() -> list[tuple[str, int, str]]:
    sections = _sections()
    out = []
    for path in sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        for index, cell in enumerate(cells):
            if cell["cell_type"] == "markdown":
                out += [(path.name[:2], index, token) for token in result_numbers("".join(cell["source"]), sections)]
    return out


def test_the_rule_flags_results_and_spares_references():
    sections = {"4.12", "6.4"}
    prose = ("Field accuracy rose to 0.683 (13 of 16 canaries, ±0.05), 2.5x faster, 62% valid JSON.\n"
             "See section 4.12 and 6.4, notebooks 03–04, `lr = 2e-4`, [a link](https://x.org/v1.2/).\n"
             "## 4.1 A heading with 0.5 in it\n**Time:** `cpu-tiny` about 1.5 minutes")
    assert result_numbers(prose, sections) == ["0.683", "13 of 16", "±0", "2.5x", "62%"]


def test_no_notebook_prose_types_a_result_number():
    unexplained = [f"{nb}_*.ipynb cell {index}: {token!r}" for nb, index, token in _prose_numbers()
                   if (nb, token) not in STATED]
    assert not unexplained, ("a Markdown cell types a result-shaped number: print it from a code cell (or render it "
                             "from the run), or list it in STATED with its kind if it is a constant:\n"
                             + "\n".join(unexplained))


def test_every_stated_constant_is_still_in_the_prose():
    present = {(nb, token) for nb, _, token in _prose_numbers()}
    stale = sorted(set(STATED) - present)
    assert not stale, f"listed in STATED but no longer in the notebooks' prose (remove them): {stale}"


def _minutes(text: str) -> float:
    """'4 min 49 s', '58 s', 'about 2.5 minutes', '10 s' -> minutes."""
    match = re.fullmatch(r"(?:(\d+(?:\.\d+)?) min(?:utes?)?)?\s*(?:(\d+) s)?", text.strip())
    if not match or not any(match.groups()):
        raise ValueError(f"not a runtime: {text!r}")
    return float(match.group(1) or 0) + float(match.group(2) or 0) / 60


@pytest.mark.parametrize("path", sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.name[:2])
def test_time_line_agrees_with_the_readme_table(path):
    """A notebook's stated cpu-tiny and cpu runtimes are within 2x of the README table's (a run's report writes both)."""
    first = "".join(json.loads(path.read_text(encoding="utf-8"))["cells"][0]["source"])
    stated = re.search(r"\*\*Time:\*\* `cpu-tiny` about ([^,(]+?) on 2 CPU cores", first)
    assert stated, f"{path.name}: the first cell has no '**Time:** `cpu-tiny` about ... on 2 CPU cores' line"
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    row = re.search(rf"^\| \[notebooks/{re.escape(path.name)}\]\([^)]*\) \|[^|]*\| ([^|]+) \|", readme, re.M)
    assert row, f"README's notebook table has no row for {path.name}"
    ratio = _minutes(stated.group(1)) / _minutes(row.group(1))
    assert 0.5 <= ratio <= 2, (f"{path.name} says about {stated.group(1)}, the README's table {row.group(1).strip()}: "
                               f"update the Time line from the latest run")
    cpu = re.search(r", and `cpu` about ([^,(;]+?) \(", first)
    assert cpu, f"{path.name}: the Time line states no '`cpu` about ...' figure"
    cpu_row = re.search(rf"^\| \[notebooks/{re.escape(path.name)}\]\([^)]*\) \|[^|]*\|[^|]*\| ([^|]+) \|", readme, re.M)
    assert 0.5 <= _minutes(cpu.group(1)) / _minutes(cpu_row.group(1)) <= 2, \
        f"{path.name} says `cpu` about {cpu.group(1)}, the README's table {cpu_row.group(1).strip()}"
