"""``python -m helpers.train --config configs/<profile>.yaml [--resume]``: :func:`helpers.train.script.main`."""

import sys

from helpers.cli import run
from helpers.train.script import main

sys.exit(run(main))
