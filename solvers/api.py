"""The public face of the model core: load, check, solve.

``load_model`` turns JSON text, bytes, a dict or a file into a validated ``Model`` (or a
``ModelError`` whose message says what is wrong and where); ``solve_model`` lowers it,
routes it to a backend, solves it and returns the result contract.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .backends.base import Backend, SolveOptions
from .errors import BackendError, CheckFailed, Issue, ModelError
from .ir import Instance
from .lower import lower
from .model import Model
from .result import Result, Status
from .route import BACKENDS, choose_backend

MAX_MODEL_BYTES = 200 * 1024 * 1024

__all__ = [
    "BACKENDS",
    "SolveOptions",
    "get_backend",
    "load_model",
    "solve_instance",
    "solve_model",
    "validation_issues",
]


_UNION_MEMBER = re.compile(
    r"^(?:function-(?:before|after|wrap|plain)\[.*\]|constrained-\w+|nullable\[.*\]"
    r"|float|int|str|bool|(?:list|dict|tuple|set)\[.*\])$"
)


def validation_issues(err: ValidationError, limit: int = 20) -> list[Issue]:
    """pydantic's errors as Issues: the path in the JSON, what is wrong, what to do."""
    out: list[Issue] = []
    seen: set[tuple[str, str]] = set()
    for e in err.errors(include_url=False):
        # pydantic names the members of a union it tried ("function-before[...]", "float",
        # "constrained-str"): a person wants the field, each complaint once.
        loc = ".".join(str(p) for p in e["loc"] if not _UNION_MEMBER.match(str(p)))
        msg = e["msg"]
        if (loc, msg) in seen:
            continue
        seen.add((loc, msg))
        if len(out) == limit:
            break
        if e["type"] == "extra_forbidden":
            msg = f"unknown field {str(e['loc'][-1])!r}"
            fix = "remove it (see `optscribe schema` for the fields of the contract)"
        elif e["type"] == "missing":
            fix = "add it"
        elif e["type"] == "union_tag_invalid":
            fix = "use one of the templates listed in the contract"
        else:
            fix = ""
        out.append(Issue(code="schema", message=msg, where=loc, fix=fix))
    return out


def load_model(source: str | bytes | dict[str, Any] | Path | Model) -> Model:
    """Validate contract JSON (text, bytes, parsed dict, or a path) into a Model.

    A file's problems name the file (``where`` starts with its path)."""
    if isinstance(source, Model):
        return source
    if isinstance(source, Path):
        try:
            return _load(_read(source))
        except CheckFailed as e:
            raise CheckFailed([_in_file(source, i) for i in e.issues]) from None
        except ModelError as e:
            raise ModelError(_in_file(source, e.issue)) from None
    return _load(source)


def _in_file(path: Path, issue: Issue) -> Issue:
    if issue.code == "io" or str(path) in issue.message:
        return issue
    where = f"{path}: {issue.where}" if issue.where else str(path)
    fix = issue.fix
    if issue.code == "json" and path.suffix.lower() != ".json":
        fix = "a model file is contract JSON (.json); LP and MPS files go by .lp / .mps"
    return dataclasses.replace(issue, where=where, fix=fix)


def _read(source: Path) -> bytes:
    try:
        size = source.stat().st_size
    except OSError as e:
        raise ModelError(Issue(code="io", message=f"cannot read {source}: {e.strerror}")) from None
    if size > MAX_MODEL_BYTES:
        raise ModelError(
            Issue(code="too-large", message=f"{source} is larger than {MAX_MODEL_BYTES // 2**20} MB")
        )
    return source.read_bytes()


def _load(source: str | bytes | dict[str, Any]) -> Model:
    try:
        if isinstance(source, (str, bytes)):
            if len(source) > MAX_MODEL_BYTES:
                raise ModelError(
                    Issue(code="too-large", message=f"the model is larger than {MAX_MODEL_BYTES // 2**20} MB")
                )
            return Model.model_validate_json(source)
        return Model.model_validate(source)
    except ValidationError as e:
        issues = validation_issues(e)
        json_err = [i for i in issues if "json" in i.message.lower() and i.where in ("", "schema")]
        if json_err or any(x["type"] == "json_invalid" for x in e.errors()):
            first = str(e.errors()[0]["msg"]).removeprefix("Invalid JSON: ")
            raise ModelError(
                Issue(code="json", message=f"not valid JSON: {first}", fix="check quotes, commas, brackets")
            ) from None
        if [x["type"] for x in e.errors()] == ["model_type"]:
            raise ModelError(
                Issue(
                    code="schema",
                    message="a model is a JSON object, not " + _json_kind(source),
                    fix='write {"schema": "optscribe.model/v1", "variables": [...], ...}',
                )
            ) from None
        if len(issues) == 1:
            raise ModelError(issues[0]) from None
        raise CheckFailed(issues) from None


def _json_kind(source: object) -> str:
    try:
        value = json.loads(source) if isinstance(source, (str, bytes)) else source
    except ValueError:
        return "this"
    return {list: "a list", str: "a string", bool: "true/false", type(None): "null"}.get(
        type(value), "a number"
    )


def get_backend(name: str) -> Backend:
    if name == "highs":
        from .backends.highs import HighsBackend

        return HighsBackend()
    if name == "cpsat":
        from .backends.cpsat import CpSatBackend

        return CpSatBackend()
    if name == "pyomo":
        from .backends.pyomo import PyomoBackend

        return PyomoBackend()
    raise BackendError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")


def solve_instance(
    instance: Instance, backend: str | None = None, options: SolveOptions | None = None
) -> Result:
    options = options or SolveOptions()
    if backend is None:
        backend, reason = choose_backend(instance)
    else:
        reason = f"{backend} was asked for"
    be = get_backend(backend)
    refusal = be.accepts(instance)
    if refusal:
        raise BackendError(f"{backend} cannot solve this model: {refusal}")
    t0 = time.perf_counter()
    compiled = be.compile(instance, options)
    result = be.solve(compiled, options)
    if result.solve_seconds == 0.0:
        result.solve_seconds = time.perf_counter() - t0
    result.route_reason = reason
    return result


def solve_model(
    model: Model | str | bytes | dict[str, Any] | Path,
    backend: str | None = None,
    options: SolveOptions | None = None,
) -> Result:
    """Load, lower, route and solve. Model mistakes raise ModelError/CheckFailed;
    solver outcomes (infeasible, unbounded, time limit) come back as results."""
    m = load_model(model)
    instance = lower(m, collect=True)
    return solve_instance(instance, backend, options)


def result_json(result: Result) -> str:
    return json.dumps(result.to_json_dict(), indent=2)


_ = Status  # re-exported for callers that branch on status
