"""The `edgeopt` command (docs/cli.md): a thin shell over the stages' Python API.

main.py assembles the app from the command groups (stages.py: run, prune, quantize, compile,
targets; board.py and qemu.py: deploy, bench, doctor, board ...; report.py; sweep.py); options.py
declares the option types and output helpers they share. Nothing here imports this package's
__init__ back, and nothing outside the entry points imports the CLI (import-linter contract)."""

from .main import entry_point, main

__all__ = ["entry_point", "main"]
