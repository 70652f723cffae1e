"""What every checker shares: one way to say pass or hint, and a record of the outcomes. Taught in 00."""

from __future__ import annotations

RESULTS: dict[str, bool] = {}  # exercise key ("03_2") -> whether the last check passed


def report(key: str, passed: bool, hint: str, done: str = "") -> bool:
    """Print ``exercise key: passed`` (with ``done``, what the answer shows) or ``not yet`` with ``hint``; return it.

    A hint points at the method, never at the value: a checker must not print its expected answer.
    """
    RESULTS[key] = bool(passed)
    if passed:
        print(f"exercise {key}: passed" + (f" - {done}" if done else ""))
    else:
        print(f"exercise {key}: not yet - {hint}")
    return bool(passed)


def unanswered(answer: object) -> bool:
    """True for the student notebook's starter value (``None`` or ``...``): nothing written yet."""
    return answer is None or answer is Ellipsis
