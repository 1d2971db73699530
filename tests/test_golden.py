"""The golden catalogue: every model under tests/golden/ on every backend it names.

Each file gives the model and what a correct solver must answer (status, objective,
and where they are unique the plan, the duals or the irreducible conflict). A solver
that lies (a wrong "optimal") fails here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from solvers.api import BACKENDS, SolveOptions, get_backend, load_model, solve_model
from solvers.lower import lower
from solvers.result import Status

GOLDEN = Path(__file__).parent / "golden"
FILES = sorted(GOLDEN.glob("*/*.json"))


def _cases() -> list[Any]:
    out = []
    for f in FILES:
        spec = json.loads(f.read_text())
        for backend in spec["backends"]:
            out.append(pytest.param(f, backend, id=f"{f.parent.name}/{f.stem}-{backend}"))
    return out


def _unlisted() -> list[Any]:
    out = []
    for f in FILES:
        spec = json.loads(f.read_text())
        for backend in BACKENDS:
            if backend not in spec["backends"]:
                out.append(pytest.param(f, backend, id=f"{f.parent.name}/{f.stem}-{backend}"))
    return out


def _close(a: float, b: float, rel: float) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=rel)


def test_catalogue_size() -> None:
    groups = {f.parent.name: 0 for f in FILES}
    for f in FILES:
        groups[f.parent.name] += 1
    assert groups.get("core", 0) >= 40
    assert groups.get("benchmarks", 0) >= 30


@pytest.mark.parametrize(("path", "backend"), _cases())
def test_golden(path: Path, backend: str) -> None:
    spec = json.loads(path.read_text())
    _check(spec, backend)


@pytest.mark.parametrize(("path", "backend"), _unlisted())
def test_golden_unlisted_backend_refuses_or_agrees(path: Path, backend: str) -> None:
    """A backend a file does not name must refuse the model with a reason, or solve it right."""
    spec = json.loads(path.read_text())
    instance = lower(load_model(spec["model"]))
    reason = get_backend(backend).accepts(instance)
    if reason is not None:
        assert len(reason) > 10
        return
    _check(spec, backend)


def _check(spec: dict[str, Any], backend: str) -> None:
    expect = spec["expect"]
    rel = float(expect.get("rel_tol", 1e-6))
    result = solve_model(spec["model"], backend=backend, options=SolveOptions(time_limit=60, threads=1))
    assert result.status == Status(expect["status"]), (result.status, result.message, result.log_tail[-800:])
    if "objective" in expect:
        assert result.objective is not None
        assert _close(result.objective, float(expect["objective"]), rel), (
            result.objective,
            expect["objective"],
        )
    for name, value in expect.get("values", {}).items():
        assert name in result.values, f"{name} missing from values"
        assert _close(result.values[name], float(value), max(rel, 1e-6)), (name, result.values[name], value)
    if "duals" in expect and backend != "cpsat":
        for name, value in expect["duals"].items():
            assert name in result.duals, f"no dual for {name}"
            assert _close(result.duals[name], float(value), 1e-6), (name, result.duals[name], value)
    if "conflict" in expect:
        assert result.explanation is not None
        # Integrality marks in a MILP conflict are not unique (which of several integer
        # variables a deletion filter keeps depends on order); constraints and bounds are.
        got = {c.name for c in result.explanation.conflict if c.kind != "integrality"}
        assert got == set(expect["conflict"]), (got, expect["conflict"])
        for c in result.explanation.conflict:
            if c.kind == "constraint":
                assert c.source, f"{c.name} has no source sentence"
