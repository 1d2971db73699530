"""The formalization pipeline: text (+ tables) -> checked model -> solved plan or explanation.

Stages, in order: formulate (one structured call, or identify -> classify -> formulate in
the staged mode), convert the LLM's answer to the contract, check it statically, solve
it, and when anything is wrong feed the findings back for a corrected model (a bounded
repair loop). When the text lacks information the model needs, the LLM asks instead of
inventing, and the pipeline stops with ``needs_input`` and its questions; answers
resume it. Nothing the LLM writes is ever run: it only fills the contract.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from solvers.api import SolveOptions, load_model, solve_model, validation_issues
from solvers.check import check, errors
from solvers.errors import BackendError, CheckFailed, Issue, ModelError
from solvers.model import Model, Table
from solvers.result import Result, Status

from ..errors import FormalizationFailed, LLMBadOutput
from ..settings import Settings, get_settings
from . import feedback as fb
from .explain import plan_summary
from .llm import Budget, LLMClient, Usage
from .prompts import render
from .schemas import Classify, Formulate, Identify, Repair, SingleCall, model_to_llm

MAX_TEXT_CHARS = 20_000
TABLE_PREVIEW_ROWS = 5


@dataclass
class Attempt:
    """One round: what the LLM answered and what was wrong with it."""

    round: int
    stage: str
    findings: list[str] = field(default_factory=list)
    status: str | None = None


@dataclass
class Formalization:
    status: str  # solved | needs_input | failed
    model: Model | None = None
    result: Result | None = None
    issues: list[Issue] = field(default_factory=list)
    questions: list[str] = field(default_factory=list)
    summary: str = ""
    usage: Usage = field(default_factory=Usage)
    repair_rounds: int = 0
    attempts: list[Attempt] = field(default_factory=list)
    confidence: float | None = None
    seconds: float = 0.0
    mode: str = "single"
    error: str | None = None

    @property
    def llm_calls(self) -> int:
        return self.usage.calls

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "model": self.model.dump() if self.model is not None else None,
            "result": self.result.to_json_dict() if self.result is not None else None,
            "issues": [i.to_dict() for i in self.issues],
            "questions": self.questions,
            "summary": self.summary,
            "usage": self.usage.to_dict(),
            "llm_calls": self.llm_calls,
            "repair_rounds": self.repair_rounds,
            "attempts": [a.__dict__ for a in self.attempts],
            "confidence": self.confidence,
            "seconds": round(self.seconds, 3),
            "mode": self.mode,
            "error": self.error,
        }


# ----------------------------------------------------------------------------- tables


def read_table_file(path: Path) -> tuple[str, Table]:
    """A CSV (or JSON records) file as a named table; the name is the file's stem."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        data = json.loads(text)
        table = Table(records=data) if isinstance(data, list) else Table.model_validate(data)
    else:
        table = Table(csv=text)
    return path.stem, table


def describe_tables(tables: dict[str, Table]) -> str:
    """What the LLM sees of the data: names, columns and a few rows, never the whole table."""
    if not tables:
        return ""
    from solvers.lower import _read_csv

    parts: list[str] = []
    for name, t in tables.items():
        if t.columns is not None:
            cols = {k: list(v) for k, v in t.columns.items()}
        elif t.records is not None:
            keys = list(dict.fromkeys(k for r in t.records for k in r))
            cols = {k: [r.get(k) for r in t.records] for k in keys}
        else:
            cols = _read_csv(t.csv or "", name)
        n = len(next(iter(cols.values()), []))
        head = ", ".join(cols)
        rows = [", ".join(str(cols[k][i]) for k in cols) for i in range(min(n, TABLE_PREVIEW_ROWS))]
        parts.append(f"table {name!r} ({n} rows); columns: {head}\n" + "\n".join(f"  {r}" for r in rows))
    return "\n".join(parts)


# ----------------------------------------------------------------------------- the pipeline


