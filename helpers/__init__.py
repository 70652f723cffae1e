"""Helpers for the fine-tuning course: one module per stage of the course.

Module names are the course's table of contents: ``config``, ``env``, ``models`` (00_setup), ``decide``, ``rag``
(01_decide), ``data`` (02_dataset), ``memory``, ``train`` (03_qlora_training), ``evaluate`` (04_evaluation; 05_iterate adds tracked runs to
``train``), ``export`` (06_export: merge, verification, model card, inference, the OpenAI path),
and ``course`` (the runner). Around them: ``colab`` (installs and paths on Colab), ``cli`` (the command-line wrapper) and
``build`` (the builders of the shipped dataset and knowledge base, for maintainers). Importing it runs nothing but
one setting: ``OMP_WAIT_POLICY=PASSIVE`` when torch is not loaded yet (OpenMP reads it once, as torch loads).
"""

import os as _os
import sys as _sys

__version__ = "0.1.0"

# torch's OpenMP threads spin while they wait for work. With another job on a 2-core machine a QLoRA step ran ~30x
# slower (7.9 s vs 0.43 s); passive waiting costs ~30% on quiet cores. The runner, `make` and the tests set it for
# the processes they start; this covers a learner's own kernel when the notebook imports helpers before torch.
if "torch" not in _sys.modules:
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
