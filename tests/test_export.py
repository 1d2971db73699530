"""Exports and LP/MPS imports: every format gives back the optimum optscribe finds.

LP and MPS text is re-read by highspy and solved; the generated Pyomo script is run in a
subprocess and its printed objective compared; JSON is loaded back as the same model.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import highspy
import pytest

from solvers.api import SolveOptions, load_model, solve_model
from solvers.errors import BackendError, ModelError
from solvers.export import export, import_lp_mps, lp_name, solve_imported
from solvers.lower import lower
from solvers.result import Status

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
GOLDEN = ROOT / "tests" / "golden"


def _model(**parts: Any) -> dict[str, Any]:
    return {"schema": "optscribe.model/v1", "name": "t", **parts}


def _golden(name: str) -> dict[str, Any]:
    for f in GOLDEN.glob(f"*/{name}.json"):
        spec: dict[str, Any] = json.loads(f.read_text())
        return spec["model"]
    pytest.skip(f"golden model {name} is not in the catalogue")


QP = _model(
    variables=[{"name": "x"}, {"name": "y"}],
    objective={"sense": "minimize", "expression": "x*x + y*y - 2*x - 4*y + x*y + 10"},
)
ODD_NAMES = _model(
    sets={"S": ["New York", "it's", "a,b", "max"], "T": {"range": [1, 2]}},
    parameters={"cap": {"index": ["S"], "values": {"New York": 3, "it's": 2, "a,b": 1.5, "max": 4}}},
    variables=[
        {"name": "flow", "index": ["S", "T"], "upper": 4},
        {"name": "bin", "domain": "binary"},
        {"name": "st", "domain": "integer", "upper": 7},
    ],
    objective={
        "sense": "maximize",
        "expression": "sum(flow[s, t] for s in S for t in T) + 2 * bin + st - 0.5",
    },
    constraints=[
        {
            "id": "cap_st",
            "template": "upper_bound",
            "for_each": "s in S, t in T",
            "expression": "flow[s, t] <= cap[s]",
        },
        {
            "id": "total",
            "template": "sum",
            "for_each": "t in T",
            "expression": "sum(flow[s, t] for s in S) <= 5 * t",
        },
        {"id": "link", "template": "fixed_charge", "variable": "st", "indicator": "bin", "upper": 7},
        {"id": "pair", "template": "either_or", "options": ["st <= 3", "flow['max', 1] <= 1"]},
    ],
)

# (name, model source) pairs solved by HiGHS: each export must give back the optimum
CASES: list[tuple[str, Any]] = [
    ("furniture", EXAMPLES / "furniture.json"),
    ("workshop_schedule", EXAMPLES / "workshop_schedule.json"),
    ("qp", QP),
    ("odd_names", ODD_NAMES),
]
GOLDEN_NAMES = [
    "diet",
    "transportation",
    "facility_location",
    "lot_sizing",
    "semi_continuous",
    "minmax_makespan",
]


def _cases() -> list[Any]:
    out = [pytest.param(src, id=name) for name, src in CASES]
    out += [pytest.param(name, id=f"golden-{name}") for name in GOLDEN_NAMES]
    return out


def _resolve(src: Any) -> Any:
    return _golden(src) if isinstance(src, str) else src


def _reference(src: Any) -> float:
    r = solve_model(src, backend="highs", options=SolveOptions(explain=False))
    assert r.status == Status.OPTIMAL, r
    assert r.objective is not None
    return r.objective


def _solve_text(text: str, suffix: str, tmp_path: Path) -> tuple[Any, float]:
    p = tmp_path / f"model{suffix}"
    p.write_text(text)
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    assert h.readModel(str(p)) == highspy.HighsStatus.kOk
    h.run()
    return h.getModelStatus(), float(h.getInfo().objective_function_value)


# ----------------------------------------------------------------------------- LP / MPS


@pytest.mark.parametrize("src", _cases())
@pytest.mark.parametrize("fmt", ["lp", "mps"])
def test_lp_mps_round_trip_gives_the_same_optimum(src: Any, fmt: str, tmp_path: Path) -> None:
    src = _resolve(src)
    want = _reference(src)
    text = export(load_model(src), fmt)
    status, got = _solve_text(text, f".{fmt}", tmp_path)
    assert status == highspy.HighsModelStatus.kOptimal
    assert got == pytest.approx(want, rel=1e-6, abs=1e-6)


def test_lp_keeps_sense_and_model_names() -> None:
    text = export(load_model(EXAMPLES / "furniture.json"), "lp")
    assert re.search(r"^max", text, re.M)
    for name in ("x(chair)", "x(table)", "big_batch", "capacity(wood)", "capacity(labor)", "tables_min"):
        assert name in text
    assert "[" not in text.split("\n", 1)[1]  # brackets are the LP grammar's, not names'


def test_lp_names_survive_highs() -> None:
    m = load_model(ODD_NAMES)
    text = export(m, "lp")
    assert "flow(New_York,1)" in text and "flow(it_s,2)" in text
    assert "bin_" in text and "st_" in text  # LP keywords get a trailing underscore


def test_lp_name_rules() -> None:
    assert lp_name("x[chair]") == "x(chair)"
    assert lp_name("y[New York,1]") == "y(New_York,1)"
    assert lp_name("op[a].start") == "op(a).start"
    assert lp_name("c[a-b+c]") == "c(a_b_c)"
    assert lp_name("free") == "free_"
    assert lp_name("1abc") == "_1abc"
    assert lp_name("r<=:") == "r___"


def test_solve_lp_and_mps_files(tmp_path: Path) -> None:
    m = load_model(EXAMPLES / "furniture.json")
    for fmt in ("lp", "mps"):
        p = tmp_path / f"furniture.{fmt}"
        p.write_text(export(m, fmt))
        r = solve_imported(import_lp_mps(p))
        assert r.status == Status.OPTIMAL
        assert r.objective == pytest.approx(1350.0)
        assert r.values["x(chair)"] == 20 and r.values["x(table)"] == 15
        assert r.backend == "highs"


def test_imported_lp_duals_by_row_name(tmp_path: Path) -> None:
    lp = _model(
        variables=[{"name": "x"}, {"name": "y"}],
        objective={"sense": "maximize", "expression": "3 * x + 2 * y"},
        constraints=[
            {"id": "cap", "template": "linear", "expression": "x + 2 * y <= 4"},
            {"id": "cap2", "template": "linear", "expression": "3 * x + y <= 6"},
        ],
    )
    direct = solve_model(lp, backend="highs")
    p = tmp_path / "lp.lp"
    p.write_text(export(load_model(lp), "lp"))
    r = solve_imported(import_lp_mps(p))
    assert r.objective == pytest.approx(direct.objective)
    assert r.duals == pytest.approx(direct.duals)


def test_infeasible_lp_file_has_a_conflict(tmp_path: Path) -> None:
    p = tmp_path / "staff.lp"
    p.write_text(export(load_model(EXAMPLES / "staffing_infeasible.json"), "lp"))
    r = solve_imported(import_lp_mps(p))
    assert r.status == Status.INFEASIBLE
    assert r.explanation is not None
    assert "budget_cap" in {c.name for c in r.explanation.conflict}


def test_unbounded_lp_file(tmp_path: Path) -> None:
    p = tmp_path / "u.lp"
    p.write_text("max\n obj: x + y\nst\n c: x - y <= 1\nend\n")
    r = solve_imported(import_lp_mps(p))
    assert r.status in (Status.UNBOUNDED, Status.INFEASIBLE_OR_UNBOUNDED)
    assert r.explanation is not None


def test_unreadable_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mps"
    bad.write_text("this is not an MPS file\n")
    with pytest.raises(ModelError):
        import_lp_mps(bad)
    with pytest.raises(ModelError):
        import_lp_mps(tmp_path / "missing.lp")
    other = tmp_path / "x.txt"
    other.write_text("")
    with pytest.raises(ModelError):
        import_lp_mps(other)
    # HiGHS reads text with no LP section at all as an empty model, "OK"
    prose = tmp_path / "prose.lp"
    prose.write_text("this is not an lp file\n")
    with pytest.raises(ModelError, match="holds no variables"):
        import_lp_mps(prose)


def test_lp_export_refuses_what_highs_refuses() -> None:
    m = load_model(
        _model(
            sets={"I": [1, 2, 3]},
            variables=[{"name": "v", "index": ["I"], "domain": "integer", "upper": 3}],
            constraints=[{"id": "diff", "template": "all_different", "terms": "v[i] for i in I"}],
        )
    )
    with pytest.raises(BackendError, match="all_different"):
        export(m, "lp")


def test_unknown_format() -> None:
    with pytest.raises(ModelError, match="unknown export format"):
        export(load_model(EXAMPLES / "furniture.json"), "xlsx")


# ----------------------------------------------------------------------------- JSON


@pytest.mark.parametrize("name", ["furniture", "staffing_infeasible", "workshop_schedule"])
def test_json_round_trip(name: str) -> None:
    m = load_model(EXAMPLES / f"{name}.json")
    text = export(m, "json")
    assert load_model(text) == m
    assert json.loads(text)["schema"] == "optscribe.model/v1"


GOLDEN_MODELS = sorted((Path(__file__).parent / "golden").glob("*/*.json"))


@pytest.mark.parametrize("path", GOLDEN_MODELS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_golden_model_survives_dump_and_load(path: Path) -> None:
    """``Model.dump()`` is what jobs store and the web form edits: nothing may change on the
    way, a free variable's ``"lower": null`` included (its default is 0)."""
    m = load_model(json.loads(path.read_text())["model"])
    assert load_model(m.dump()) == m
    assert load_model(m.to_json()) == m


