"""Helpers for the fine-tuning course: one module per stage of the course.

Module names are the course's table of contents: ``config``, ``env``, ``models``, ``data``, ``decide``, ``rag``,
``memory``, ``train``, ``evaluate``, ``export``, ``plots``, ``check``, ``course``. Nothing runs on import.
"""

__version__ = "0.1.0"
