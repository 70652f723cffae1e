"""Test-wide settings: offline, CPU profile, and a guard against a run that collected (almost) nothing."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download during tests, notebooks included
os.environ.setdefault("COURSE_PROFILE", "cpu-tiny")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Waiting OpenMP threads sleep instead of spinning (set before torch loads; notebook kernels inherit it): on a busy
# 2-core machine spinning threads made training steps ~30x slower, which is how CI timed out.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def pytest_sessionfinish(session, exitstatus):
    """With COURSE_MIN_TESTS set (make test sets it), fewer collected tests than that is a failure, not a pass."""
    minimum = int(os.environ.get("COURSE_MIN_TESTS", "0"))
    if minimum and session.testscollected < minimum and exitstatus == 0:
        print(f"\nerror: only {session.testscollected} tests collected, expected at least {minimum}")
        session.exitstatus = 1
