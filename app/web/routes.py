"""The web form: the page at ``/`` and the HTML fragments under ``/ui/`` that HTMX swaps in.

The fragments are a thin HTML face on the same code paths as the ``/v1`` API: a submission
goes through :func:`app.api.routes_jobs.submit_job` (the same validation and limits, the same
store, the same dispatch), under the same caller identity and rate limit (``CallerDep``,
``rate_limit``); errors are worded by the one mapper (:func:`app.api.errors.to_response`) and
shown as HTML. Progress is not a route of its own: the browser reads the job's Server-Sent
Events from ``GET /v1/jobs/{id}/events`` and then asks for the job's fragment here. Exports
go to ``POST /v1/export`` directly.

Every value a user or an LLM wrote is escaped by Jinja's autoescape; the pages carry a
Content-Security-Policy that allows scripts from this origin only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import jinja2
from fastapi import APIRouter, Depends, Form, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from app.api.deps import CallerDep, JobStoreDep, ServicesDep, llm_probe, rate_limit
from app.api.errors import NotFound, request_issues, to_response
from app.api.routes_jobs import JobIn, submit_answers, submit_job
from app.errors import CONFIGURE_LLM
from app.jobs.store import Job, JobStore
from solvers.api import load_model
from solvers.errors import CheckFailed, Issue, ModelError, OptscribeError
from solvers.model import Model
from solvers.result import Relaxation

from . import render

__all__ = ["CSP", "page_router", "ui_router"]

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
EXAMPLES = HERE / "examples"

# KaTeX writes style attributes into the HTML it makes, hence 'unsafe-inline' for styles
# (never for scripts). Nothing is loaded from anywhere but this origin.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
MAX_TABLES = 3
EXPORT_FORMATS = (("lp", "LP"), ("mps", "MPS"), ("pyomo", "Pyomo"), ("json", "JSON"))

page_router = APIRouter(include_in_schema=False)
ui_router = APIRouter(prefix="/ui", include_in_schema=False, dependencies=[Depends(rate_limit)])

JobId = Annotated[str, PathParam(min_length=1, max_length=64)]


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = lambda v: render.fmt_num(float(v)) if v is not None else ""
    env.filters["tojson_attr"] = lambda v: json.dumps(v, separators=(",", ":"))
    return env


templates = Jinja2Templates(env=_environment())


def _html(request: Request, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    response = templates.TemplateResponse(request, name, context, status_code=status, headers=_HEADERS)
    assert isinstance(response, HTMLResponse)
    return response


# ----------------------------------------------------------------------------- examples


@dataclass(frozen=True)
class Example:
    slug: str
    title: str
    summary: str
    text: str = ""
    tables: dict[str, str] = field(default_factory=dict)
    model: str = ""  # pretty-printed contract JSON


@lru_cache(maxsize=1)
def examples() -> dict[str, Example]:
    """The built-in examples (``app/web/examples/*.json``), in file-name order."""
    out: dict[str, Example] = {}
    for f in sorted(EXAMPLES.glob("*.json")):
        data = json.loads(f.read_text(encoding="utf-8"))
        slug = f.stem.split("_", 1)[-1]
        model = json.dumps(data["model"], indent=2) if data.get("model") else ""
        out[slug] = Example(
            slug, data["title"], data["summary"], data.get("text", ""), data.get("tables", {}), model
        )
    return out


# ----------------------------------------------------------------------------- the page


def _llm_reason(request: Request) -> str | None:
    """None when an LLM is configured, else why not."""
    return llm_probe(request.app.state.services)()


def _page_context(request: Request, services: Any) -> dict[str, Any]:
    reason = _llm_reason(request)
    return {
        "llm_reason": reason,
        "configure_llm": CONFIGURE_LLM,
        "keys_required": services.settings.api_keys_required,
        "jobs_enabled": services.store is not None,
        "examples": list(examples().values()),
        "form": {"text": "", "tables": [], "model": ""},
        "max_tables": MAX_TABLES,
    }


@page_router.get("/", response_class=HTMLResponse)
async def index(request: Request, services: ServicesDep) -> HTMLResponse:
    return _html(request, "index.html", _page_context(request, services))


@page_router.get("/favicon.ico", include_in_schema=False)
async def favicon() -> FileResponse:
    """The page links its icon (``/static/favicon.svg``); clients that ask here get it too."""
    return FileResponse(
        STATIC / "favicon.svg", media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"}
    )


@page_router.get("/ui/examples/{slug}", response_class=HTMLResponse)
async def example_forms(
    request: Request, services: ServicesDep, slug: Annotated[str, PathParam(max_length=64)]
) -> HTMLResponse:
    """The input forms filled with a built-in example (the text, its tables, its model)."""
    ex = examples().get(slug)
    if ex is None:
        raise NotFound(f"there is no example {slug}")
    ctx = _page_context(request, services)
    ctx["form"] = {"text": ex.text, "tables": list(ex.tables.items()), "model": ex.model}
    ctx["loaded"] = ex
    return _html(request, "forms.html", ctx)


# ----------------------------------------------------------------------------- errors


def _error_fragment(request: Request, exc: BaseException, title: str = "") -> HTMLResponse:
    """An error as the API words it (the one mapper), shown as HTML with its issues."""
    response = to_response(exc)
    try:
        body = json.loads(bytes(response.body))["error"]
    except (ValueError, KeyError, TypeError):  # pragma: no cover - the mapper always answers JSON
        body = {"code": "internal", "message": "optscribe could not answer this request"}
    status = response.status_code if response.status_code >= 400 else 422
    return _html(request, "error.html", error_view(body, title), status=_swappable(status))


def _issues_fragment(
    request: Request, code: str, message: str, issues: list[dict[str, Any]], title: str = ""
) -> HTMLResponse:
    body = {"code": code, "message": message, "issues": issues}
    return _html(request, "error.html", error_view(body, title), status=422)


def error_view(body: dict[str, Any], title: str = "") -> dict[str, Any]:
    """What error.html shows: a heading that sums the error up (``title``, else how many
    problems it has), the message only where it says more than its issues, and the issues."""
    issues = [i for i in body.get("issues") or [] if isinstance(i, dict)]
    message = str(body.get("message") or "")
    if len(issues) == 1 and str(issues[0].get("message") or "") in message:
        message = ""  # the mapper's one-issue message repeats the issue: show it once
    if title:
        heading = title
    elif issues:
        n = len(issues)
        subject = "The request" if body.get("code") == "invalid_request" else "The model"
        heading = f"{subject} has {n} problem{'s' if n != 1 else ''}"
    elif message:  # the message alone: it is the heading
        heading, message = message[:1].upper() + message[1:], ""
    else:
        heading = "This could not be done"
    return {"error": body, "heading": heading, "message": message, "issues": issues}


def _swappable(status: int) -> int:
    """HTMX swaps 422 answers into the page (see app.js); a server error stays a 500."""
    return 500 if status >= 500 and status not in (502, 503, 504) else 422


# ----------------------------------------------------------------------------- submissions


async def _start(
    request: Request, services: Any, store: JobStore, caller: str, body: dict[str, Any], title: str = ""
) -> HTMLResponse:
    """Validate and persist a job exactly as POST /v1/jobs does; answer its progress fragment."""
    try:
        job_in = JobIn.model_validate(body)
    except ValidationError as e:
        issues = request_issues(e.errors(include_url=False))
        return _issues_fragment(request, "invalid_request", "the request has problems", issues)
    if job_in.model is not None:
        found = await run_in_threadpool(precheck, job_in.model, services.settings.sync_model_max_variables)
        if found:
            return _issues_fragment(
                request, "check_failed", "Nothing was started: fix the model, then solve it again.", found
            )
    try:
        job = await submit_job(job_in, store, caller, services.settings, services)
    except Exception as e:  # worded by the one mapper; an unforeseen error is logged there
        return _error_fragment(request, e)
    return _html(request, "progress.html", {"job": job, "title": title or _job_title(job)})


def precheck(data: dict[str, Any], max_variables: int) -> list[dict[str, Any]]:
    """The checker's errors for a model a person pasted or edited, before a job is started
    for it, so they are shown where the person is typing. Only for models small enough to
    check at once (``max_variables``, counted from the set sizes); a larger one, or one the
    contract refuses, goes on to the job, whose validation and check report it."""
    from app.api.routes_sync import estimate_columns
    from solvers.check import check, errors

    try:
        model = load_model(data)
    except CheckFailed as e:  # several problems at once (two unknown fields): each of them
        return [i.to_dict() for i in e.issues]
    except ModelError:
        return []  # worded by the job submission, in the one error shape
    columns = estimate_columns(model)
    if columns is None or columns > max_variables:
        return []
    issues, _ = check(model)
    return [i.to_dict() for i in errors(issues)]


def _job_title(job: Job) -> str:
    return "Formalizing and solving" if job.kind == "formalize" else "Solving the model"


@ui_router.post("/jobs/text", response_class=HTMLResponse)
async def submit_text(
    request: Request,
    services: ServicesDep,
    store: JobStoreDep,
    caller: CallerDep,
    text: Annotated[str, Form(max_length=200_000)] = "",
) -> HTMLResponse:
    """A problem in words (and CSV tables): a formalize job, when an LLM is configured."""
    reason = _llm_reason(request)
    if reason is not None:
        return _html(request, "no_llm.html", {"llm_reason": reason, "configure_llm": CONFIGURE_LLM}, 422)
    if not text.strip():
        issue = Issue(code="empty", message="the problem text is empty", fix="describe the decision to make")
        return _issues_fragment(request, "invalid_request", "", [issue.to_dict()], "Nothing to formalize")
    form = await request.form()
    tables: dict[str, dict[str, str]] = {}
    for i in range(1, MAX_TABLES + 1):
        name = str(form.get(f"table_name_{i}") or "").strip()
        csv = str(form.get(f"table_csv_{i}") or "")
        if not csv.strip():
            continue
        tables[name or f"table{i}"] = {"csv": csv}
    return await _start(request, services, store, caller, {"text": text, "tables": tables})


def _parse_model_json(text: str) -> tuple[dict[str, Any] | None, str, list[dict[str, Any]]]:
    """The pasted model as data, or what is wrong with it (a heading and the issue: the JSON
    error with its line and column)."""
    if not text.strip():
        issue = Issue(code="empty", message="the model box is empty", fix="paste a model, or load an example")
        return None, "There is no model to solve", [issue.to_dict()]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        issue = Issue(
            code="json",
            message=f"malformed JSON: {e.msg}",
            where=f"line {e.lineno}, column {e.colno}",
            culprit=text[max(0, e.pos - 15) : e.pos + 15],
            position=e.pos,
            fix="check quotes, commas and brackets",
        )
        return None, "The model is not valid JSON", [issue.to_dict()]
    if not isinstance(data, dict):
        issue = Issue(code="json", message="a model is a JSON object {...}", fix="start the model with {")
        return None, "The model is not a JSON object", [issue.to_dict()]
    return data, "", []


@ui_router.post("/jobs/model", response_class=HTMLResponse)
async def submit_model(
    request: Request,
    services: ServicesDep,
    store: JobStoreDep,
    caller: CallerDep,
    model_json: Annotated[str, Form(max_length=5_000_000)] = "",
    source_text: Annotated[str, Form(max_length=200_000)] = "",
    text: Annotated[str, Form(max_length=200_000)] = "",
) -> HTMLResponse:
    """A model pasted or edited by hand (contract JSON): a solve job; no LLM needed.

    The problem's words go with it when there are any (``source_text`` from the editor of an
    earlier job, else the text box of the page), so the result marks the model's sentences in
    them; they are not formalized."""
    data, heading, issues = _parse_model_json(model_json)
    if data is None:
        return _issues_fragment(request, "invalid_json", "", issues, heading)
    body: dict[str, Any] = {"model": data}
    words = source_text if source_text.strip() else text
    if words.strip():
        body["source_text"] = words
    return await _start(request, services, store, caller, body)


# ----------------------------------------------------------------------------- a job


async def _owned(store: JobStore, job_id: str, caller: str) -> Job:
    job = await run_in_threadpool(store.get_job, job_id, caller)
    if job is None:
        raise NotFound(f"there is no job {job_id}")
    return job


def _job_model(job: Job) -> dict[str, Any] | None:
    """The model a job solved: the formalized one for text, else the one submitted."""
    result = job.result if isinstance(job.result, dict) else {}
    formalization = result.get("formalization")
    if isinstance(formalization, dict) and formalization.get("model"):
        model = formalization["model"]
        return model if isinstance(model, dict) else None
    model = job.request.get("model")
    return model if isinstance(model, dict) else None


def _load(model_json: dict[str, Any] | None) -> Model | None:
    if model_json is None:
        return None
    try:
        return load_model(model_json)
    except OptscribeError:
        return None


def job_text(job: Job) -> str | None:
    """The problem in words behind a job: the text it formalized, or the one sent with its model."""
    text = job.request.get("text", job.request.get("source_text"))
    return text if isinstance(text, str) else None


def _resolve_body(job: Job, model: dict[str, Any]) -> dict[str, Any]:
    """A new job solving ``model`` (an edit of ``job``'s), keeping ``job``'s words and options."""
    body: dict[str, Any] = {"model": model, "options": job.request.get("options") or {}}
    text = job_text(job)
    if text is not None:
        body["source_text"] = text
    return body


def job_context(job: Job) -> dict[str, Any]:
    """Everything the job fragment shows, computed from the stored job."""
    result: dict[str, Any] = dict(job.result) if isinstance(job.result, dict) else {}
    formalization = result.pop("formalization", None)
    model_json = _job_model(job)
    model = _load(model_json)
    solve = result if "status" in result else None
    explanation = (solve or {}).get("explanation") or None
    flagged = render.conflict_keys(explanation)
    view = render.model_view(model) if model is not None else None
    text = job_text(job)
    highlighted = None
    found: set[str] = set()
    sentences: list[Markup] | None = None
    if view is not None:
        quotes = view.quotes()
        if isinstance(text, str):
            highlighted, found = render.highlight(text, quotes, flagged)
        else:
            # A model without its text: its own source sentences, one by one, are the text.
            sentences = []
            for sentence in dict.fromkeys(q for _, q in quotes):
                marked, keys = render.highlight(sentence, quotes, flagged)
                sentences.append(marked)
                found |= keys
    rows = render.plan_rows(model, (solve or {}).get("values") or {}) if model is not None and solve else []
    chart = render.chart_data(rows)
    return {
        "job": job,
        "text": text,
        "highlighted": highlighted,
        "sentences": sentences,
        "found": found,
        "flagged": flagged,
        "view": view,
        "model_json": json.dumps(model_json, indent=2) if model_json is not None else "",
        "model_name": model.name if model is not None else "model",
        "solve": solve,
        "explanation": explanation,
        "conflicts": render.conflict_groups(explanation),
        "formalization": formalization,
        "rows": rows,
        "chart": chart.to_dict() if chart is not None else None,
        "exports": EXPORT_FORMATS,
        "error": job.error,
    }


@ui_router.get("/jobs/{job_id}", response_class=HTMLResponse)
async def job_fragment(
    request: Request, job_id: JobId, store: JobStoreDep, caller: CallerDep
) -> HTMLResponse:
    """The job as it stands: its questions, its result, or (still running) its progress."""
    job = await _owned(store, job_id, caller)
    if job.status == "needs_input":
        return _html(request, "questions.html", {"job": job, "questions": list(job.questions or [])})
    if not job.is_terminal:
        return _html(request, "progress.html", {"job": job, "title": _job_title(job)})
    return _html(request, "job.html", job_context(job))


@ui_router.post("/jobs/{job_id}/answers", response_class=HTMLResponse)
async def answer(
    request: Request, job_id: JobId, store: JobStoreDep, caller: CallerDep, services: ServicesDep
) -> HTMLResponse:
    """Answers to a job's clarifying questions (form fields ``question_N`` / ``answer_N``)."""
    form = await request.form()
    answers: dict[str, str] = {}
    for key, value in form.multi_items():
        if key.startswith("question_"):
            reply = str(form.get("answer_" + key.removeprefix("question_")) or "").strip()
            if reply:
                answers[str(value)] = reply
    if not answers:
        issue = Issue(code="empty", message="no question was answered", fix="answer at least one question")
        return _issues_fragment(request, "invalid_request", "", [issue.to_dict()], "Nothing to send")
    try:
        job = await submit_answers(store, job_id, caller, answers, services)
    except Exception as e:
        return _error_fragment(request, e)
    return _html(request, "progress.html", {"job": job, "title": "Formalizing with your answers"})


def _relaxed(job: Job, which: str) -> dict[str, Any]:
    """The job's model with one suggestion (``which`` = its position) or all of them applied."""
    from solvers.relax import apply_relaxation, apply_relaxations

    model = _load(_job_model(job))
    result = job.result if isinstance(job.result, dict) else {}
    raw = ((result.get("explanation") or {}).get("relaxations")) or []
    suggestions = [Relaxation.model_validate(r) for r in raw]
    if model is None or not suggestions:
        raise ModelError(Issue(code="relaxation", message="this job has no suggestion to apply"))
    if which == "all":
        return apply_relaxations(model, suggestions).dump()
    try:
        chosen = suggestions[int(which)]
    except (ValueError, IndexError):
        raise ModelError(Issue(code="relaxation", message=f"there is no suggestion {which[:20]!r}")) from None
    return apply_relaxation(model, chosen).dump()


@ui_router.post("/jobs/{job_id}/relax", response_class=HTMLResponse)
async def relax(
    request: Request,
    job_id: JobId,
    store: JobStoreDep,
    caller: CallerDep,
    services: ServicesDep,
    which: Annotated[str, Form(max_length=16)] = "0",
) -> HTMLResponse:
    """Apply a relaxation suggestion to an infeasible job's model and solve the result."""
    job = await _owned(store, job_id, caller)
    try:
        model = await run_in_threadpool(_relaxed, job, which)
    except Exception as e:  # a suggestion the model cannot take: ModelError, worded for people
        return _error_fragment(request, e, "The suggestion could not be applied")
    body = _resolve_body(job, model)
    return await _start(request, services, store, caller, body, "Solving with the suggestion applied")


def edited_constraint(model: dict[str, Any], cid: str, fields: dict[str, str]) -> dict[str, Any]:
    """``model`` with constraint ``cid``'s fields replaced by the edited text.

    A field that held a string takes the text as it is; one that held a number or a list takes
    it as JSON (a list may also be written as one comprehension string). An empty ``for_each``
    removes it."""
    out = json.loads(json.dumps(model))
    for c in out.get("constraints") or []:
        if isinstance(c, dict) and c.get("id") == cid:
            target = c
            break
    else:
        raise ModelError(Issue(code="unknown_constraint", message=f"the model has no constraint {cid!r}"))
    for key, text in fields.items():
        if key == "for_each":
            if text.strip():
                target["for_each"] = text.strip()
            else:
                target.pop("for_each", None)
            continue
        if key not in target:
            continue
        if isinstance(target[key], str):
            target[key] = text
            continue
        try:
            target[key] = json.loads(text)
        except json.JSONDecodeError:
            target[key] = text
    return dict(out)


@ui_router.post("/jobs/{job_id}/constraints/{cid}", response_class=HTMLResponse)
async def edit_constraint(
    request: Request,
    job_id: JobId,
    cid: Annotated[str, PathParam(max_length=64)],
    store: JobStoreDep,
    caller: CallerDep,
    services: ServicesDep,
) -> HTMLResponse:
    """Change one constraint of a job's model (form fields named like the constraint's) and solve."""
    job = await _owned(store, job_id, caller)
    model = _job_model(job)
    form = await request.form()
    fields = {k[len("field_") :]: str(v) for k, v in form.multi_items() if k.startswith("field_")}
    if model is None:
        return _issues_fragment(request, "no_model", "this job has no model to edit", [])
    try:
        edited = edited_constraint(model, cid, fields)
    except ModelError as e:
        return _error_fragment(request, e)
    body = _resolve_body(job, edited)
    return await _start(request, services, store, caller, body, f"Solving with {cid} changed")
