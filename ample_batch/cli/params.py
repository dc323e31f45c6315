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
