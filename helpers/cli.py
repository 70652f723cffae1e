"""What every ``python -m helpers.*`` command does at its edges: a closed pipe, Ctrl-C, a bug. Taught in 00_setup.

A command's ``main`` prints one-line errors for the problems it knows; :func:`run` makes the rest one line too:
``... | head -1`` ends quietly, Ctrl-C exits 130, and an unexpected exception prints what failed and how to see the
traceback (``COURSE_TRACEBACK=1``) instead of thirty lines of it.
"""

from __future__ import annotations

import os
import sys
from typing import Callable

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
        reason = str(err).splitlines()[0][:300] if str(err) else ""
        print(f"error: unexpected {type(err).__name__}{': ' + reason if reason else ''} (a bug in helpers: please "
              f"report it; {TRACEBACK_VAR}=1 shows the traceback)", file=sys.stderr)
        return 3
