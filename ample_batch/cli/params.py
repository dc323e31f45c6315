"""Click parameter types for our value grammars, shared by every command."""

from __future__ import annotations

import os
from typing import Any

import click

from ..errors import InputError
from ..limits import Limit, parse_duration, parse_limit
from ..recheck import RecheckPolicy, parse_recheck


class LimitType(click.ParamType):  # type: ignore[type-arg]
    name = "COUNT/PERIOD"

    def convert(self, value: Any, param: Any, ctx: Any) -> Limit:
        if isinstance(value, Limit):
            return value
        try:
            return parse_limit(str(value))
        except InputError as exc:
            self.fail(str(exc), param, ctx)


class DurationType(click.ParamType):  # type: ignore[type-arg]
    name = "DURATION"

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        if isinstance(value, float):
            return value
        try:
            return parse_duration(str(value))
        except InputError as exc:
            self.fail(str(exc), param, ctx)


class RecheckType(click.ParamType):  # type: ignore[type-arg]
    name = "VERDICT=DURATION,..."

    def convert(self, value: Any, param: Any, ctx: Any) -> RecheckPolicy:
        if isinstance(value, RecheckPolicy):
            return value
        try:
            return parse_recheck(str(value))
        except InputError as exc:
            self.fail(str(exc), param, ctx)


class ColumnNameType(click.ParamType):  # type: ignore[type-arg]
    """A column name for an option whose value is optional (`--sent-column [NAME]`).

    Such an option takes the next word as its value, so `--sent-column leads.csv` (the option
    before INPUT) would take the input file for the name and then miss INPUT: that is said
    plainly instead.
    """

    name = "NAME"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        text = str(value)
        flag = param.opts[-1] if param is not None and param.opts else "the option"
        if os.path.isfile(text) and "." in os.path.basename(text):
            self.fail(
                f"{text!r} is a file, not a column name: give {flag} after INPUT, "
                f"or as {flag}=NAME",
                param,
                ctx,
            )
        return text


TYPED = "ample_batch.typed"
"""`ctx.meta` key of `TypedSpellings`: {option name: the spelling typed}."""


class TypedSpellings(click.Command):
    """A command that keeps in `ctx.meta[TYPED]` how each option was spelled on its command
    line (`-o` or `--output`): click does not, and a message names the option the user typed."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[TYPED] = typed_spellings(self.params, args)
        return super().parse_args(ctx, args)


def typed_spellings(params: list[click.Parameter], args: list[str]) -> dict[str, str]:
    """{option name: its spelling last typed in `args`} (the last one is the value click keeps).

    >>> output = click.Option(["-o", "--output"])
    >>> typed_spellings([output], ["-o", "a.html", "--output=b.html"])
    {'output': '--output'}
    """
    options = [param for param in params if isinstance(param, click.Option)]
    typed: dict[str, str] = {}
    words = iter(args)
    for word in words:
        if word == "--":
            break  # the rest are arguments, even when they look like options
        for option in options:
            for spelling in (*option.opts, *option.secondary_opts):
                if not _spells(word, spelling):
                    continue
                if option.name is not None:
                    typed[option.name] = spelling
                if word == spelling and not option.is_flag and not option.count:
                    next(words, None)  # its value, which may look like an option itself
    return typed


def _spells(word: str, spelling: str) -> bool:
    """`word` is `spelling`, with or without its value attached (`--output=x`, `-ox`)."""
    if word == spelling:
        return True
    if spelling.startswith("--"):
        return word.startswith(spelling + "=")
    return not word.startswith("--") and word.startswith(spelling)
