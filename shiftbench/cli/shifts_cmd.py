"""CLI commands (placeholder until implemented)."""

from shiftbench.cli.app import app  # noqa: F401
