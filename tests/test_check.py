"""Every exercise checker accepts its solution, rejects plausible wrong answers and the student's starter value."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from helpers import check

HERE = Path(__file__).parent


def _cases() -> dict:
    cases = {}
    for path in sorted(HERE.glob("check_cases_*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for key, case in module.CASES.items():
            assert key not in cases, f"{key} has cases in two files"
            cases[key] = case
    return cases


CASES = _cases()
CHECKERS = {name.removeprefix("exercise_"): getattr(check, name) for name in check.__all__
            if name.startswith("exercise_")}


def test_every_checker_has_a_case():
    assert CHECKERS, "helpers.check has no exercise checkers"
    assert set(CHECKERS) == set(CASES), f"checkers without cases: {set(CHECKERS) - set(CASES)}; " \
                                        f"cases without checkers: {set(CASES) - set(CHECKERS)}"


@pytest.mark.parametrize("key", sorted(CASES))
def test_checker(key, capsys):
    case, checker = CASES[key], CHECKERS[key]
    ctx = case.context()
    expected = case.solution(*ctx)
    assert checker(expected, *ctx) is True, f"exercise {key}: the solution is rejected"
    assert check.RESULTS[key] is True
    assert case.wrong, f"exercise {key}: no wrong answer to reject"
    for wrong in case.wrong:
        answer = wrong(*ctx)
        assert checker(answer, *ctx) is False, f"exercise {key}: the wrong answer {answer!r} is accepted"
    assert checker(None, *ctx) is False, f"exercise {key}: the student's starter (None) is accepted"
    printed = capsys.readouterr().out
    assert "not yet" in printed and "passed" in printed
    if isinstance(expected, (int, float, str)) and not isinstance(expected, bool) and len(str(expected)) >= 3:
        hints = [line for line in printed.splitlines() if "not yet" in line]
        assert not any(str(expected) in line for line in hints), f"exercise {key}: a hint gives the answer away"
