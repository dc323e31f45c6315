"""The Python API's errors in Python's words: `api_key=` where the CLI would say `--api-key`.

The stages raise one message for both front ends, worded for the command line, where most
users meet it. Every public function of the Python API (validate, estimate, status, cancel,
the frame and list twins) runs inside `python_words`, which rewrites the options it names
into the keywords the caller passes instead, and the commands into calls:

    >>> in_python_words("no API key: set AMPLEMARKET_API_KEY or pass --api-key (or try --simulate)")
    'no API key: set AMPLEMARKET_API_KEY or pass api_key= (or try simulate=True)'
    >>> in_python_words("--chunk-size 200,000 is above the API's maximum; see `ample-batch status`")
    "chunk_size=200,000 is above the API's maximum; see `ample_batch.status()`"

The command line calls the same stages through the `run_*` functions, which keep its words.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import TypeVar

from ..errors import AmpleBatchError

KEYWORDS = frozenset(
    {
        "api_key",
        "base_url",
        "cache_ttl",
        "chunk_size",
        "email_column",
        "encoding",
        "max_runtime",
        "output",
        "rate_limit",
        "recheck",
        "report",
        "sent_column",
        "sheet",
        "state_dir",
        "state_schema",
        "state_url",
        "usage_limit",
    }
)
"""Options that take a value, and the keyword each is in Python (its dashes as underscores)."""

FLAGS = frozenset({"simulate", "split"})
"""Options that are switches: `--simulate` is `simulate=True`."""

COMMANDS = frozenset({"cancel", "estimate", "status", "validate"})
"""Commands that are functions of the same name in `ample_batch`."""

# An option, then what its message gave it: `--name=VALUE`, or a space and a token that reads
# as a value (quoted, a number, a NAME placeholder, or a path or name ending at `:` or `)`),
# kept apart from the prose that follows a bare mention ("check --usage-limit and ...").
_OPTION = re.compile(
    r"(?<![\w/.-])--(?P<name>[a-z][a-z-]*)(?![\w/-]|\.\w)"
    r"(?P<joint>=| (?=['\"\d]|[A-Z][A-Z_]*\b|[^\s()]+[:)]))?"
)
# `-o`, the output's short option, as the file checks name it ("choose another -o").
_SHORT_OUTPUT = re.compile(r"(?<![\w/.-])-o(?= |$|[;,)])")
_COMMAND = re.compile(r"`ample-batch (?P<name>[a-z]+)(?P<args>(?: [^`\s]+)*)`")


def in_python_words(message: str, *, keep: tuple[str, ...] = ()) -> str:
    """`message` with the CLI's options as keywords and its commands as calls; the texts in
    `keep` (the paths the message names) are left exactly as they are, whatever they hold.

    >>> in_python_words("a --split.csv: is the input file; choose another -o")
    'a --split.csv: is the input file; choose another output='
    >>> in_python_words("--report my --x.html: is a directory", keep=("my --x.html",))
    'report=my --x.html: is a directory'
    """
    parts = re.split("(" + "|".join(map(re.escape, keep)) + ")", message) if keep else [message]
    worded = "".join(
        part
        if i % 2
        else _COMMAND.sub(_call, _SHORT_OUTPUT.sub("output=", _OPTION.sub(_keyword, part)))
        for i, part in enumerate(parts)
    )
    for text in keep:  # "--report PATH" is "report=PATH", the path kept as it was
        worded = worded.replace(f"= {text}", f"={text}")
    return worded


def _keyword(match: re.Match[str]) -> str:
    name = match["name"].replace("-", "_")
    if name in FLAGS:
        # A switch takes no value: what followed it is prose, kept as it was.
        return f"{name}=True{match['joint'] or ''}"
    if name in KEYWORDS:
        # Right before punctuation it is named, not passed: "sent_column: the name is blank".
        rest = match.string[match.end() :]
        return name if not match["joint"] and rest[:1] in tuple(":;,)") else f"{name}="
    return match[0]  # a CLI-only option (--json, --quiet): no keyword to name


def _call(match: re.Match[str]) -> str:
    name = match["name"]
    if name not in COMMANDS:
        return match[0]
    args = ", ".join(repr(arg) for arg in match["args"].split())
    return f"`ample_batch.{name}({args})`"


T = TypeVar("T")


def with_python_warnings(result: T) -> T:
    """`result` (a Summary, an Estimate) with its `warnings` in Python's words, in place."""
    warnings = getattr(result, "warnings", None)
    if isinstance(warnings, list):
        warnings[:] = [in_python_words(w) if isinstance(w, str) else w for w in warnings]
    return result


def reword(exc: AmpleBatchError) -> None:
    """Rewrite `exc`'s message (and the warnings of the summary it carries) in place: its
    type, attributes, cause and traceback stay as they were."""
    path = getattr(exc, "path", None)  # a PathRefused names its path: never reworded
    keep = tuple(str(p) for p in {path, getattr(path, "name", None)} if p)
    if exc.args and isinstance(exc.args[0], str):
        exc.args = (in_python_words(exc.args[0], keep=keep), *exc.args[1:])
    with_python_warnings(getattr(exc, "summary", None))


@contextlib.contextmanager
def python_words() -> Iterator[None]:
    """Around a public function's body: our errors leave it in Python's words."""
    try:
        yield
    except AmpleBatchError as exc:
        reword(exc)
        raise