def test_a_free_variable_stays_free_through_dump() -> None:
    m = load_model(
        {
            "variables": [{"name": "x", "lower": None}, {"name": "y"}],
            "objective": {"sense": "minimize", "expression": "x + y"},
            "constraints": [{"id": "c", "template": "linear", "expression": "x + y >= -5"}],
        }
    )
    data = m.dump()
    assert data["variables"][0]["lower"] is None and "lower" in data["variables"][0]
    assert load_model(data).variables[0].lower is None


def test_export_accepts_an_instance() -> None:
    m = load_model(EXAMPLES / "furniture.json")
    assert export(lower(m), "json") == export(m, "json")
    assert export(lower(m), "lp") == export(m, "lp")


# ----------------------------------------------------------------------------- Pyomo source


def _run_script(src: str, tmp_path: Path) -> tuple[str, float | None]:
    p = tmp_path / "model_pyomo.py"
    p.write_text(src)
    proc = subprocess.run(
        [sys.executable, str(p)], capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False
    )
    assert proc.returncode == 0, proc.stderr
    status = re.search(r"^status: (\w+)", proc.stdout, re.M)
    assert status is not None, proc.stdout
    obj = re.search(r"^objective: (\S+)", proc.stdout, re.M)
    return status.group(1), float(obj.group(1)) if obj else None


