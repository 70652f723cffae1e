"""``bench/results.md``: each benchmark's latest figures, one section per benchmark, with the machine and the date.

Every benchmark calls :func:`write_section` at the end of a run; it replaces that benchmark's section (between
``<!-- NAME:begin -->`` and ``<!-- NAME:end -->``) and leaves the others. The course report
(``helpers.course``) copies the file into ``runs/<timestamp>/report.md`` when it exists.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import time
from pathlib import Path
from typing import Sequence

RESULTS = Path(__file__).resolve().parent / "results.md"
HEADER = ("# Benchmark results\n\nLatest figures of each benchmark (`bench/*.py`), written by the benchmark itself "
          "with the machine it ran on and the date. Re-run a benchmark to replace its section.\n")
NAME = re.compile(r"[a-z0-9_]+")


def machine() -> str:
    """The machine a benchmark ran on, in words: CPU model and cores, torch threads, the GPU when there is one."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} cores"
    try:
        import torch

        text += f", torch {torch.__version__} ({torch.get_num_threads()} threads)"
        if torch.cuda.is_available():
            text += f", GPU {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return text


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A markdown table's lines."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]


def write_section(name: str, title: str, body: Sequence[str], command: str, path: Path = RESULTS,
                  where: str | None = None, when: str | None = None) -> Path:
    """Replace benchmark ``name``'s section of ``path`` with ``body``, stamped with the machine, the date, the command.

    ``where`` and ``when`` default to :func:`machine` and today's UTC date (tests pass their own).
    """
    if not NAME.fullmatch(name):
        raise ValueError(f"section name {name!r}: use lower-case letters, digits and _")
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    stamp = f"{when or time.strftime('%Y-%m-%d', time.gmtime())} on {where or machine()}; command: `{command}`"
    section = "\n".join([begin, f"## {title}", "", stamp, "", *body, end])
    old = path.read_text(encoding="utf-8") if path.is_file() else HEADER
    if begin in old and end in old:
        new = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _m: section, old, flags=re.DOTALL)
    else:
        new = old.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(new, encoding="utf-8")
    return path


def command_line(argv: Sequence[str] | None, script: str) -> str:
    """The command that produced a section: ``python bench/NAME.py ARGS`` (``argv`` None: this process's own)."""
    import shlex
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join(["python", f"bench/{script}", *map(shlex.quote, args)])


def child_result(args: Sequence[str], name: str, env: dict[str, str] | None = None, cwd: str | Path | None = None
                 ) -> dict:
    """Run one measurement in a fresh process and return the JSON of its last ``RESULT {...}`` line on stdout.

    A benchmark measures each case in its own process (clean memory and thread state); a failed case raises with the
    tail of the child's stderr, named by ``name``.
    """
    out = subprocess.run(list(args), capture_output=True, text=True, env=env, cwd=cwd)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"{name} failed:\n{out.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):])
