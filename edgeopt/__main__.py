"""`python -m edgeopt ...` is the `edgeopt` command."""

from edgeopt.toolkit.cli import entry_point

entry_point()
