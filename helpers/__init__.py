"""Helpers for the fine-tuning course: one module per stage of the course.

Module names are the course's table of contents: ``config``, ``env``, ``models`` (00_setup), ``decide``, ``rag``
(01_decide), ``data`` (02_dataset), ``memory``, ``train`` (03_qlora_training), ``evaluate`` (04_evaluation; 05_iterate adds tracked runs to
``train``), ``export`` (06_export: merge, verification, model card, inference, the OpenAI path),
and ``course`` (the runner). Around them: ``colab`` (installs and paths on Colab), ``cli`` (the command-line wrapper) and
``build`` (the builders of the shipped dataset and knowledge base, for maintainers). Nothing runs on import.
"""

__version__ = "0.1.0"
