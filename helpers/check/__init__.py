"""Exercise checkers: ``check.exercise_03_2(answer, ...)`` prints a pass or a hint, never the solution. Taught in 00.

Each notebook's checkers live in ``helpers/check/nbNN.py`` as ``exercise_NN_k`` functions; this package exports
them all. A checker compares the learner's answer with what it computes itself from the notebook's objects (so it
holds on every profile), records the outcome in :data:`RESULTS` and returns it.
"""

from __future__ import annotations

import importlib
import pkgutil

from helpers.check._core import RESULTS, report

__all__ = ["RESULTS", "report"]

for _info in pkgutil.iter_modules(__path__):
    if _info.name.startswith("nb"):
        _module = importlib.import_module(f"{__name__}.{_info.name}")
        for _name in dir(_module):
            if _name.startswith("exercise_"):
                globals()[_name] = getattr(_module, _name)
                __all__.append(_name)
