"""The instructor guide stays true: every notebook is scheduled, every quoted error message still exists."""

from __future__ import annotations

import re

import pytest

from helpers.config import NOTEBOOKS_DIR, REPO_ROOT

GUIDE = REPO_ROOT / "docs" / "instructor.md"
# The fixed part of each message an "if X breaks, do Y" card quotes; each must be in the guide and in helpers/.
QUOTED = (
    "has not run with this profile yet",
    "this Colab runtime is new",
    "has no native bf16: profile",
    "with these changes it needs",
    "the chat template has no {% generation %} markers, so assistant-only masking is impossible",
    "is not in the local cache and HF_HUB_OFFLINE=1",
    "config.json missing",
    "USE_FALLBACK: training cells load results from",
    "was made with other settings",
    "USE_FALLBACK is on, but the course ships fallback results for",
)


def helpers_source() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in (REPO_ROOT / "helpers").rglob("*.py"))


@pytest.mark.parametrize("fragment", QUOTED)
def test_every_quoted_message_is_in_the_guide_and_in_the_code(fragment):
    source = re.sub(r"\"\s*\n\s*f?\"", "", helpers_source())  # join implicitly concatenated string literals
    assert fragment in GUIDE.read_text(encoding="utf-8"), f"the guide no longer quotes {fragment!r}"
    assert fragment in source, f"helpers/ no longer prints {fragment!r}: update docs/instructor.md"


def test_every_notebook_has_a_time_and_a_learning_goal():
    guide = GUIDE.read_text(encoding="utf-8")
    for path in sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")):
        # notebook | cpu-tiny (trains) | cpu-tiny --fallback | cpu (trains) | GPU profiles: the CPU columns are written
        # by `course readme`
        assert re.search(rf"^\| {path.stem} \| [^|]+ \| [^|]+ \| [^|]+ \| [^|]+ \|$", guide, re.M), \
            f"{path.stem}: no row in Times"
        assert f"- **{path.stem}**:" in guide, f"{path.stem}: no learning goal"
