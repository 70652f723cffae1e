"""The shape of an exercise checker's test case (``tests/check_cases_*.py`` define ``CASES``; test_check runs them)."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple


class Case(NamedTuple):
    """``context()`` builds the checker's arguments after the answer; ``solution(*ctx)`` is the right answer;
    each of ``wrong`` gives a plausible wrong one (a common mistake), which the checker must reject."""

    context: Callable[[], tuple[Any, ...]]
    solution: Callable[..., Any]
    wrong: list[Callable[..., Any]]
