"""`python -m ample_batch` is the same as the `ample-batch` command."""

from .cli.main import entry

entry()
