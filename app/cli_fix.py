"""The ``fix`` command: apply the smallest changes that make an infeasible model feasible.

``optscribe fix model.json -o fixed.json`` solves the model; when it is infeasible, applies the
relaxations the explanation suggests (all of them, or those picked with ``--only``) through
:mod:`solvers.relax`, which changes the model the least readable way and notes each change in
the touched constraint's description, solves the fixed model, prints what changed and the new
plan, and writes the fixed model. A model that is not infeasible is left alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["register"]


def register(
    app: typer.Typer,
    exit_codes: Callable[[], AbstractContextManager[None]],
    render_result: Callable[..., str],
    read_model: Callable[[Path], Any],
) -> None:
    """Add ``fix`` to the CLI (with the CLI's error handling, rendering and model reader)."""

    @app.command()
    def fix(
        model: Annotated[
            Path, typer.Argument(help="The model: a JSON file in the optscribe.model/v1 contract.")
        ],
        output: Annotated[
            Path | None,
            typer.Option("--output", "-o", help="Write the fixed model (contract JSON) to this file."),
        ] = None,
        only: Annotated[
            list[str] | None,
            typer.Option(
                "--only",
                help="Apply only the suggestion for this constraint or variable instance, e.g. "
                "'budget_cap' or 'cover[night]' (repeat for several; default: all of them).",
            ),
        ] = None,
        time_limit: Annotated[
            float | None, typer.Option("--time-limit", min=0.0, help="Solver seconds for each solve.")
        ] = None,
    ) -> None:
        """Apply the suggested smallest changes to an infeasible model and solve it again.

        With -o FILE the fixed model is written there (contract JSON)."""
        with exit_codes():
            from solvers.api import SolveOptions, solve_model
            from solvers.errors import Issue, ModelError
            from solvers.relax import apply_relaxations
            from solvers.result import Status

            from .cli import _fmt

            m = read_model(model)
            options = SolveOptions(time_limit=time_limit, explain=True)
            first = solve_model(m, options=options)
            if first.status != Status.INFEASIBLE:
                typer.echo(f"{m.name}: {first.status.value}; there is nothing to fix.")
                return
            suggestions = list(first.explanation.relaxations) if first.explanation else []
            if not suggestions:
                typer.echo(render_result(first, m))
                typer.echo(
                    "\nNo change to a number makes this model feasible (the conflict is in its logic): "
                    "change one of the conflicting requirements above by hand."
                )
                return
            if only:
                known = {s.name for s in suggestions} | {s.id for s in suggestions}
                unknown = [name for name in only if name not in known]
                if unknown:
                    raise ModelError(
                        Issue(
                            code="fix",
                            message=f"no suggestion for {', '.join(unknown)}",
                            fix="choose among: " + ", ".join(s.name for s in suggestions),
                        )
                    )
                suggestions = [s for s in suggestions if s.name in only or s.id in only]
            fixed = apply_relaxations(m, suggestions)
            typer.echo(f"{m.name}: infeasible. Applied {len(suggestions)} change(s):")
            for s in suggestions:
                where = f' ("{s.source}")' if s.source else ""
                typer.echo(f"- {s.name}: {s.kind} {_fmt(s.current)} -> {_fmt(s.suggested)}{where}")
            typer.echo("")
            again = solve_model(fixed, options=options)
            typer.echo(render_result(again, fixed))
            if output is not None:
                output.write_text(json.dumps(fixed.dump(), indent=2) + "\n", encoding="utf-8")
                typer.echo(f"wrote the fixed model to {output}", err=True)
            else:
                typer.echo("(the fixed model was not written: add -o FILE)", err=True)
