"""Prompt rendering: the Jinja2 templates under ``prompts/`` become chat messages.

Each stage template (``prompts/<stage>.md``) defines two blocks, ``system`` and ``user``.
``render(stage, **context)`` renders them into ``[system, (user, assistant)*, user]``: the
pairs in the middle are few-shot examples, the stage's own user block rendered for an
example problem followed by that example's answer in the stage's LLM form. Templates run
with ``StrictUndefined``: a variable the caller did not give is an error, never an empty
string.

Context per stage (besides ``examples``, a list of ``Example``; by default ``few_shot()``
picks the examples closest to ``text``, none for repair):

=========  ===================================================================================
all        ``text`` (str, required); ``tables`` (preview text, or a mapping name -> Table);
           ``answers`` (the user's answers to earlier questions: mapping or list of pairs)
classify   ``identified`` (Identify, dict or JSON text)
formulate  ``identified``, ``classified`` (Classify, dict or JSON text)
repair     ``previous`` (Formulate, Model, dict or JSON text: the model to correct);
           ``issues`` (Issue, mapping or str each); ``result`` (a solver Result or None);
           ``missing_sources`` (quotes not found in the text); ``unused_numbers`` (str each)
=========  ===================================================================================
"""

from __future__ import annotations

import importlib.resources
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from pydantic import BaseModel, ValidationError

from solvers.errors import Issue
from solvers.model import Model, Table
from solvers.result import Result

from .schemas import (
    STAGES,
    Formulate,
    SingleCall,
    Unrepresentable,
    classify_part,
    identify_part,
    model_to_llm,
)

__all__ = [
    "DEFAULT_SHOTS",
    "Example",
    "compact_json",
    "examples",
    "few_shot",
    "prompts_dir",
    "render",
]

#: Few-shot examples each stage gets when the caller does not choose.
DEFAULT_SHOTS: dict[str, int] = {"identify": 2, "classify": 2, "formulate": 2, "single": 2, "repair": 0}

#: Preferred order without a problem text to match: one of each kind first.
_ORDER = (
    "bakery",
    "council_projects",
    "launch_schedule",
    "apple_transport",
    "shift_staffing",
    "feed_blend",
    "bike_shop",
    "print_shop",
)
TABLE_PREVIEW_ROWS = 5


# --------------------------------------------------------------------------- files


def prompts_dir() -> Path:
    """The directory holding the templates: the installed ``prompts`` package, else the
    ``prompts/`` folder of the source tree this module lives in."""
    try:
        found = importlib.resources.files("prompts")
        if isinstance(found, Path) and (found / "contract_guide.md").is_file():
            return found
    except (ModuleNotFoundError, TypeError):
        pass
    here = Path(__file__).resolve().parents[2] / "prompts"
    if (here / "contract_guide.md").is_file():
        return here
    raise FileNotFoundError("optscribe's prompt templates (prompts/contract_guide.md) are not installed")


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(prompts_dir())),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


# --------------------------------------------------------------------------- examples


@dataclass(frozen=True)
class Example:
    """A worked problem: its text, the contract model, and the solved answer."""

    name: str
    text: str
    model: Model
    answer: dict[str, Any]
    reasoning: str = ""
    parameter_sources: dict[str, str] = field(default_factory=dict)

    def form(self) -> Formulate:
        """The model in the LLM form, with the reasoning and parameter sources of the file."""
        form = model_to_llm(self.model, reasoning=self.reasoning)
        for p in form.parameters:
            p.source = self.parameter_sources.get(p.name)
        return form

    def answer_for(self, stage: str) -> BaseModel:
        """What a perfect answer to ``stage`` is for this problem."""
        form = self.form()
        if stage == "identify":
            return identify_part(form)
        if stage == "classify":
            return classify_part(form)
        if stage == "formulate":
            return form
        if stage == "single":
            return SingleCall.model_validate({**form.model_dump(by_alias=True), "questions": []})
        raise ValueError(f"no worked example answers the {stage!r} stage")


@lru_cache(maxsize=1)
def _load_examples() -> tuple[Example, ...]:
    folder = prompts_dir() / "examples"
    found: list[Example] = []
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        found.append(
            Example(
                name=path.stem,
                text=data["text"],
                model=Model.model_validate(data["model"]),
                answer=dict(data["answer"]),
                reasoning=data.get("reasoning", ""),
                parameter_sources=dict(data.get("parameter_sources", {})),
            )
        )
    rank = {n: i for i, n in enumerate(_ORDER)}
    found.sort(key=lambda e: (rank.get(e.name, len(rank)), e.name))
    return tuple(found)


def examples() -> list[Example]:
    """Every worked example under ``prompts/examples/``, in the preferred order."""
    return list(_load_examples())


_STOP = frozenset(
    "the and for that with each are from its can must this there their into than then which what "
    "how many much per one two all any has have will was were not only also most least more less".split()
)


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]{3,}", text.lower()) if w not in _STOP}


