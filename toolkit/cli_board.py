"""CLI commands that talk to boards: deploy, bench, board setup/info/clean, doctor.

Registered on the main `app` by importing this module from toolkit.cli."""
from __future__ import annotations

from .cli import app  # noqa: F401  (commands are added with @app.command below)
