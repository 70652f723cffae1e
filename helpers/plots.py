"""Figures outside and inside a notebook: matplotlib on the Agg backend in a script or CI (no notebook imports it).

Every helper that draws (loss curves, the NF4 levels, memory bars, a confusion matrix, decision plots) gets pyplot from
:func:`pyplot`, so a script or a test never opens a window and a notebook shows its figures inline.
"""

from __future__ import annotations

from typing import Any


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def pyplot() -> Any:
    """matplotlib.pyplot, on the non-interactive Agg backend outside a notebook (a script, CI)."""
    import matplotlib

    if not _in_notebook():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


_pyplot = pyplot  # the name helpers.train exported before the split
