"""The pipeline suites' fixtures: `state_backend` runs a test on each state backend."""

from cli_backends import state_backend

__all__ = ["state_backend"]
