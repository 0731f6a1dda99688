"""The `jobtui` command line: one module per command group over the engine (see main.py)."""

from jobtui.cli.main import cli, main

__all__ = ["cli", "main"]
