"""Run the course's notebooks in order and write a one-page report. Taught in 00_setup.

``python -m helpers.course run [--profile P] [--only NN ...]`` executes each notebook with the profile injected after
its ``parameters`` cell, saves executed copies to ``runs/<timestamp>/``, and writes ``report.md`` and ``report.html``
with each notebook's status, runtime, key metrics (from :func:`record`) and plots.

``python -m helpers.course readme [RUN_DIR]`` writes a run's results into ``README.md`` (:mod:`helpers.readme`).

``python -m helpers.course student [--out DIR] [--check]`` writes the student version of every notebook to
``student/`` (each ``solution`` cell replaced by its ``starter``, ``hidden-check`` cells removed, no outputs) and its
answer key to ``docs/solutions/``; ``--check`` writes nothing and exits 1 naming every stale or missing file.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from helpers.cli import path_arg
from helpers.colab import on_colab
from helpers.config import (METRICS_DIR_VAR, NOTEBOOK_VAR, NOTEBOOKS_DIR, PARAMS_VAR, REPO_ROOT, RUNS_DIR,
                            ProfileError, resolve_profile_name)
from helpers.config import FALLBACK_ENV_VAR, fallback_dir, repo_relative, unwritable_folder
from helpers.evaluate.ledger import LEDGER_NAME, ledger_markdown
from helpers.readme import RUN_INFO, ReadmeError, latest_run, run_info, update_readme

BENCH_RESULTS = REPO_ROOT / "bench" / "results.md"  # the benchmarks' latest figures (bench/results.py writes it)


def record(**metrics: Any) -> dict[str, Any]:
    """Record a notebook's key numbers for the course report (and print them). Taught in 00_setup."""
    folder = Path(os.environ.get(METRICS_DIR_VAR) or RUNS_DIR / "metrics")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{os.environ.get(NOTEBOOK_VAR, 'interactive')}.json"
    saved = json.loads(path.read_text()) if path.is_file() else {}
    clean = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()}
    saved.update(clean)
    path.write_text(json.dumps(saved, indent=2, default=str) + "\n")
    for key, value in clean.items():
        print(f"recorded {key} = {value}")
    return saved


def handoff(path: str | Path, made_by: str, rebuild: Callable[[], Any] | None = None, how: str = "") -> Path:
    """Find what an earlier notebook saved for this one, or say why it is missing and rebuild it. Taught in 04.

    On Colab every notebook runs in a new runtime, so ``artifacts/`` starts empty unless it is kept on Google Drive
    (``DRIVE = True``). ``rebuild`` (e.g. train the adapter with 03's recipe) runs when the file is missing; without
    one the notebook carries on and says what it lacks.
    """
    path = Path(path)
    if path.exists():
        print(f"found {path.name} from {made_by}")
        return path

    why = ("this Colab runtime is new (set DRIVE = True in the parameters to keep artifacts on Google Drive)"
           if on_colab() else f"{made_by} has not run with this profile yet")
    if rebuild is None:
        print(f"{path.name} from {made_by} is missing: {why}; carrying on without it")
        return path
    print(f"{path.name} from {made_by} is missing: {why}; {how or 'rebuilding it now'}")
    rebuild()
    if not path.exists():
        raise FileNotFoundError(f"rebuilding {path} ({how}) did not produce it: run {made_by} first")
    return path


@dataclass
class NotebookResult:
    """How one notebook went: status ``ok`` / ``failed`` / ``skipped``, runtime, failing cell, metrics, images."""

    name: str
    status: str = "skipped"
    seconds: float = 0.0
    failed_cell: int | None = None
    error: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    images: list[str] = field(default_factory=list)


def find_notebooks(folder: Path = NOTEBOOKS_DIR, only: list[str] | None = None) -> list[Path]:
    """The course notebooks ``NN_name.ipynb`` in order, optionally only those whose name starts with a prefix."""
    notebooks = sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))
    if only:
        notebooks = [p for p in notebooks if any(p.name.startswith(prefix) for prefix in only)]
        if not notebooks:
            raise SystemExit(f"error: no notebook in {folder} starts with {', '.join(only)}")
    return notebooks