def few_shot(k: int, text: str | None = None) -> list[Example]:
    """``k`` worked examples: the ones whose wording is closest to ``text`` (word overlap), or
    the preferred order when no text is given. Deterministic."""
    pool = examples()
    if k <= 0:
        return []
    if not text:
        return pool[:k]
    words = _words(text)

    def score(e: Example) -> float:
        other = _words(e.text)
        return len(words & other) / max(1, len(words | other))

    ranked = sorted(enumerate(pool), key=lambda ie: (-score(ie[1]), ie[0]))
    return [e for _, e in ranked[:k]]


# --------------------------------------------------------------------------- context


def _pruned(data: Any, keep_lower: bool = False) -> Any:
    """JSON data without null fields (a variable's ``lower`` is kept: null there means a free
    variable), whole floats written as integers."""
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            if value is None and not (keep_lower and key == "lower"):
                continue
            out[key] = _pruned(value, keep_lower=key == "variables")
        return out
    if isinstance(data, list):
        return [_pruned(x, keep_lower) for x in data]
    if isinstance(data, float) and data.is_integer() and abs(data) < 2**53:
        return int(data)
    return data


def compact_json(value: BaseModel | Mapping[str, Any]) -> str:
    """A stage answer as JSON for a prompt: null fields left out, one line per top-level field
    and per item of a top-level list, so a model reads as a list of sets, parameters, ..."""
    data = value.model_dump(by_alias=True, mode="json") if isinstance(value, BaseModel) else dict(value)
    data = _pruned(data)

    def one(x: Any) -> str:
        return json.dumps(x, ensure_ascii=False)

    lines: list[str] = []
    for key, item in data.items():
        if isinstance(item, list) and item and all(isinstance(x, dict) for x in item):
            inner = ",\n".join(f"  {one(x)}" for x in item)
            lines.append(f" {one(key)}: [\n{inner}\n ]")
        else:
            lines.append(f" {one(key)}: {one(item)}")
    return "{\n" + ",\n".join(lines) + "\n}" if lines else "{}"


def _as_json(value: Any, what: str) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, Model):
        value = model_to_llm(value)
    if isinstance(value, (BaseModel, Mapping)):
        return compact_json(value)
    raise TypeError(f"{what} must be a pydantic model, a dict or JSON text, not {type(value).__name__}")


def _previous(value: Any) -> str:
    """The model to repair, in the LLM form the answer must take (by alias: ``if``, not ``if_``)."""
    if isinstance(value, Model):
        return _as_json(model_to_llm(value), "previous")
    data: Any
    if isinstance(value, BaseModel):
        data = value.model_dump(by_alias=True, mode="json")
    elif isinstance(value, str):
        try:
            data = json.loads(value)
        except ValueError:
            return value.strip()
    elif isinstance(value, Mapping):
        data = dict(value)
    else:
        raise TypeError(f"previous must be a model, a dict or JSON text, not {type(value).__name__}")
    if isinstance(data, dict):
        # the parts of a SingleCall / Repair answer that the repaired model repeats
        trimmed = {k: v for k, v in data.items() if k not in ("questions", "changes")}
        try:
            return _as_json(Formulate.model_validate(trimmed), "previous")
        except ValidationError:
            pass
        try:
            return _as_json(model_to_llm(Model.model_validate(data)), "previous")
        except (ValidationError, Unrepresentable):
            pass
    return json.dumps(data, indent=1, ensure_ascii=False)


def _issue_line(issue: Any) -> str:
    if isinstance(issue, str):
        return issue.strip()
    if isinstance(issue, Issue):
        issue = issue.to_dict()
    if isinstance(issue, Mapping):
        where = str(issue.get("where") or "")
        line = (f"{where}: " if where else "") + str(issue.get("message", ""))
        if issue.get("culprit"):
            line += f" (culprit: {issue['culprit']})"
        if issue.get("fix"):
            line += f". Fix: {issue['fix']}"
        return line
    return str(issue)


def _result_view(result: Any) -> dict[str, Any] | None:
    if result is None:
        return None
    if isinstance(result, Mapping):
        result = Result.model_validate(dict(result))
    if not isinstance(result, Result):
        raise TypeError(f"result must be a solver Result, not {type(result).__name__}")
    view: dict[str, Any] = {
        "status": result.status.value,
        "summary": result.message or "",
        "conflict": [],
        "relaxations": [],
        "unbounded": [],
    }
    expl = result.explanation
    if expl is not None:
        # the summary repeats the conflict and the relaxations in prose: show it only without them
        if not expl.conflict and not expl.relaxations:
            view["summary"] = expl.summary
        view["conflict"] = [{"name": c.name, "source": c.source or ""} for c in expl.conflict]
        view["relaxations"] = [
            {
                "name": r.name,
                "kind": r.kind,
                "current": f"{r.current:g}",
                "suggested": f"{r.suggested:g}",
                "source": r.source or "",
            }
            for r in expl.relaxations
        ]
        view["unbounded"] = sorted(expl.unbounded_direction)
    return view


