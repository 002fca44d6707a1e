"""edgeopt's host side: data, models, prune, quantize, export, deploy, report and the CLI."""

__version__ = "0.1.0"