def inject_parameters(nb: Any, params: dict[str, Any]) -> Any:
    """Add an ``injected-parameters`` cell right after the ``parameters`` cell (papermill's convention)."""
    import nbformat

    index = next((i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if index is None:
        raise ValueError("the notebook has no cell tagged 'parameters'")
    source = "# Parameters injected by helpers.course\n" + "\n".join(f"{k} = {v!r}" for k, v in params.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(index + 1, cell)
    return nb


def _images(nb: Any, out_dir: Path, stem: str, limit: int = 6) -> list[str]:
    """Save the notebook's PNG outputs (its plots) as files; return their names (the last ``limit``)."""
    found = [o["data"]["image/png"] for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
             if "image/png" in o.get("data", {})]
    names = []
    for i, data in enumerate(found[-limit:]):
        name = f"{stem}_{i + 1}.png"
        (out_dir / name).write_bytes(base64.b64decode(data))
        names.append(name)
    return names


def _progress(name: str, total: int, started: float):
    """Hook printing ``name: cell i/n, elapsed`` as cells finish (``i`` 1-based, as in the failure message)."""
    tty = sys.stdout.isatty()

    def hook(cell: Any, cell_index: int, **_: Any) -> None:
        line = f"  {name}: cell {cell_index + 1}/{total}, {time.time() - started:5.0f} s"
        print("\r" + line if tty else line, end="" if tty else "\n", flush=True)

    return hook


def run_notebook(path: Path, run_dir: Path, profile: str, timeout: int = 1800,
                 params: dict[str, Any] | None = None) -> NotebookResult:
    """Execute one notebook with the profile (and ``params``, e.g. ``{"DPO_LR": 5e-5}``) injected into its
    parameters cell; save the executed copy whatever happens."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    result = NotebookResult(name=path.stem)
    nb = inject_parameters(nbformat.read(path, as_version=4), {"PROFILE": profile, **(params or {})})
    metrics_dir = run_dir / "metrics"
    os.environ.update({METRICS_DIR_VAR: str(metrics_dir), NOTEBOOK_VAR: path.stem, "COURSE_PROFILE": profile,
                       PARAMS_VAR: ",".join(params or {})})  # config.budget keeps what was injected
    if profile == "cpu-tiny":
        os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # the kernel inherits it: see helpers/__init__.py
    started = time.time()
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.on_cell_executed = _progress(path.stem, len(nb.cells), started)
    running = {"cell": None}

    def note_start(cell: Any, cell_index: int, **_: Any) -> None:
        running["cell"] = cell_index

    client.on_cell_start = note_start
    try:
        client.execute()
        result.status = "ok"
    except CellTimeoutError:
        result.status = "failed"
        result.failed_cell = running["cell"] + 1 if running["cell"] is not None else None
        result.error = (f"cell {result.failed_cell} ran past the {timeout}-second limit per cell: allow more with "
                        f"`python -m helpers.course run --timeout {timeout * 2}`, or skip training with the shipped "
                        f"results (`--fallback`, or USE_FALLBACK = True in the notebook)")
    except (CellExecutionError, DeadKernelError) as err:
        result.status = "failed"
        failed = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and any(
            o.get("output_type") == "error" for o in c.get("outputs", []))]
        result.failed_cell = failed[0] + 1 if failed else None  # 1-based, as the progress line counts
        errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
        result.error = f"{errors[0]['ename']}: {errors[0]['evalue']}" if errors else str(err).strip().splitlines()[-1]
    finally:
        result.seconds = round(time.time() - started, 1)
        if sys.stdout.isatty():
            print()
        nbformat.write(portable_outputs(nb), run_dir / path.name)
        metrics_file = metrics_dir / f"{path.stem}.json"
        result.metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        result.images = _images(nb, run_dir, path.stem)
    return result


def portable_outputs(nb: Any) -> Any:
    """Outputs with this machine's paths made repo-relative (``helpers.config.repo_relative``), for sharing runs/."""
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            for key in ("text", "evalue", "traceback"):
                if key in output:
                    output[key] = repo_relative(output[key])
            for mime, value in output.get("data", {}).items():
                if mime.startswith("text/") or mime.endswith("json"):
                    output["data"][mime] = repo_relative(value)
    return nb


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def bench_results(path: Path = BENCH_RESULTS, section: str | None = None) -> str | None:
    """The benchmarks' latest figures (``bench/results.md``) without its title, or one benchmark's section.

    Taught in 08_scale_out. None when the file, or the section (e.g. ``"throughput"``), is not there yet.
    """
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    if section is not None:
        begin, end = f"<!-- {section}:begin -->", f"<!-- {section}:end -->"
        return text.split(begin, 1)[1].split(end, 1)[0].strip() if begin in text and end in text else None
    lines = text.splitlines()
    body = "\n".join(lines[1:] if lines and lines[0].startswith("# ") else lines).strip()
    return body or None


def write_report(results: list[NotebookResult], run_dir: Path, profile: str,
                 bench: Path = BENCH_RESULTS) -> tuple[Path, Path]:
    """Write ``report.md`` and a self-contained ``report.html`` (images embedded) for a run.

    Both end with the benchmarks' latest figures (``bench/results.md``, each with its machine and date) when present.
    """
    total = sum(r.seconds for r in results)
    benchmarks = bench_results(bench)
    mode = " · fallback: training cells loaded the shipped results" if os.environ.get("COURSE_FALLBACK") == "1" else ""
    md = [f"# Course run {run_dir.name}", "", f"Profile `{profile}` · {len(results)} notebooks · "
          f"{total / 60:.1f} min{mode}", "", "| notebook | status | runtime | key metrics |", "|---|---|---|---|"]
    for r in results:
        metrics = ", ".join(f"{k}={_fmt(v)}" for k, v in r.metrics.items())
        status = r.status if r.status != "failed" else f"FAILED at cell {r.failed_cell}: {r.error}"
        md.append(f"| {r.name} | {status} | {r.seconds:.0f} s | {metrics} |")

    ledger = ledger_markdown(run_dir / "metrics" / LEDGER_NAME)
    ledger_intro = ("Every read of the test split (and the hand-written tickets) in this run, with the question it "
                    "answered (`evaluate.test_split`). Choices are made on validation; a question read more than once "
                    "by one notebook is a second look at test.")
    md += ["", "## Test ledger", "", ledger_intro, "", ledger or "Nothing read a held-out split in this run."]
    for r in results:
        if r.images:
            md += ["", f"## {r.name}", ""] + [f"![{name}]({name})" for name in r.images]
    if benchmarks:
        md += ["", "## Benchmarks (bench/results.md: not measured by this run)", "",
               benchmarks.replace("\n## ", "\n### ")]
    md_path = run_dir / "report.md"
    md_path.write_text("\n".join(md) + "\n")

    rows = "".join(
        f"<tr class='{r.status}'><td>{html.escape(r.name)}</td><td>{html.escape(r.status)}"
        + (f"<br>cell {r.failed_cell}: {html.escape(r.error)}" if r.status == "failed" else "")
        + f"</td><td>{r.seconds:.0f} s</td><td>"
        + "<br>".join(f"{html.escape(k)} = {html.escape(_fmt(v))}" for k, v in r.metrics.items()) + "</td></tr>"
        for r in results)
    figures = "".join(
        f"<h2>{html.escape(r.name)}</h2>" + "".join(
            f"<img src='data:image/png;base64,{base64.b64encode((run_dir / n).read_bytes()).decode()}'>"
            for n in r.images) for r in results if r.images)
    page = (f"<!doctype html><meta charset='utf-8'><title>Course run {run_dir.name}</title><style>"
            "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}tr.failed{background:#fdd}"
            "img{max-width:48%;margin:4px}</style>"
            f"<h1>Course run {run_dir.name}</h1><p>Profile <code>{profile}</code> · {len(results)} notebooks · "
            f"{total / 60:.1f} min</p><table><tr><th>notebook</th><th>status</th><th>runtime</th>"
            f"<th>key metrics</th></tr>{rows}</table><h2>Test ledger</h2><p>{html.escape(ledger_intro)}</p>"
            f"<pre>{html.escape(ledger or 'Nothing read a held-out split in this run.')}</pre>{figures}"
            + (f"<h2>Benchmarks (bench/results.md: not measured by this run)</h2><pre>{html.escape(benchmarks)}</pre>"
               if benchmarks else ""))
    html_path = run_dir / "report.html"
    html_path.write_text(page)
    return md_path, html_path


def run_course(profile: str = "auto", only: list[str] | None = None, keep_going: bool = False,
               folder: Path = NOTEBOOKS_DIR, runs_dir: Path = RUNS_DIR, timeout: int = 1800,
               fallback: bool = False) -> int:
    """Run the notebooks in order; return 0 when all passed, 1 when one failed (named with its cell).

    ``fallback`` sets ``COURSE_FALLBACK=1`` for the notebooks: their training cells load the shipped results
    (``data/fallback/<profile>``) instead of training, as ``USE_FALLBACK = True`` does for one notebook.
    """
    profile = resolve_profile_name(profile)
    if fallback:
        fallback_dir(True, profile)  # fails here, before any notebook, when nothing is shipped for this profile
        os.environ[FALLBACK_ENV_VAR] = "1"
    notebooks = find_notebooks(folder, only)
    run_dir = runs_dir / datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    # stamped before the first notebook: the commit and machine the run started on (helpers.readme reads it)
    (run_dir / RUN_INFO).write_text(json.dumps(run_info(profile, fallback), indent=2) + "\n")
    print(f"course run -> {run_dir} (profile {profile}, {len(notebooks)} notebooks"
          f"{', fallback: no training' if fallback else ''})", flush=True)
    results: list[NotebookResult] = []
    for i, path in enumerate(notebooks, 1):
        print(f"[{i}/{len(notebooks)}] {path.name} ...", flush=True)
        result = run_notebook(path, run_dir, profile, timeout)
        results.append(result)
        print(f"[{i}/{len(notebooks)}] {path.name}: {result.status} in {result.seconds:.0f} s", flush=True)
        if result.status == "failed":
            print(f"error: {path.name} failed at cell {result.failed_cell}: {result.error}\n"
                  f"       executed copy: {run_dir / path.name}", flush=True)
            if not keep_going:
                break
    results += [NotebookResult(name=p.stem) for p in notebooks[len(results):]]
    md_path, html_path = write_report(results, run_dir, profile)
    (run_dir / "report.json").write_text(json.dumps([asdict(r) for r in results], indent=2, default=str))
    print(f"report: {md_path}\n        {html_path}", flush=True)
    return 0 if all(r.status == "ok" for r in results) else 1


# ------------------------------------------------------------------------------------------- the student version
STUDENT_DIRNAME, SOLUTIONS_DIRNAME = "student", "docs/solutions"  # under the repository root (or --out)
_CHECKER_RE = re.compile(r"check\.(exercise_\d\d_\d+)\(")


def _lines(text: str) -> list[str]:
    """A cell's source as the list of lines a saved notebook holds."""
    return text.splitlines(keepends=True)


def _tags(cell: dict[str, Any]) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def exercises_of(nb: dict[str, Any]) -> list[dict[str, str]]:
    """Each exercise of a notebook (JSON): heading, statement, solution, starter and checker name, in order."""
    found: list[dict[str, str]] = []
    for cell in nb["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown" and source.startswith("### Exercise"):
            heading, _, statement = source.partition("\n")
            found.append({"heading": heading.removeprefix("### ").strip(), "statement": statement.strip(),
                          "solution": "", "starter": "", "checker": ""})
        elif found and cell["cell_type"] == "markdown" and source.startswith("#"):
            found.append({})  # a later heading closes the last exercise
        elif found and found[-1] and "solution" in _tags(cell):
            found[-1].update(solution=source, starter=str(cell["metadata"].get("starter", "")))
        elif found and found[-1] and not found[-1]["checker"] and (match := _CHECKER_RE.search(source)):
            found[-1]["checker"] = match.group(1)
    return [ex for ex in found if ex]


def student_notebook(nb: dict[str, Any], name: str) -> dict[str, Any]:
    """The student version of a notebook (JSON): starters for solutions, no hidden checks, no outputs."""
    instructor = f"notebooks/{name}.ipynb"
    cells = []
    for cell in nb["cells"]:
        tags = _tags(cell)
        if "hidden-check" in tags:
            continue
        cell = json.loads(json.dumps(cell))  # a deep copy
        if "solution" in tags:
            starter = cell["metadata"].get("starter", "")
            if not starter.strip():
                raise SystemExit(f"error: {instructor}: a solution cell has no metadata 'starter': add the code "
                                 f"the student version shows instead (e.g. answer_1 = None  # what to compute)")
            cell["metadata"] = {"tags": ["answer"]}
            cell["source"] = _lines(starter)
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
            cell["metadata"].pop("execution", None)
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and source.startswith("# Colab bootstrap"):
            source = source.replace('os.chdir("/content/course/notebooks")', 'os.chdir("/content/course/student")')
        elif cell["cell_type"] == "markdown":
            source = source.replace(f"/blob/main/{instructor}", f"/blob/main/{STUDENT_DIRNAME}/{name}.ipynb")
            source = source.replace("this notebook (the instructor version)",
                                    f"the instructor version ([`{instructor}`](../{instructor}))")
        if not cells and cell["cell_type"] == "markdown" and source.startswith("# "):
            title, _, rest = source.partition("\n")
            note = (f"*Student version: the exercises' answer cells are empty. Solutions: the instructor version, "
                    f"[`{instructor}`](../{instructor}), and [`{SOLUTIONS_DIRNAME}/{name}.md`]"
                    f"(../{SOLUTIONS_DIRNAME}/{name}.md).*")
            source = f"{title}\n\n{note}\n{rest}"
        cell["source"] = _lines(source)
        cells.append(cell)
    return {**nb, "cells": cells}


def answer_key(nb: dict[str, Any], name: str) -> str:
    """The answer key of a notebook (JSON) as markdown: each exercise's statement, solution and checker."""
    title = "".join(nb["cells"][0]["source"]).partition("\n")[0].removeprefix("# ").strip()
    out = [f"# Answer key · {title}", "",
           f"Generated by `python -m helpers.course student` (`make student`) from "
           f"[`notebooks/{name}.ipynb`](../../notebooks/{name}.ipynb), the instructor version; do not edit it here. "
           f"The student version is [`{STUDENT_DIRNAME}/{name}.ipynb`](../../{STUDENT_DIRNAME}/{name}.ipynb).", ""]
    exercises = exercises_of(nb)
    if not exercises:
        out += ["This notebook has no checked exercises yet.", ""]
    for ex in exercises:
        if not ex["solution"]:
            raise SystemExit(f"error: notebooks/{name}.ipynb: {ex['heading']!r} has no cell tagged 'solution'")
        checker = f"`check.{ex['checker']}` (in `helpers/check/nb{name[:2]}.py`)" if ex["checker"] else "no checker"
        out += [f"## {ex['heading']}", "", ex["statement"], "", "Solution:", "", "```python",
                ex["solution"].rstrip(), "```", "", f"Checked by {checker}.", ""]
    return "\n".join(out).rstrip() + "\n"


def student_files(notebooks: Path = NOTEBOOKS_DIR) -> dict[str, str]:
    """Every generated file (path relative to the output root -> its text): student notebooks and answer keys."""
    files = {}
    for path in find_notebooks(notebooks):
        nb = json.loads(path.read_text(encoding="utf-8"))
        name = path.stem
        text = json.dumps(student_notebook(nb, name), indent=1, ensure_ascii=False) + "\n"
        files[f"{STUDENT_DIRNAME}/{name}.ipynb"] = text
        files[f"{SOLUTIONS_DIRNAME}/{name}.md"] = answer_key(nb, name)
    return files


def write_student(out: Path = REPO_ROOT, check: bool = False, notebooks: Path = NOTEBOOKS_DIR) -> list[str]:
    """Write (or, with ``check``, only compare) the generated files under ``out``; return the stale or missing ones."""
    files = student_files(notebooks)
    stale = []
    for rel, text in files.items():
        target = out / rel
        if target.is_file() and target.read_text(encoding="utf-8") == text:
            continue
        stale.append(rel)
        if not check:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
    for folder, suffix in ((STUDENT_DIRNAME, ".ipynb"), (SOLUTIONS_DIRNAME, ".md")):
        for extra in sorted((out / folder).glob(f"[0-9][0-9]_*{suffix}")):
            rel = f"{folder}/{extra.name}"
            if rel not in files:  # its notebook is gone or renamed
                stale.append(rel)
                if not check:
                    extra.unlink()
    return stale


def _output_folder_problem(out: Path) -> str | None:
    """Why the student files cannot be written under ``out`` (None when they can), found before anything is written."""
    for folder in (out, out / "docs", out / STUDENT_DIRNAME, out / SOLUTIONS_DIRNAME):
        problem = unwritable_folder(folder)
        if problem:
            return f"{out}: {problem}: give a folder you can write to"
    return None


def _prefix(text: str) -> str:
    """An argparse type: a non-empty notebook name prefix (an empty one would match every notebook)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty prefix matches every notebook: give one like 02")
    return text.strip()


MAX_CELL_SECONDS = 24 * 3600  # a cell allowed more than a day is a typo, and a hung kernel would never be reported


def _seconds(text: str) -> int:
    """An argparse type: a whole number of seconds from 1 to a day."""
    if not text.strip().isdigit() or not 1 <= int(text) <= MAX_CELL_SECONDS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds from 1 to {MAX_CELL_SECONDS} "
                                         f"(a day)")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``run``, ``list``, ``readme`` and ``student``."""
    parser = argparse.ArgumentParser(prog="python -m helpers.course", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute the notebooks in order and write a report")
    run.add_argument("--profile", default="auto", help="cpu-tiny, cpu, t4, l4, a100, h100 or auto (default)")
    run.add_argument("--only", nargs="+", metavar="NN", type=_prefix,
                     help="run only notebooks starting with these prefixes")
    run.add_argument("--keep-going", action="store_true", help="run the remaining notebooks after a failure")
    run.add_argument("--timeout", type=_seconds, default=1800, help="seconds allowed per cell")
    run.add_argument("--fallback", action="store_true",
                     help="skip the training cells: use the results shipped in data/fallback/<profile> "
                          "(cpu-tiny: all; cpu: 03's adapter)")
    sub.add_parser("list", help="list the notebooks")
    readme = sub.add_parser("readme", help="write a run's results into README.md (and, for a complete cpu-tiny or cpu run, "
                                           "the notebooks' runtimes)")
    readme.add_argument("run_dir", nargs="?", type=path_arg, help="runs/<timestamp> (default: the newest run)")
    readme.add_argument("--note", default="", help="what the numbers need beside them, e.g. 'make test ran beside it'")
    student = sub.add_parser("student", help="write the student notebooks (student/) and answer keys "
                                             "(docs/solutions/) from notebooks/")
    student.add_argument("--out", type=path_arg, default=REPO_ROOT,
                         help="folder that receives student/ and docs/solutions/ (default: the repository root)")
    student.add_argument("--check", action="store_true",
                         help="write nothing; exit 1 naming every stale or missing generated file")
    args = parser.parse_args(argv)
    if args.command == "list":
        for path in find_notebooks():
            print(path.name)
        return 0
    if args.command == "readme":
        try:
            changed = update_readme(args.run_dir or latest_run(RUNS_DIR), note=args.note)
        except ReadmeError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        for path in changed:
            print(f"written: {path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path}")
        if any(p.suffix == ".ipynb" for p in changed):
            print("notebooks changed: run `make student` to regenerate the student version")
        return 0
    if args.command == "student":
        problem = None if args.check else _output_folder_problem(args.out)
        if problem:
            print(f"error: --out {problem}", file=sys.stderr)
            return 2
        stale = write_student(args.out, check=args.check)
        verb = "stale or missing (run `make student`)" if args.check else "written"
        for rel in stale:
            print(f"{verb}: {rel}")
        print(f"{len(stale)} generated file(s) {verb}" if stale else "the student version is up to date")
        return 1 if stale and args.check else 0
    try:
        return run_course(args.profile, args.only, args.keep_going, timeout=args.timeout, fallback=args.fallback)
    except ProfileError as err:
        print(f"error: {err}")
        return 2


if __name__ == "__main__":
    from helpers.cli import run as run_cli

    sys.exit(run_cli(main))
