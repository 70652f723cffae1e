"""``python -m helpers.memory ...``: :func:`helpers.memory.command.main`."""

import sys

from helpers.cli import run
from helpers.memory.command import main

sys.exit(run(main))