@pytest.mark.parametrize("src", _cases())
def test_pyomo_script_gives_the_same_optimum(src: Any, tmp_path: Path) -> None:
    src = _resolve(src)
    want = _reference(src)
    code = export(load_model(src), "pyomo")
    assert "optscribe" not in "\n".join(
        line for line in code.splitlines() if line.startswith(("import", "from"))
    )
    compile(code, "model_pyomo.py", "exec")  # it parses (and nothing below runs it in this process)
    status, got = _run_script(code, tmp_path)
    assert status == "convergenceCriteriaSatisfied"
    assert got == pytest.approx(want, rel=1e-6, abs=1e-6)


def test_pyomo_script_of_an_infeasible_model(tmp_path: Path) -> None:
    code = export(load_model(EXAMPLES / "staffing_infeasible.json"), "pyomo")
    status, got = _run_script(code, tmp_path)
    assert status == "provenInfeasible" and got is None


def test_pyomo_script_is_indexed_and_commented() -> None:
    code = export(load_model(EXAMPLES / "furniture.json"), "pyomo")
    assert "m.x = pyo.Var(['chair', 'table'], domain=pyo.Integers, bounds=(0, None))" in code
    assert "m.capacity['wood'] = 2 * m.x['chair'] + 4 * m.x['table'] <= 100" in code
    assert "# capacity (linear): The shop has 100 units of wood and 90 hours of labor." in code
    assert "sense=pyo.maximize" in code
    assert "raise_exception_on_nonoptimal_result=False" in code


def test_pyomo_script_with_a_long_row(tmp_path: Path) -> None:
    # a row with many terms is written as one list, which Python parses without deep nesting
    n = 3000
    m = _model(
        sets={"I": {"range": [1, n]}},
        variables=[{"name": "x", "index": ["I"], "upper": 1}],
        objective={"sense": "maximize", "expression": "sum(x[i] for i in I)"},
        constraints=[{"id": "budget", "template": "sum", "expression": "sum(i * x[i] for i in I) <= 100"}],
    )
    want = _reference(m)
    status, got = _run_script(export(load_model(m), "pyomo"), tmp_path)
    assert status == "convergenceCriteriaSatisfied"
    assert got == pytest.approx(want, rel=1e-6)
