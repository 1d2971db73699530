"""The ``settings`` command: every ``OPTSCRIBE_*`` variable, its value in force and what it does.

``optscribe settings`` shows the values this process would run with (secrets masked), so a
deployment can be checked before it starts; ``--markdown`` prints the reference table that
``docs/settings.md`` holds (a test keeps the two equal).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import typer
from pydantic import AliasChoices, SecretStr
from pydantic_core import PydanticUndefined

__all__ = ["SettingRow", "markdown", "register", "rows"]

MARKDOWN_HEAD = """\
# Settings

Every setting is an environment variable (a `.env` file is not read: export them, or put them in
the service's environment). An empty variable counts as unset; `none` clears a setting that has a
default. `optscribe settings` prints the values in force.

This page is generated: `optscribe settings --markdown > docs/settings.md`.
"""


@dataclass(frozen=True)
class SettingRow:
    field: str
    env: tuple[str, ...]  # the variable names that set it, the first one preferred
    default: str
    description: str


def _env_names(name: str, alias: Any) -> tuple[str, ...]:
    if isinstance(alias, AliasChoices):
        return tuple(str(c) for c in alias.choices)
    if isinstance(alias, str):
        return (alias,)
    return (f"OPTSCRIBE_{name.upper()}",)


def _show(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        return "(set, hidden)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) if value else "(empty)"
    return str(value)


def rows() -> list[SettingRow]:
    """One row per setting, in the order the Settings class declares them."""
    from .settings import Settings

    out: list[SettingRow] = []
    for name, info in Settings.model_fields.items():
        if info.default_factory is not None:
            default = _show(info.default_factory())  # type: ignore[call-arg]
        elif info.default is PydanticUndefined:
            default = "required"
        else:
            default = _show(info.default)
        out.append(SettingRow(name, _env_names(name, info.validation_alias), default, info.description or ""))
    return out


MARKDOWN_TAIL = """
Read outside the settings, by one command or tool each:

| variable | what it does |
|---|---|
| `OPTSCRIBE_PYOMO_SOLVER` | the `pyomo` backend's solver (default `highs`; also glpk, cbc, ...) |
| `OPTSCRIBE_BENCHMARKS_DIR` | `optscribe eval`: the benchmarks (default `../shared/data/benchmarks`) |
| `OPTSCRIBE_DEBUG` | `1`: the CLI prints the traceback of an internal error |
"""


def markdown() -> str:
    lines = [MARKDOWN_HEAD, "| variable | default | what it does |", "|---|---|---|"]
    for r in rows():
        names = " or ".join(f"`{e}`" for e in r.env)
        description = r.description.replace("|", "\\|")
        lines.append(f"| {names} | `{r.default}` | {description} |")
    return "\n".join(lines) + "\n" + MARKDOWN_TAIL


def register(app: typer.Typer) -> None:
    """Add ``settings`` to the CLI."""

    @app.command("settings")
    def settings_command(
        as_markdown: Annotated[
            bool, typer.Option("--markdown", help="Print the reference table (docs/settings.md) instead.")
        ] = False,
    ) -> None:
        """Show every OPTSCRIBE_* setting with the value in force (secrets hidden)."""
        if as_markdown:
            typer.echo(markdown(), nl=False)
            return
        from .settings import get_settings

        current = get_settings()
        table = rows()
        width = max(len(r.env[0]) for r in table)
        for r in table:
            value = _show(getattr(current, r.field))
            mark = "" if value == r.default else "  (changed)"
            typer.echo(f"{r.env[0]:<{width}}  {value}{mark}")
            typer.echo(f"{'':<{width}}  {r.description}")
