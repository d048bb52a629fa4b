"""Click options made from an options table's ``Cli`` metadata, and the values turned back into fields."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import click

from kiln.api.options import OptionField
from kiln.errors import UsageError

F = TypeVar("F", bound=Callable[..., Any])

_PATHS = {
    "file": click.Path(exists=True, dir_okay=False),
    "dir": click.Path(exists=True, file_okay=False),
    "new-dir": click.Path(file_okay=False),
}


def click_option(row: OptionField) -> Callable[[F], F]:
    """One click option for a row of an options table."""
    name, cli = row.name, row.cli
    kwargs: dict[str, Any] = {"help": cli.help, "metavar": cli.metavar, "show_default": cli.show_default}
    if cli.show_default:
        kwargs["default"] = row.default
    if cli.flag:
        kwargs["is_flag"] = True
        if cli.negation:
            both = f"{cli.flags[0]}/{cli.negation}"
            return click.option(both, name, default=bool(row.default), **kwargs)
    elif cli.boolean_value:
        kwargs.update(type=bool, is_flag=False, flag_value=True, default=False)
    elif cli.choices:
        kwargs["type"] = click.Choice(cli.choices)
    elif cli.path:
        kwargs["type"] = _PATHS[cli.path]
    if cli.multiple or cli.pairs:
        kwargs["multiple"] = True
    if cli.required:
        kwargs["required"] = True
    return click.option(*cli.flags, name, **kwargs)


def click_options(rows: Iterable[OptionField]) -> Callable[[F], F]:
    """Decorate a command with an option per row, in the table's order."""
    decorators = [click_option(row) for row in rows]

    def apply(func: F) -> F:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply


def field_values(rows: Iterable[OptionField], values: Mapping[str, Any]) -> dict[str, Any]:
    """The parsed values of ``rows`` as the options' types want them: KEY=VALUE lists become mappings,
    values the user did not give keep the table's default."""
    result: dict[str, Any] = {}
    for row in rows:
        name, cli = row.name, row.cli
        value = values.get(name)
        if cli.pairs:
            result[name] = pairs(cli.flags[-1], value or ())
        elif value is not None and value != ():
            result[name] = tuple(value) if cli.multiple else value
    return result


def pairs(option: str, values: Sequence[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings as a mapping; UsageError naming the option for anything else."""
    found: dict[str, str] = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{option} {value!r} is not KEY=VALUE")
        found[key.strip()] = rest
    return found