def _tables_view(tables: Any) -> str:
    if tables is None:
        return ""
    if isinstance(tables, str):
        return tables.strip()
    if not isinstance(tables, Mapping):
        raise TypeError("tables must be preview text or a mapping of table name to Table")
    parts: list[str] = []
    for name, table in tables.items():
        t = table if isinstance(table, Table) else Table.model_validate(table)
        parts.append(_table_preview(str(name), t))
    return "\n\n".join(parts)


def _table_preview(name: str, t: Table) -> str:
    if t.columns is not None:
        cols = list(t.columns)
        n = len(next(iter(t.columns.values()), []))
        rows = [[t.columns[c][i] for c in cols] for i in range(min(n, TABLE_PREVIEW_ROWS))]
    elif t.records is not None:
        cols = list(dict.fromkeys(k for r in t.records for k in r))
        n = len(t.records)
        rows = [[r.get(c) for c in cols] for r in t.records[:TABLE_PREVIEW_ROWS]]
    else:
        lines = [ln for ln in (t.csv or "").splitlines() if ln.strip()]
        n = max(0, len(lines) - 1)
        head = f"table {name} ({n} rows), CSV:"
        return "\n".join([head, *lines[: TABLE_PREVIEW_ROWS + 1]])
    head = f"table {name} ({n} rows); columns: {', '.join(cols)}"
    body = [", ".join("" if v is None else str(v) for v in row) for row in rows]
    return "\n".join([head, *body])


def _answers_view(answers: Any) -> list[tuple[str, str]]:
    if not answers:
        return []
    if isinstance(answers, Mapping):
        return [(str(q), str(a)) for q, a in answers.items()]
    out: list[tuple[str, str]] = []
    for item in answers:
        q, a = item
        out.append((str(q), str(a)))
    return out


def _strings(items: Iterable[Any] | None) -> list[str]:
    return [str(x).strip() for x in items or [] if str(x).strip()]


def _prepare(stage: str, context: Mapping[str, Any]) -> dict[str, Any]:
    """The template variables of a stage, from what the caller gave."""
    ctx = dict(context)
    if "text" in ctx:
        ctx["text"] = str(ctx["text"]).strip()
    ctx["tables"] = _tables_view(ctx.get("tables"))
    ctx["answers"] = _answers_view(ctx.get("answers"))
    if "identified" in ctx:
        ctx["identified"] = _as_json(ctx["identified"], "identified")
    if "classified" in ctx:
        ctx["classified"] = _as_json(ctx["classified"], "classified")
    if stage == "repair":
        if "previous" not in ctx and "model" in ctx:
            ctx["previous"] = ctx.pop("model")
        if "previous" in ctx:
            ctx["previous"] = _previous(ctx["previous"])
        ctx["issues"] = [_issue_line(i) for i in ctx.get("issues") or []]
        ctx["result"] = _result_view(ctx.get("result"))
        ctx["missing_sources"] = _strings(ctx.get("missing_sources"))
        ctx["unused_numbers"] = _strings(ctx.get("unused_numbers"))
    return ctx


def _example_context(stage: str, example: Example) -> dict[str, Any]:
    ctx: dict[str, Any] = {"text": example.text, "tables": "", "answers": []}
    if stage in ("classify", "formulate"):
        form = example.form()
        ctx["identified"] = _as_json(identify_part(form), "identified")
        if stage == "formulate":
            ctx["classified"] = _as_json(classify_part(form), "classified")
    return ctx


# --------------------------------------------------------------------------- render


def _block(template: jinja2.Template, name: str, ctx: Mapping[str, Any]) -> str:
    if name not in template.blocks:
        raise ValueError(f"prompt template {template.name!r} has no block {name!r}")
    text = "".join(template.blocks[name](template.new_context(dict(ctx))))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def render(stage: str, **context: Any) -> list[dict[str, str]]:
    """Chat messages for one stage: system, few-shot (user, assistant) pairs, then the user
    message of the problem at hand. A template variable missing from ``context`` raises
    ``jinja2.UndefinedError``."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}: choose one of {', '.join(STAGES)}")
    shots: Sequence[Example] | None = context.pop("examples", None)
    if shots is None:
        shots = few_shot(DEFAULT_SHOTS[stage], context.get("text"))
    if shots and stage == "repair":
        raise ValueError("the repair stage takes no few-shot examples")
    template = _env().get_template(f"{stage}.md")
    ctx = _prepare(stage, context)
    ctx["n_examples"] = len(shots)
    messages = [{"role": "system", "content": _block(template, "system", ctx)}]
    for ex in shots:
        ex_ctx = {**_example_context(stage, ex), "n_examples": len(shots)}
        messages.append({"role": "user", "content": _block(template, "user", ex_ctx)})
        messages.append({"role": "assistant", "content": compact_json(ex.answer_for(stage))})
    messages.append({"role": "user", "content": _block(template, "user", ctx)})
    return messages
