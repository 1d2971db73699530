"""``optscribe fix``: the suggested changes applied, the model solved again, the fixed model written."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from app.cli import app
from solvers.api import load_model, solve_model
from solvers.result import Status

ROOT = Path(__file__).resolve().parents[1]
STAFFING = ROOT / "examples" / "staffing_infeasible.json"
FURNITURE = ROOT / "examples" / "furniture.json"
CORE = ROOT / "tests" / "golden" / "core"


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(app, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_fix_applies_the_suggestion_solves_and_writes_the_fixed_model(tmp_path: Path) -> None:
    out = tmp_path / "fixed.json"
    code, stdout, stderr = run("fix", str(STAFFING), "-o", str(out))
    assert code == 0, stdout + stderr
    assert "Applied 1 change(s)" in stdout
    assert '- budget_cap: rhs 4000 -> 4920 ("The weekly wage budget is $4000.")' in stdout
    assert "clinic_staffing: optimal" in stdout and "objective: 4920" in stdout
    fixed = load_model(json.loads(out.read_text()))
    result = solve_model(fixed)
    assert result.status == Status.OPTIMAL and result.objective == 4920
    budget = next(c for c in fixed.constraints if c.id == "budget_cap")
    assert "Suggested fix applied" in (budget.description or "")
    assert budget.source == "The weekly wage budget is $4000."  # the sentence stays the user's
    # the budget is read by budget_cap alone: its value is edited, the constraint reads as before
    assert budget.expression == "sum(wage[s] * nurses[s] for s in S) <= budget"  # type: ignore[union-attr]
    assert fixed.parameters["budget"].value == 4920
    assert "4000 -> 4920 (constraint budget_cap)" in (fixed.parameters["budget"].description or "")


def test_fix_without_output_says_so_and_a_feasible_model_is_left_alone() -> None:
    code, stdout, stderr = run("fix", str(STAFFING))
    assert code == 0 and "add -o FILE" in stderr
    code, stdout, _ = run("fix", str(FURNITURE))
    assert code == 0 and stdout.strip() == "furniture: optimal; there is nothing to fix."


def test_fix_only_picks_suggestions_and_refuses_unknown_ones(tmp_path: Path) -> None:
    code, stdout, stderr = run("fix", str(STAFFING), "--only", "budget_cap")
    assert code == 0 and "Applied 1 change(s)" in stdout
    code, stdout, stderr = run("fix", str(STAFFING), "--only", "nope")
    assert code == 2
    assert "no suggestion for nope" in stderr and "choose among: budget_cap" in stderr


def test_fix_of_a_logical_conflict_says_no_number_can_fix_it(tmp_path: Path) -> None:
    spec = json.loads((CORE / "pigeonhole_4_3.json").read_text())
    path = tmp_path / "pigeons.json"
    path.write_text(json.dumps(spec["model"]))
    code, stdout, _ = run("fix", str(path))
    assert code == 0
    assert "No change to a number makes this model feasible" in stdout
