"""What every ``python -m helpers.*`` command does at its edges: a closed pipe, Ctrl-C, a bug. Taught in 00_setup.

A command's ``main`` prints one-line errors for the problems it knows; :func:`run` makes the rest one line too:
``... | head -1`` ends quietly, Ctrl-C exits 130, and an unexpected exception prints what failed and how to see the
traceback (``COURSE_TRACEBACK=1``) instead of thirty lines of it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

from helpers.config import expand_user

TRACEBACK_VAR = "COURSE_TRACEBACK"


def run(main: Callable[[], int | None]) -> int:
    """Run a command's ``main`` and turn a broken pipe, Ctrl-C or a bug into an exit code and at most one line."""
    try:
        code = main()
        sys.stdout.flush()  # a reader that went away shows up here, not at interpreter exit
        return int(code or 0)
    except BrokenPipeError:
        # The reader (head, less) closed the pipe: stop quietly; point stdout at devnull so the final flush is silent.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a command ended by a closed pipe
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SystemExit:
        raise
    except Exception as err:  # noqa: BLE001 - the promise is: never a traceback; the variable shows it on demand
        if os.environ.get(TRACEBACK_VAR):
            raise
        if isinstance(err, OSError) and err.strerror:
            # The machine said no (a path that cannot be read or written, a full disk): not a bug; one line, the path.
            where = f"{err.filename}: " if err.filename else ""
            print(f"error: {where}{err.strerror}: check the path, its permissions and free space", file=sys.stderr)
            return 2
        reason = str(err).splitlines()[0][:300] if str(err) else ""
        print(f"error: unexpected {type(err).__name__}{': ' + reason if reason else ''} (a bug in helpers: please "
              f"report it; {TRACEBACK_VAR}=1 shows the traceback)", file=sys.stderr)
        return 3


def path_arg(text: str) -> Path:
    """An argparse ``type`` for a file or folder argument: ``~`` expanded (as a shell would, also when quoted or in a
    config), and an empty string refused instead of meaning the current folder."""
    import argparse

    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path: name a file or folder")
    try:
        return expand_user(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
