"""The ``optscribe`` command line: schema, check, solve, export.

This module owns the terminal face of the model core: it reads files, calls one function
of ``solvers`` per command and prints the answer for people (a plan table, a conflict with
its source sentences) or for programs (``--json``). It also owns the exit codes, which
scripts rely on:

* 0: the solver ran, whatever it found (optimal, infeasible, unbounded, time limit);
* 2: the input is at fault (unreadable file, malformed JSON, a model that fails its
  checks, a backend that cannot take the model): one message on stderr, no traceback;
* 1: optscribe itself failed: a short message, and the traceback with
  ``OPTSCRIBE_DEBUG=1``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from solvers.errors import BackendError, CheckFailed, Issue, ModelError, OptscribeError, SolverFailure
from solvers.model import Model
from solvers.result import Result, Status

if TYPE_CHECKING:
    from solvers.backends.base import SolveOptions

__all__ = ["app", "main"]

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_INPUT = 2

#: Suffixes read as LP / MPS files rather than contract JSON.
SOLVER_FILE_SUFFIXES = (".lp", ".mps")

app = typer.Typer(
    name="optscribe",
    help="Check, solve, explain and export optimization models written in the "
    "optscribe.model/v1 JSON contract.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class BackendName(StrEnum):
    highs = "highs"
    cpsat = "cpsat"
    pyomo = "pyomo"


class ExportFormat(StrEnum):
    lp = "lp"
    mps = "mps"
    pyomo = "pyomo"
    json = "json"


# ----------------------------------------------------------------------------- errors


def _err(text: str) -> None:
    typer.echo(text, err=True)


@contextmanager
def _exit_codes() -> Iterator[None]:
    """Turn what a command raises into one message and the exit code of its kind."""
    try:
        yield
    except typer.Exit:
        raise
    except CheckFailed as e:
        _err(f"optscribe: error: the model has {len(e.issues)} problem(s):")
        for issue in e.issues:
            _err(f"  - {issue}")
        raise typer.Exit(EXIT_INPUT) from None
    except SolverFailure as e:  # the solver broke: our bug or the solver's, not the input's
        _internal(e, "the solver failed")
    except OptscribeError as e:  # ModelError, BackendError: the input must change
        _err(f"optscribe: error: {e}")
        raise typer.Exit(EXIT_INPUT) from None
    except OSError as e:
        where = f" {e.filename}" if e.filename else ""
        _err(f"optscribe: error: cannot read or write{where}: {e.strerror or e}")
        raise typer.Exit(EXIT_INPUT) from None
    except KeyboardInterrupt:
        _err("optscribe: interrupted")
        raise typer.Exit(130) from None
    except Exception as e:  # anything else is our bug: say so briefly
        _internal(e, "internal error")


def _internal(e: BaseException, what: str) -> NoReturn:
    _err(f"optscribe: {what}: {type(e).__name__}: {e}")
    if os.environ.get("OPTSCRIBE_DEBUG") == "1":
        _err("".join(traceback.format_exception(e)))
    else:
        _err("(set OPTSCRIBE_DEBUG=1 to see the traceback; please report it)")
    raise typer.Exit(EXIT_INTERNAL) from None


def _read_model(path: Path) -> Model:
    from solvers.api import load_model

    if path.is_dir():
        raise _input_error(f"{path} is a directory, not a model file")
    return load_model(path)


def _input_error(message: str, fix: str = "") -> ModelError:
    return ModelError(Issue(code="io", message=message, fix=fix))


# ----------------------------------------------------------------------------- schema


@app.command()
def schema(
    result: Annotated[
        bool, typer.Option("--result", help="Print the JSON Schema of the result contract instead.")
    ] = False,
) -> None:
    """Print the JSON Schema of the model contract (optscribe.model/v1)."""
    with _exit_codes():
        if result:
            data = Result.model_json_schema()
        else:
            from solvers.model import json_schema

            data = json_schema()
        typer.echo(json.dumps(data, indent=2))


# ----------------------------------------------------------------------------- check


@app.command()
def check(
    model: Annotated[Path, typer.Argument(help="The model: a JSON file in the optscribe.model/v1 contract.")],
    backend: Annotated[
        BackendName | None,
        typer.Option(help="Also check that this backend can take the model."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the issues as a JSON list instead of text.")
    ] = False,
) -> None:
    """Check a model without solving it: each issue with its place, culprit and fix.

    Exits with 2 when there is any error (warnings alone exit 0).
    """
    with _exit_codes():
        from solvers.check import check as run_check
        from solvers.check import errors

        m = _read_model(model)
        issues, _ = run_check(m, backend.value if backend else None)
        if as_json:
            typer.echo(json.dumps([i.to_dict() for i in issues], indent=2))
        elif not issues:
            typer.echo(f"{model}: no issues found")
        else:
            for i in issues:
                lines = [f"{i.severity}: {i.where + ': ' if i.where else ''}{i.message}"]
                if i.position is not None:
                    lines[0] += f" (at character {i.position + 1})"
                if i.culprit:
                    lines.append(f"    culprit: {i.culprit}")
                if i.fix:
                    lines.append(f"    fix: {i.fix}")
                typer.echo("\n".join(lines))
        if errors(issues):
            raise typer.Exit(EXIT_INPUT)


# ----------------------------------------------------------------------------- solve


@app.command()
def solve(
    model: Annotated[
        Path,
        typer.Argument(help="The model: contract JSON (.json), or an LP (.lp) or MPS (.mps) file."),
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result contract as JSON on stdout.")
    ] = False,
    backend: Annotated[
        BackendName | None,
        typer.Option(help="Solve with this backend instead of the one optscribe routes the model to."),
    ] = None,
    time_limit: Annotated[
        float | None, typer.Option("--time-limit", min=0.0, help="Stop the solver after this many seconds.")
    ] = None,
    mip_gap: Annotated[
        float | None,
        typer.Option("--mip-gap", min=0.0, help="Stop at this relative MIP gap (0.01 = 1%)."),
    ] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", min=1, help="Use at most this many solver threads.")
    ] = None,
    explain: Annotated[
        bool,
        typer.Option(
            "--explain/--no-explain", help="For an infeasible model, find the conflict and relaxations."
        ),
    ] = True,
    pyomo_solver: Annotated[
        str | None,
        typer.Option(
            "--pyomo-solver",
            help="With --backend pyomo: the Pyomo solver to use (default: $OPTSCRIBE_PYOMO_SOLVER or highs).",
        ),
    ] = None,
) -> None:
    """Solve a model and print the plan, or why there is none and what to change.

    Any solver outcome (optimal, infeasible, unbounded, time limit) exits with 0.
    """
    with _exit_codes():
        from solvers.api import SolveOptions

        options = SolveOptions(time_limit=time_limit, mip_gap=mip_gap, threads=threads, explain=explain)
        saved = os.environ.get("OPTSCRIBE_PYOMO_SOLVER")
        if pyomo_solver:
            os.environ["OPTSCRIBE_PYOMO_SOLVER"] = pyomo_solver
        try:
            result, m = _solve_file(model, backend.value if backend else None, options)
        finally:
            if pyomo_solver:
                if saved is None:
                    os.environ.pop("OPTSCRIBE_PYOMO_SOLVER", None)
                else:
                    os.environ["OPTSCRIBE_PYOMO_SOLVER"] = saved
        if as_json:
            typer.echo(json.dumps(result.to_json_dict(), indent=2))
        else:
            typer.echo(render_result(result, m, title=None if m is not None else model.name))


def _solve_file(path: Path, backend: str | None, options: SolveOptions) -> tuple[Result, Model | None]:
    if path.suffix.lower() in SOLVER_FILE_SUFFIXES:
        from solvers.export import import_lp_mps, solve_imported

        if not path.exists():
            raise _input_error(f"{path} does not exist")
        if backend not in (None, "highs"):
            raise BackendError(
                f"{path.suffix} files are solved with highs only; drop --backend {backend} "
                "or use the model's JSON"
            )
        return solve_imported(import_lp_mps(path), options), None
    from solvers.api import solve_model

    m = _read_model(path)
    return solve_model(m, backend=backend, options=options), m


# ----------------------------------------------------------------------------- rendering


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.6g}"


def _table(headers: list[str], rows: list[list[str]], right: set[int] | None = None) -> str:
    right = right or set()
    widths = [max(len(h), *(len(r[k]) for r in rows)) if rows else len(h) for k, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        out = [
            c.rjust(w) if k in right else c.ljust(w)
            for k, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(out).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


def _var_info(m: Model | None, name: str) -> tuple[str, str]:
    """Description and unit of the model variable that a value's name belongs to."""
    if m is None:
        return "", ""
    base = name.split("[", 1)[0].split(".", 1)[0]
    for v in m.variables:
        if v.name == base:
            desc = v.description or ""
            if name.endswith(".start"):
                desc = f"start of {desc}" if desc else "start"
            elif name.endswith(".end"):
                desc = f"end of {desc}" if desc else "end"
            return desc, v.unit or ""
    return "", ""


