"""The README's results and the notebooks' runtimes, written from a course run's report (maintainers' command).

``python -m helpers.course readme [RUN_DIR]`` reads ``runs/<timestamp>/`` (``report.json``, the numbers every notebook
recorded with ``course.record``, and ``run.json``: commit, date, machine, profile) and rewrites, between
``<!-- course-run:PROFILE:begin -->`` and ``<!-- course-run:PROFILE:end -->`` in ``README.md``, a block with the run's
stamp, each notebook's status and runtime, and sentences rendered from its recorded numbers. For a complete run of
``cpu-tiny`` or ``cpu`` it also writes that profile's runtime column of the README's notebook table and its figure in
each notebook's ``**Time:**`` line (then regenerate the student version). No number in these places is typed by hand:
``tests/test_prose_numbers.py`` checks the notebooks' prose, and this command is how the README's results change.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from helpers.config import NOTEBOOKS_DIR, REPO_ROOT

README = REPO_ROOT / "README.md"
INSTRUCTOR = REPO_ROOT / "docs" / "instructor.md"  # its Times table: one CPU column per mode
RUN_INFO = "run.json"  # beside report.json in every course run folder
TABLE_PROFILE = "cpu-tiny"  # the profile of the first runtime column and of the notebooks' Time lines' fallback figure
# The README's notebook table has one runtime column per CPU profile (0: the first after "what you learn"), and each
# notebook's Time line one figure per CPU profile, each written by a complete run of that profile
TABLE_COLUMNS = {"cpu-tiny": 0, "cpu": 1}
TIME_PATTERNS = {"cpu-tiny": r"(\*\*Time:\*\* `cpu-tiny` about )([^,(]+?)( on 2 CPU cores)",
                 "cpu": r"(, and `cpu` about )([^,(;]+?)( \()"}
# The instructor guide's Times table: the column each complete CPU run writes, by (profile, --fallback)
INSTRUCTOR_COLUMNS = {("cpu-tiny", False): 1, ("cpu-tiny", True): 2, ("cpu", False): 3}


class ReadmeError(ValueError):
    """A run folder or a README this command cannot use: the message says which and how to fix it."""


def git_commit(root: Path = REPO_ROOT) -> str:
    """The checked-out commit (short), with ``+changes`` when helpers/ or notebooks/ differ from it; or 'unknown'."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "helpers", "notebooks"], cwd=root,
                               capture_output=True, text=True).stdout.strip()
        return head + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> str:
    """The machine in words: CPU model, cores, the GPU when torch sees one."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    text = f"{cpu}, {os.cpu_count()} cores"
    try:
        import torch  # heavy: only when a run is stamped

        if torch.cuda.is_available():
            text += f", GPU {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return text


def run_info(profile: str, fallback: bool) -> dict[str, Any]:
    """What ``run.json`` holds: the commit, the UTC date and time, the machine, the profile and the mode."""
    return {"commit": git_commit(), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine(), "profile": profile, "fallback": fallback}


def runtime(seconds: float) -> str:
    """'58 s', '4 min 49 s' (whole seconds)."""
    whole = int(round(seconds))
    return f"{whole} s" if whole < 60 else f"{whole // 60} min {whole % 60} s"


def latest_run(runs_dir: Path) -> Path:
    """The newest run folder that has a report."""
    runs = sorted(p.parent for p in Path(runs_dir).glob("*/report.json"))
    if not runs:
        raise ReadmeError(f"no course run with a report.json in {runs_dir}: run `make course` first")
    return runs[-1]


def load_run(run_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(run.json, report.json)`` of a run folder, each named when missing or damaged."""
    run_dir = Path(run_dir)
    out = []
    for name in (RUN_INFO, "report.json"):
        path = run_dir / name
        try:
            out.append(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise ReadmeError(f"{path} not found: give a folder that `python -m helpers.course run` wrote "
                              f"(runs/<timestamp>)") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ReadmeError(f"{path} is not the JSON a course run writes ({err}): run the course again") from None
    return out[0], out[1]


def _pct(v: float) -> str:
    return f"{v:.0%}"


def _num(v: float) -> str:
    return f"{v:.3f}"


def _sig(v: float) -> str:
    return f"{v:.4g}"


# Sentences rendered from what each notebook recorded; a sentence whose numbers a run did not record is left out.
SENTENCES: dict[str, list[tuple[str, Any]]] = {
    "00_setup": [("the profile's model: {params_m} M parameters, {footprint_mb} MB in fp32 and {footprint_4bit_mb} "
                  "MB in NF4; the embedded tiny model's held-out perplexity {heldout_perplexity}", _sig)],
    "01_decide": [("validation field accuracy: zero-shot {zero_shot_field_accuracy}, few-shot "
                   "{few_shot_field_accuracy}, JSON schema {json_schema_field_accuracy}, retrieved examples {rag_examples_field_accuracy}, majority answer "
                   "{majority_field_accuracy}; best prompt: {best_prompt}; recommendation: {recommendation}", _num),
                  ("knowledge-base answers containing the gold answer: closed book {closed_book_answer_contains}, "
                   "with retrieval {rag_answer_contains}; recall@5 MiniLM {minilm_recall_at_5}, BM25 "
                   "{bm25_recall_at_5}", _pct)],
    "02_dataset": [("{rows_raw} raw rows, {rows_kept} kept, {pii_scrubbed} PII spans scrubbed; splits "
                    "{train_rows} / {validation_rows} / {test_rows}; dedup recall {dedup_recall}, precision "
                    "{dedup_precision}", None)],
    "03_qlora_training": [("test valid JSON {json_valid_base} → {json_valid_tuned} after {steps} steps", _pct),
                          ("test field accuracy {field_accuracy_base} → {field_accuracy_tuned} (majority answer "
                           "{field_accuracy_majority}); order ids exact on the tickets that name one: "
                           "{order_id_named_tuned}", _num)],
    "04_evaluation": [("tuned test field accuracy {field_accuracy_tuned}; {claim_metric} gain CI "
                       "[{claim_ci_low}, {claim_ci_high}]; judge agreement between orders {judge_agreement}; canary "
                       "regressions {canary_regressions}", _num)],
    "05_iterate": [("data fix for {target}: validation failures {target_failures_control} (control) vs "
                    "{target_failures_fix} (fix); ship rule on validation: keep = {keep_fix}; on test "
                    "{target_failures_test_control} vs {target_failures_test_fix} (gain holds: "
                    "{fix_gain_holds_on_test})", None),
                   ("best of the sweeps on validation: {best_run}; general-text cross-entropy rise "
                    "{general_ce_rise_recipe} (recipe) vs {general_ce_rise_adapter} (03's adapter)", _num)],
    "06_export": [("merge verified: {verification_passed}; field accuracy merged {merged_field_accuracy} vs adapter "
                   "{adapter_field_accuracy}; adapter {adapter_mb} MB; OpenAI estimate ${openai_cost_usd}", _num)],
    "07_preference_tuning": [("{pairs} DPO pairs; test field accuracy: {field_accuracy}; json_reward: {json_reward}; "
                              "invented order ids: {invented_order_ids}", None)],
    "08_scale_out": [("the script trained {steps} steps and resumed to {resumed_to}; test field accuracy "
                      "{field_accuracy}; 1 vs {ddp_processes} processes: largest loss difference "
                      "{ddp_max_loss_rel_diff}", _num)],
}


def _value(value: Any, fmt: Any) -> str:
    """One recorded value in words: floats by ``fmt`` (3 decimals by default), a dict as 'name value, ...'."""
    if isinstance(value, dict):
        return ", ".join(f"{name} {_value(v, fmt)}" for name, v in value.items())
    if isinstance(value, float):
        return (fmt or _num)(value)
    return str(value)


def sentences(notebook: str, metrics: dict[str, Any]) -> list[str]:
    """The sentences of :data:`SENTENCES` that this notebook's recorded numbers fill."""
    out = []
    for template, fmt in SENTENCES.get(notebook, []):
        names = re.findall(r"\{(\w+)\}", template)
        if all(name in metrics for name in names):
            out.append(template.format(**{name: _value(metrics[name], fmt) for name in names}))
    return out


def results_block(info: dict[str, Any], results: list[dict[str, Any]], note: str = "") -> str:
    """The README block of one run: its stamp, a table of notebooks, and the sentences of what each measured."""
    total = sum(r["seconds"] for r in results)
    ok = sum(r["status"] == "ok" for r in results)
    mode = " with `--fallback` (training cells loaded the shipped results)" if info.get("fallback") else ""
    lines = [f"Profile `{info['profile']}`{mode}: {ok} of {len(results)} notebooks ok in {total / 60:.1f} minutes, "
             f"commit `{info['commit']}`, {info['date']}, on {info['machine']}"
             + (f"; {note}" if note else "") + ". Written by `python -m helpers.course readme` from that run's report.",
             "", "| notebook | status | runtime | what the run measured |", "|---|---|---|---|"]
    for r in results:
        said = "; ".join(sentences(r["name"], r.get("metrics", {}))) or "—"
        status = r["status"] if r["status"] != "failed" else f"FAILED at cell {r.get('failed_cell')}"
        lines.append(f"| {r['name']} | {status} | {runtime(r['seconds'])} | {said} |")
    return "\n".join(lines)


def _markers(profile: str, fallback: bool) -> tuple[str, str]:
    name = profile + ("-fallback" if fallback else "")
    return f"<!-- course-run:{name}:begin -->", f"<!-- course-run:{name}:end -->"


def replace_block(text: str, begin: str, end: str, body: str, where: str) -> str:
    """``text`` with what lies between the markers replaced by ``body``; a missing marker is named."""
    if begin not in text or end not in text:
        raise ReadmeError(f"{where} has no {begin} ... {end} block: add the two lines where this run's results go")
    head, rest = text.split(begin, 1)
    return f"{head}{begin}\n{body}\n{end}{rest.split(end, 1)[1]}"


def update_readme(run_dir: Path, readme: Path = README, notebooks: Path = NOTEBOOKS_DIR,
                  note: str = "", instructor: Path = INSTRUCTOR) -> list[Path]:
    """Write a run's block into the README (and, for a complete run, the runtimes); return the files changed.

    The runtimes of a complete cpu-tiny run go to the README's notebook table (not with ``--fallback``) and to each
    notebook's ``**Time:**`` line; those of a complete cpu-tiny or cpu run go to the instructor guide's Times table
    (one column per profile and mode: :data:`INSTRUCTOR_COLUMNS`).
    """
    info, results = load_run(run_dir)
    readme = Path(readme)
    text = readme.read_text(encoding="utf-8")
    begin, end = _markers(info["profile"], bool(info.get("fallback")))
    new = replace_block(text, begin, end, results_block(info, results, note), str(readme))
    changed = []
    complete = all(r["status"] == "ok" for r in results) and len(results) == len(list(notebooks.glob("[0-9][0-9]_*.ipynb")))
    fallback = bool(info.get("fallback"))
    if info["profile"] in TABLE_COLUMNS and complete and (info["profile"] == TABLE_PROFILE or not fallback):
        skip = "[^|]*\\|" * TABLE_COLUMNS[info["profile"]]
        for r in results:
            name = re.escape(r["name"])
            row = re.compile(rf"^(\| \[notebooks/{name}\.ipynb\]\([^)]*\) \|[^|]*\|{skip} )([^|]+)( \|)", re.M)
            if not fallback:
                new = row.sub(lambda m: m.group(1) + runtime(r["seconds"]) + m.group(3), new)
            if _set_time_line(notebooks / f"{r['name']}.ipynb", r["seconds"], fallback, info["profile"]):
                changed.append(notebooks / f"{r['name']}.ipynb")
    column = INSTRUCTOR_COLUMNS.get((info["profile"], fallback))
    if complete and column and _set_instructor_times(Path(instructor), results, column):
        changed.append(Path(instructor))
    if new != text:
        readme.write_text(new, encoding="utf-8")
        changed.insert(0, readme)
    return changed


def _set_instructor_times(path: Path, results: list[dict[str, Any]], column: int) -> bool:
    """Write runtimes into column ``column`` of the instructor guide's Times table (:data:`INSTRUCTOR_COLUMNS`)."""
    text = path.read_text(encoding="utf-8")
    new = text
    width = 2 + max(INSTRUCTOR_COLUMNS.values())  # | notebook | the CPU columns | GPU profiles |
    for r in results:
        row = re.compile(rf"^\| {re.escape(r['name'])} \|.*\|$", re.M)
        match = row.search(new)
        if not match or match.group(0).count("|") != width + 1:
            raise ReadmeError(f"{path} has no Times row of {width} cells for {r['name']}: write it as `| {r['name']} |"
                              + " ... |" * (width - 1) + "`")

        def put(m: re.Match, seconds: float = r["seconds"]) -> str:
            cells = m.group(0).split("|")
            cells[1 + column] = f" {runtime(seconds)} "
            return "|".join(cells)

        new = row.sub(put, new)
    if new == text:
        return False
    path.write_text(new, encoding="utf-8")
    return True


def _set_time_line(path: Path, seconds: float, fallback: bool, profile: str = TABLE_PROFILE) -> bool:
    """Put a measured runtime into a notebook's ``**Time:**`` line: the profile's figure, or cpu-tiny's fallback one."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    first = "".join(nb["cells"][0]["source"])
    pattern = r"(, )([^,(]+?)( with `USE_FALLBACK = True`)" if fallback else TIME_PATTERNS[profile]
    new = re.sub(pattern, lambda m: m.group(1) + runtime(seconds) + m.group(3), first, count=1)
    if new == first:
        return False
    nb["cells"][0]["source"] = new.splitlines(keepends=True)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return True
