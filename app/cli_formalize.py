"""The ``formalize`` and ``run`` commands: from a problem in words to a model, and to a plan.

LLM trouble (none configured, endpoint down, garbage every time, a model that stays
broken after its repair rounds) exits with 1 and one readable line on stderr; a bad
problem text or data file exits with 2, as everywhere in the CLI.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from .errors import AppError, FormalizationFailed
from .formalize.pipeline import Formalization

# Options shared by both commands (module level: typer reads the annotations by name).
text_arg = Annotated[str | None, typer.Argument(help="The problem in words (or use -f FILE).")]
file_opt = Annotated[
    Path | None, typer.Option("-f", "--file", help="Read the problem from this file ('-' for stdin).")
]
data_opt = Annotated[
    list[Path] | None,
    typer.Option(
        "--data", help="A data table (CSV, or JSON records); repeat for several. Named by file stem."
    ),
]
mode_opt = Annotated[
    str | None,
    typer.Option("--mode", help="single (one LLM call) or staged (identify, classify, formulate)."),
]
answer_opt = Annotated[
    list[str] | None,
    typer.Option("-a", "--answer", help="Answer a clarifying question: 'QUESTION=ANSWER'; repeatable."),
]


def _text_of(text: str | None, file: Path | None) -> str:
    from solvers.errors import Issue, ModelError

    if (text is None) == (file is None):
        raise ModelError(
            Issue(code="input", message="give the problem either as TEXT or with -f FILE", fix="not both")
        )
    if file is not None:
        if str(file) == "-":
            return sys.stdin.read()
        return file.read_text(encoding="utf-8")
    assert text is not None
    return text


def _formalize(
    text: str, data: list[Path] | None, mode: str | None, answers: list[str] | None
) -> Formalization:
    from solvers.errors import Issue, ModelError
    from solvers.model import Table

    from .formalize.pipeline import Pipeline, read_table_file

    tables: dict[str, Table] = {}
    for p in data or []:
        name, table = read_table_file(p)
        tables[name] = table
    parsed: dict[str, str] = {}
    for a in answers or []:
        if "=" not in a:
            raise ModelError(
                Issue(code="input", message=f"--answer {a!r} is not QUESTION=ANSWER", fix="write -a 'Q=A'")
            )
        q, v = a.split("=", 1)
        parsed[q] = v
    return Pipeline().run(text, tables, answers=parsed, mode=mode)


def register(app: typer.Typer, exit_codes: object, render_result: object) -> None:
    """Add ``formalize`` and ``run`` to the CLI (``exit_codes`` and ``render_result`` from cli.py)."""
    from collections.abc import Callable
    from contextlib import AbstractContextManager
    from typing import cast

    guard = cast(Callable[[], AbstractContextManager[None]], exit_codes)
    render = cast(Callable[..., str], render_result)

    def guarded(fn: Callable[[], None]) -> None:
        with guard():
            try:
                fn()
            except FormalizationFailed as e:
                typer.echo(f"optscribe: formalization failed: {e}", err=True)
                for f in e.findings[:10]:
                    typer.echo(f"  - {f.splitlines()[0]}", err=True)
                raise typer.Exit(1) from None
            except AppError as e:
                typer.echo(f"optscribe: {e}", err=True)
                raise typer.Exit(1) from None

    def questions(out: Formalization, as_json: bool) -> bool:
        if out.status != "needs_input":
            return False
        if as_json:
            typer.echo(json.dumps(out.to_dict(), indent=2))
        else:
            typer.echo("The problem text lacks information the model needs. Please answer:")
            for q in out.questions:
                typer.echo(f"- {q}")
            typer.echo("Then run again with -a 'QUESTION=ANSWER' for each.")
        return True

    @app.command()
    def formalize(
        text: text_arg = None,
        file: file_opt = None,
        data: data_opt = None,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print the checked model as contract JSON.")
        ] = False,
        mode: mode_opt = None,
        answer: answer_opt = None,
    ) -> None:
        """Turn a problem in words into a checked model (the LLM fills the contract; nothing runs)."""

        def body() -> None:
            out = _formalize(_text_of(text, file), data, mode, answer)
            if questions(out, as_json):
                return
            assert out.model is not None
            typer.echo(out.model.to_json())
            if not as_json:  # the model is JSON either way; the cost goes to stderr for people
                typer.echo(
                    f"\n# {out.llm_calls} LLM call(s), {out.usage.total_tokens} tokens, "
                    f"{out.repair_rounds} repair round(s)",
                    err=True,
                )

        guarded(body)

    @app.command()
    def run(
        text: text_arg = None,
        file: file_opt = None,
        data: data_opt = None,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print model, result and summary as JSON.")
        ] = False,
        mode: mode_opt = None,
        answer: answer_opt = None,
    ) -> None:
        """Formalize a problem in words, solve it, and print the plan or the explanation."""

        def body() -> None:
            out = _formalize(_text_of(text, file), data, mode, answer)
            if questions(out, as_json):
                return
            if as_json:
                typer.echo(json.dumps(out.to_dict(), indent=2))
                return
            assert out.result is not None
            typer.echo(render(out.result, out.model))
            if out.summary:
                typer.echo("\n" + out.summary)
            conf = f", agreement {out.confidence:.0%}" if out.confidence is not None else ""
            typer.echo(
                f"\n({out.llm_calls} LLM call(s), {out.usage.total_tokens} tokens, "
                f"{out.repair_rounds} repair round(s){conf})"
            )

        guarded(body)