def render_result(result: Result, m: Model | None = None, title: str | None = None, tol: float = 1e-9) -> str:
    """The result for people: status, objective, the plan (nonzero values; interval starts
    and ends always), and for an infeasible model the conflict with its sentences and the
    relaxations."""
    out: list[str] = []
    title = title or (m.name if m is not None else None)
    name = f"{title}: " if title else ""
    out.append(f"{name}{result.status.value}")
    if result.objective is not None:
        line = f"objective: {_fmt(result.objective)}"
        if m is not None and m.objective is not None:
            line += f" ({m.objective.sense})"
        if result.gap is not None and result.gap > 0:
            line += f", bound {_fmt(result.bound)}, gap {result.gap:.3%}"
        out.append(line)
    backend = f"backend: {result.backend}"
    if result.solver_version:
        backend += f" {result.solver_version}"
    backend += f", {result.solve_seconds:.3f} s"
    out.append(backend)
    if result.route_reason:
        out.append(f"why: {result.route_reason}")
    if result.message:
        out.append(f"note: {result.message}")

    intervals = {v.name for v in m.variables if v.domain == "interval"} if m is not None else set()
    plan = [
        (k, v)
        for k, v in result.values.items()
        if not k.startswith("__") and (abs(v) > tol or k.split("[", 1)[0].split(".", 1)[0] in intervals)
    ]
    if plan:
        rows = []
        for k, v in plan:
            desc, unit = _var_info(m, k)
            rows.append([k, _fmt(v), unit, desc])
        out.append("")
        out.append(
            "plan (nonzero values):" if not intervals else "plan (nonzero values, every start and end):"
        )
        out.append(_table(["variable", "value", "unit", "description"], rows, right={1}))
    elif result.values:
        out.append("")
        out.append("plan: every variable is zero")

    duals = [(k, v) for k, v in result.duals.items() if abs(v) > tol]
    if duals:
        out.append("")
        out.append("shadow prices (objective change per unit of right-hand side):")
        out.append(_table(["constraint", "dual"], [[k, _fmt(v)] for k, v in duals], right={1}))

    ex = result.explanation
    if ex is not None:
        out.append("")
        out.append(ex.summary)
        if ex.conflict:
            out.append("")
            method = f" ({ex.conflict_method})" if ex.conflict_method else ""
            out.append(f"conflict{method}:")
            for c in ex.conflict:
                kind = "" if c.kind == "constraint" else f" [{c.kind}]"
                out.append(f"  - {c.name}{kind}")
        if ex.relaxations:
            out.append("")
            out.append("relaxations (together they restore feasibility):")
            rows = [
                [r.name, r.kind, _fmt(r.current), _fmt(r.suggested), _fmt(r.change)] for r in ex.relaxations
            ]
            out.append(_table(["constraint", "what", "now", "suggested", "change"], rows, right={2, 3, 4}))
        if ex.unbounded_direction:
            out.append("")
            out.append("a direction in which the objective improves without limit:")
            dirs = [[k, _fmt(v)] for k, v in ex.unbounded_direction.items()]
            out.append(_table(["variable", "direction"], dirs, right={1}))
    elif result.status in (Status.INFEASIBLE, Status.INFEASIBLE_OR_UNBOUNDED, Status.UNBOUNDED):
        out.append("")
        out.append("no explanation was computed (run without --no-explain to get one)")
    return "\n".join(out)


