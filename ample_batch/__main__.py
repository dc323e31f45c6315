"""`python -m ample_batch` is the same as the `ample-batch` command."""

from .cli import entry

entry()
