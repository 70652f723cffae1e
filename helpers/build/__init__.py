"""Builders of the course's shipped files: what maintainers run, not what learners import.

- ``dataset``: ``data/tickets/`` (``python -m helpers.data build``), byte for byte from fixed seeds.
- ``kb``: the knowledge base ``data/kb/`` (``python -m helpers.data.kb build``).

Each builder regenerates committed files exactly; the tests rebuild them and compare bytes. Nothing runs on import.
"""