# ----------------------------------------------------------------------------- export


@app.command()
def export(
    model: Annotated[Path, typer.Argument(help="The model: a JSON file in the optscribe.model/v1 contract.")],
    fmt: Annotated[
        ExportFormat,
        typer.Option(
            "--format",
            "-f",
            help="lp or mps (solver files, names kept), pyomo (a Python script that builds and "
            "solves the model with Pyomo), json (the contract, normalized).",
        ),
    ],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")
    ] = None,
) -> None:
    """Export a model as an LP or MPS file, a Pyomo script, or normalized contract JSON."""
    with _exit_codes():
        from solvers.export import export as run_export

        m = _read_model(model)
        text = run_export(m, fmt.value)
        if output is None:
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
        else:
            output.write_text(text)
            _err(f"wrote {output} ({fmt.value})")


def _register_more() -> None:
    from .cli_fix import register as register_fix
    from .cli_formalize import register as register_formalize
    from .cli_serve import register as register_serve
    from .cli_settings import register as register_settings
    from .cli_worker import register as register_worker
    from .eval import register as register_eval

    register_formalize(app, _exit_codes, render_result)
    register_eval(app)
    register_serve(app)
    register_worker(app)
    register_settings(app)
    register_fix(app, _exit_codes, render_result, _read_model)


_register_more()


def main() -> None:
    """The console script: run the app and exit with its code."""
    try:
        app()
    except SystemExit:
        raise
    except BaseException as e:  # an error outside any command (argument parsing, I/O)
        if isinstance(e, KeyboardInterrupt):
            raise SystemExit(130) from None
        _err(f"optscribe: internal error: {type(e).__name__}: {e}")
        if os.environ.get("OPTSCRIBE_DEBUG") == "1":
            _err("".join(traceback.format_exception(e)))
        raise SystemExit(EXIT_INTERNAL) from None