class Pipeline:
    def __init__(self, client: LLMClient | None = None, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.client = client or LLMClient(self.settings)
        self._budget: Budget | None = None
        self._sample = 0

    # -- public ----------------------------------------------------------------------

    def run(
        self,
        text: str,
        tables: dict[str, Table] | None = None,
        answers: dict[str, str] | None = None,
        mode: str | None = None,
    ) -> Formalization:
        """Formalize, check, repair, solve; with ``samples > 1``, vote across samples."""
        t0 = time.monotonic()
        text = _with_answers(_clean_text(text), answers)
        tables = tables or {}
        k = max(1, self.settings.samples)
        if k == 1:
            out = self._one(text, tables, mode or self.settings.formalize_mode, None)
        else:
            out = self._vote(text, tables, mode or self.settings.formalize_mode, k)
        out.seconds = time.monotonic() - t0
        if out.status == "solved" and out.model is not None and out.result is not None:
            out.summary = plan_summary(out.model, out.result)
        return out

    # -- one formalization -----------------------------------------------------------

    def _one(
        self, text: str, tables: dict[str, Table], mode: str, temperature: float | None, sample: int = 0
    ) -> Formalization:
        out = Formalization(status="failed", mode=mode)
        table_text = describe_tables(tables)
        # One time budget for every LLM call of this formalization, retries included.
        self._budget = self.client.budget()
        self._sample = sample
        try:
            llm_model, questions = self._first(text, table_text, mode, temperature, out)
        except LLMBadOutput as e:
            out.error = str(e)
            out.usage = out.usage + e.usage  # the tokens of the unusable answers count too
            raise FormalizationFailed(
                str(e), attempts=len(out.attempts), usage=out.usage, last_raw=e.last_raw, issues=[]
            ) from e
        if questions and llm_model is None:
            out.status = "needs_input"
            out.questions = questions
            return out
        rounds = max(0, self.settings.repair_rounds)
        soft_used = False
        last_raw = ""
        for rnd in range(rounds + 1):
            model, findings, result, issues = self._assess(llm_model, text, tables)
            out.model, out.result, out.issues = model, result, issues
            attempt = Attempt(rnd, "formulate" if rnd == 0 else "repair", [str(f) for f in findings])
            attempt.status = result.status.value if result is not None else None
            out.attempts.append(attempt)
            blocking = [f for f in findings if f.blocking]
            if model is not None and result is not None and not blocking:
                # Soft findings (an unused number, an infeasible verdict, a misquoted source)
                # are worth one repair round, never a failure.
                if not findings or soft_used or rnd == rounds:
                    out.status = "solved"
                    return out
                soft_used = True
            if rnd == rounds:
                break
            if questions and model is None:
                out.status = "needs_input"
                out.questions = questions
                return out
            try:
                llm_model, last_raw = self._repair(text, table_text, llm_model, findings, temperature, out)
            except LLMBadOutput as e:
                # A failed repair must not lose a model that already solved.
                if model is not None and result is not None and not blocking:
                    out.status = "solved"
                    return out
                out.error = str(e)
                out.usage = out.usage + e.usage
                raise FormalizationFailed(
                    str(e),
                    attempts=len(out.attempts),
                    usage=out.usage,
                    last_raw=e.last_raw,
                    issues=out.issues,
                    findings=out.attempts[-1].findings,
                    partial=out,
                ) from e
            out.repair_rounds += 1
        if out.model is not None and out.result is not None and out.result.status == Status.INFEASIBLE:
            out.status = "solved"  # a model the LLM stands by, proven infeasible: an answer
            return out
        out.status = "failed"
        out.error = "the model still has problems after " + f"{out.repair_rounds} repair round(s)"
        raise FormalizationFailed(
            out.error,
            attempts=len(out.attempts),
            usage=out.usage,
            last_raw=last_raw,
            issues=out.issues,
            findings=out.attempts[-1].findings if out.attempts else [],
            partial=out,
        )

    def _ask(
        self, stage: str, schema: type[BaseModel], temperature: float | None, out: Formalization, **ctx: Any
    ) -> Any:
        messages = render(stage, **ctx)
        answer = self.client.complete_json(
            messages, schema, name=stage, temperature=temperature, budget=self._budget, sample=self._sample
        )
        out.usage = out.usage + answer.usage
        return answer

    def _first(
        self, text: str, table_text: str, mode: str, temperature: float | None, out: Formalization
    ) -> tuple[Formulate | None, list[str]]:
        if mode == "staged":
            ident = self._ask("identify", Identify, temperature, out, text=text, tables=table_text).value
            cls = self._ask(
                "classify", Classify, temperature, out, text=text, tables=table_text, identified=ident
            ).value
            form = self._ask(
                "formulate",
                Formulate,
                temperature,
                out,
                text=text,
                tables=table_text,
                identified=ident,
                classified=cls,
            ).value
            return form, list(getattr(ident, "questions", []) or [])
        single = self._ask("single", SingleCall, temperature, out, text=text, tables=table_text).value
        questions = list(getattr(single, "questions", []) or [])
        has_model = bool(getattr(single, "variables", None))
        return (single if has_model else None), questions

    def _repair(
        self,
        text: str,
        table_text: str,
        previous: Any,
        findings: list[fb.Finding],
        temperature: float | None,
        out: Formalization,
    ) -> tuple[Any, str]:
        answer = self._ask(
            "repair",
            Repair,
            temperature,
            out,
            text=text,
            tables=table_text,
            previous=previous if previous is not None else "{}",
            issues=[str(f) for f in findings],
        )
        return answer.value, answer.raw

    def _assess(
        self, llm_model: Any, text: str, tables: dict[str, Table]
    ) -> tuple[Model | None, list[fb.Finding], Result | None, list[Issue]]:
        """Convert, check and solve one answer; everything wrong becomes a finding."""
        if llm_model is None:
            return None, [fb.Finding("schema", "The answer holds no model: write the full model.")], None, []
        try:
            model = load_model(llm_model.to_model(tables=tables))
        except ValidationError as e:
            issues = validation_issues(e)
            return None, fb.from_issues(issues), None, issues
        except CheckFailed as e:
            return None, fb.from_issues(e.issues), None, e.issues
        except (ModelError, ValueError) as e:
            issue = e.issue if isinstance(e, ModelError) else Issue(code="schema", message=str(e))
            return None, fb.from_issues([issue]), None, [issue]
        issues, _ = check(model)
        findings = fb.from_issues(errors(issues))
        if findings:
            return model, findings, None, issues
        try:
            result = solve_model(model, options=SolveOptions(time_limit=self.settings.solve_time_limit))
        except (BackendError, ModelError, CheckFailed) as e:
            return model, [fb.Finding("solver", f"The model cannot be solved as written: {e}")], None, issues
        findings = fb.from_result(result)
        findings += fb.missing_quotes(llm_model.quotes(), text)
        findings += fb.unused_numbers(model, text)
        return model, findings, result, issues

    # -- self-consistency --------------------------------------------------------------

    def _vote(self, text: str, tables: dict[str, Table], mode: str, k: int) -> Formalization:
        runs: list[Formalization] = []
        usage = Usage()
        last_error: FormalizationFailed | None = None
        for i in range(k):
            try:
                r = self._one(text, tables, mode, self.settings.sample_temperature, sample=i)
            except FormalizationFailed as e:
                last_error = e
                usage = usage + e.usage
                continue
            usage = usage + r.usage
            runs.append(r)
        solved = [r for r in runs if r.status == "solved" and r.result is not None]
        if not solved:
            if runs:
                runs[0].usage = usage
                return runs[0]
            assert last_error is not None
            raise last_error
        keys = [_answer_key(r.result) for r in solved if r.result is not None]
        best, count = Counter(keys).most_common(1)[0]
        chosen = next(r for r in solved if r.result is not None and _answer_key(r.result) == best)
        chosen.usage = usage
        chosen.confidence = count / k
        return chosen


def _answer_key(result: Result) -> str:
    if result.objective is None:
        return result.status.value
    v = result.objective
    if v == 0 or not math.isfinite(v):
        return f"{result.status.value}:{v}"
    return f"{result.status.value}:{v:.6g}"


def _clean_text(text: str) -> str:
    text = text.strip()
    if not text:
        raise ModelError(Issue(code="empty", message="the problem text is empty", fix="describe the problem"))
    if len(text) > MAX_TEXT_CHARS:
        raise ModelError(
            Issue(
                code="too-large",
                message=f"the problem text is longer than {MAX_TEXT_CHARS} characters",
                fix="put bulk data into tables (--data file.csv) and describe the problem in words",
            )
        )
    return text


def _with_answers(text: str, answers: dict[str, str] | None) -> str:
    if not answers:
        return text
    lines = [f"- {q.strip()} {a.strip()}" for q, a in answers.items()]
    return text + "\n\nClarifications:\n" + "\n".join(lines)


def solve_text(text: str, tables: dict[str, Any] | None = None) -> dict[str, Any]:
    """One problem through the whole pipeline with the configured LLM (for the eval harness)."""
    pipe = Pipeline()
    tabs = {k: v if isinstance(v, Table) else Table.model_validate(v) for k, v in (tables or {}).items()}
    try:
        f = pipe.run(text, tabs)
        return f.to_dict()
    except FormalizationFailed as e:
        partial = e.partial.to_dict() if e.partial is not None else {}
        return partial | {"status": "failed", "error": str(e), "usage": e.usage.to_dict()}


__all__ = ["Formalization", "Pipeline", "describe_tables", "model_to_llm", "read_table_file", "solve_text"]
