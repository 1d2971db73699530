"""The command line: exit codes (0 solver outcomes, 2 bad input, 1 internal errors), the
plan and conflict texts, --json against the result contract, exports, LP/MPS input.

Most tests run the app in-process with typer's CliRunner; a few run ``python -m app`` in
a subprocess, as a user would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from app.cli import app
from solvers.result import Result, Status

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
FURNITURE = str(EXAMPLES / "furniture.json")
STAFFING = str(EXAMPLES / "staffing_infeasible.json")
WORKSHOP = str(EXAMPLES / "workshop_schedule.json")

runner = CliRunner()


def run(*args: str, env: dict[str, str] | None = None) -> Any:
    return runner.invoke(app, list(args), env=env)


def _write(tmp_path: Path, name: str, data: Any) -> str:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(p)


BAD_SYMBOL = {
    "schema": "optscribe.model/v1",
    "name": "bad",
    "variables": [{"name": "x"}],
    "objective": {"sense": "maximize", "expression": "x"},
    "constraints": [{"id": "cap", "template": "linear", "expression": "y <= 3"}],
}
CONTINUOUS = {
    "schema": "optscribe.model/v1",
    "name": "lp",
    "variables": [{"name": "x", "upper": 4}],
    "objective": {"sense": "maximize", "expression": "2 * x"},
}


# ----------------------------------------------------------------------------- schema


def test_schema() -> None:
    r = run("schema")
    assert r.exit_code == 0
    schema = json.loads(r.stdout)
    assert schema["title"] == "optscribe.model/v1"
    assert "constraints" in schema["properties"]


def test_schema_of_results() -> None:
    r = run("schema", "--result")
    assert r.exit_code == 0
    assert "status" in json.loads(r.stdout)["properties"]


# ----------------------------------------------------------------------------- check


def test_check_clean_model() -> None:
    r = run("check", FURNITURE)
    assert r.exit_code == 0
    assert "no issues" in r.stdout


def test_check_reports_culprit_and_fix(tmp_path: Path) -> None:
    r = run("check", _write(tmp_path, "bad.json", BAD_SYMBOL))
    assert r.exit_code == 2
    assert "error:" in r.stdout and "'y'" in r.stdout and "fix:" in r.stdout


def test_check_json(tmp_path: Path) -> None:
    r = run("check", "--json", _write(tmp_path, "bad.json", BAD_SYMBOL))
    assert r.exit_code == 2
    issues = json.loads(r.stdout)
    assert issues and issues[0]["severity"] == "error" and issues[0]["fix"]


def test_check_warnings_exit_zero(tmp_path: Path) -> None:
    m = dict(CONTINUOUS, variables=[{"name": "x", "upper": 4}, {"name": "unused"}])
    r = run("check", _write(tmp_path, "w.json", m))
    assert r.exit_code == 0
    assert "warning:" in r.stdout and "unused" in r.stdout


def test_check_for_a_backend(tmp_path: Path) -> None:
    r = run("check", "--backend", "cpsat", _write(tmp_path, "lp.json", CONTINUOUS))
    assert r.exit_code == 2
    assert "continuous" in r.stdout


# ----------------------------------------------------------------------------- solve


def test_solve_furniture_plan() -> None:
    r = run("solve", FURNITURE)
    assert r.exit_code == 0, r.stderr
    out = r.stdout
    assert "furniture: optimal" in out
    assert "objective: 1350 (maximize)" in out
    assert "x[chair]" in out and "units produced" in out
    assert "backend:" in out and "why:" in out
    assert "big_batch" not in out.split("plan", 1)[1]  # zero values stay out of the plan


@pytest.mark.parametrize("backend", ["highs", "cpsat", "pyomo"])
def test_solve_json_validates(backend: str) -> None:
    r = run("solve", FURNITURE, "--json", "--backend", backend)
    assert r.exit_code == 0, r.stderr
    result = Result.model_validate(json.loads(r.stdout))
    assert result.status == Status.OPTIMAL
    assert result.backend == backend
    assert result.objective == pytest.approx(1350)
    assert result.values["x[chair]"] == 20


def test_solve_infeasible_exits_zero_with_conflict_and_sentences() -> None:
    r = run("solve", STAFFING)
    assert r.exit_code == 0, r.stderr
    out = r.stdout
    assert "clinic_staffing: infeasible" in out
    assert "The weekly wage budget is $4000." in out
    assert "budget_cap" in out and "cover[morning]" in out
    assert "relaxations" in out and "4920" in out


def test_solve_infeasible_json() -> None:
    r = run("solve", STAFFING, "--json")
    assert r.exit_code == 0
    result = Result.model_validate(json.loads(r.stdout))
    assert result.status == Status.INFEASIBLE
    assert result.explanation is not None
    assert "budget_cap" in {c.id for c in result.explanation.conflict}
    assert all(c.source for c in result.explanation.conflict if c.kind == "constraint")


def test_solve_schedule_shows_every_start() -> None:
    r = run("solve", WORKSHOP)
    assert r.exit_code == 0, r.stderr
    assert "objective: 11 (minimize)" in r.stdout
    assert "cut[table].start" in r.stdout  # a start at 0 is part of the schedule


def test_solve_unbounded_exits_zero(tmp_path: Path) -> None:
    m = dict(CONTINUOUS, variables=[{"name": "x"}])
    r = run("solve", _write(tmp_path, "u.json", m))
    assert r.exit_code == 0
    assert "unbounded" in r.stdout


def test_solve_options(tmp_path: Path) -> None:
    r = run(
        "solve", FURNITURE, "--backend", "highs", "--time-limit", "5", "--mip-gap", "0.01", "--threads", "1"
    )
    assert r.exit_code == 0, r.stderr
    assert "optimal" in r.stdout


def test_solve_with_a_pyomo_solver_by_name() -> None:
    r = run("solve", FURNITURE, "--backend", "pyomo", "--pyomo-solver", "appsi_highs", "--json")
    assert r.exit_code == 0, r.stderr
    assert "appsi_highs" in json.loads(r.stdout)["solver_version"]
    assert os.environ.get("OPTSCRIBE_PYOMO_SOLVER") != "appsi_highs"  # restored


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--threads", "0"], "threads"),
        (["--time-limit", "-1"], "time-limit"),
        (["--backend", "gurobi"], "backend"),
    ],
)
def test_bad_options_exit_two(args: list[str], needle: str) -> None:
    r = run("solve", FURNITURE, *args)
    assert r.exit_code == 2
    assert needle in r.stderr


def test_backend_that_cannot_take_the_model_exits_two(tmp_path: Path) -> None:
    r = run("solve", _write(tmp_path, "lp.json", CONTINUOUS), "--backend", "cpsat")
    assert r.exit_code == 2
    assert "optscribe: error:" in r.stderr and "continuous" in r.stderr
    assert r.stdout == ""


def test_model_errors_exit_two(tmp_path: Path) -> None:
    r = run("solve", _write(tmp_path, "bad.json", BAD_SYMBOL))
    assert r.exit_code == 2
    assert "'y'" in r.stderr and "Traceback" not in r.stderr


def test_contract_violation_exits_two(tmp_path: Path) -> None:
    r = run("solve", _write(tmp_path, "bad.json", {"schema": "optscribe.model/v1", "variabels": []}))
    assert r.exit_code == 2
    assert "variabels" in r.stderr


@pytest.mark.parametrize("text", ['{"schema": "optscribe.model/v1",', "", "not json at all", "[1, 2"])
def test_malformed_json_exits_two(text: str, tmp_path: Path) -> None:
    path = _write(tmp_path, "broken.json", text)
    for cmd in ("solve", "check"):
        r = run(cmd, path)
        assert r.exit_code == 2, (cmd, r.stdout, r.stderr)
        assert "optscribe: error:" in r.stderr
        assert "Traceback" not in r.stderr + r.stdout


def test_missing_and_unreadable_files_exit_two(tmp_path: Path) -> None:
    for path in (str(tmp_path / "nope.json"), str(tmp_path), str(tmp_path / "nope.lp")):
        r = run("solve", path)
        assert r.exit_code == 2, path
        assert "optscribe: error:" in r.stderr


def test_internal_error_exits_one_without_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    import solvers.api

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("something broke")

    monkeypatch.setattr(solvers.api, "solve_model", boom)
    monkeypatch.delenv("OPTSCRIBE_DEBUG", raising=False)
    r = run("solve", FURNITURE)
    assert r.exit_code == 1
    assert "internal error: RuntimeError: something broke" in r.stderr
    assert "Traceback" not in r.stderr
    r = run("solve", FURNITURE, env={"OPTSCRIBE_DEBUG": "1"})
    assert r.exit_code == 1
    assert "Traceback" in r.stderr


# ----------------------------------------------------------------------------- LP / MPS input


@pytest.mark.parametrize("fmt", ["lp", "mps"])
def test_solve_lp_and_mps_files(fmt: str, tmp_path: Path) -> None:
    out = tmp_path / f"furniture.{fmt}"
    r = run("export", FURNITURE, "--format", fmt, "-o", str(out))
    assert r.exit_code == 0, r.stderr
    r = run("solve", str(out), "--json")
    assert r.exit_code == 0, r.stderr
    result = Result.model_validate(json.loads(r.stdout))
    assert result.status == Status.OPTIMAL and result.objective == pytest.approx(1350)
    assert result.values["x(chair)"] == 20  # keyed by the file's column names
    r = run("solve", str(out))
    assert r.exit_code == 0 and "x(chair)" in r.stdout


def test_infeasible_lp_file(tmp_path: Path) -> None:
    out = tmp_path / "staff.lp"
    assert run("export", STAFFING, "-f", "lp", "-o", str(out)).exit_code == 0
    r = run("solve", str(out))
    assert r.exit_code == 0
    assert "infeasible" in r.stdout and "budget_cap" in r.stdout


def test_garbage_lp_file_exits_two(tmp_path: Path) -> None:
    r = run("solve", _write(tmp_path, "bad.mps", "garbage\n"))
    assert r.exit_code == 2
    assert "cannot read" in r.stderr


def test_lp_file_with_another_backend_exits_two(tmp_path: Path) -> None:
    out = tmp_path / "f.lp"
    assert run("export", FURNITURE, "-f", "lp", "-o", str(out)).exit_code == 0
    r = run("solve", str(out), "--backend", "cpsat")
    assert r.exit_code == 2 and "highs" in r.stderr


# ----------------------------------------------------------------------------- export


@pytest.mark.parametrize("fmt", ["lp", "mps", "pyomo", "json"])
def test_export_to_stdout(fmt: str) -> None:
    r = run("export", FURNITURE, "--format", fmt)
    assert r.exit_code == 0, r.stderr
    assert r.stdout.strip()
    if fmt == "json":
        assert json.loads(r.stdout)["name"] == "furniture"
    if fmt == "pyomo":
        compile(r.stdout, "furniture.py", "exec")


def test_export_to_file(tmp_path: Path) -> None:
    out = tmp_path / "f.py"
    r = run("export", FURNITURE, "-f", "pyomo", "-o", str(out))
    assert r.exit_code == 0
    assert "pyo.ConcreteModel" in out.read_text()
    assert r.stdout == ""


def test_export_needs_a_format() -> None:
    r = run("export", FURNITURE)
    assert r.exit_code == 2


def test_export_refusal_exits_two(tmp_path: Path) -> None:
    m = {
        "schema": "optscribe.model/v1",
        "sets": {"I": [1, 2, 3]},
        "variables": [{"name": "v", "index": ["I"], "domain": "integer", "upper": 3}],
        "constraints": [{"id": "diff", "template": "all_different", "terms": "v[i] for i in I"}],
    }
    r = run("export", _write(tmp_path, "ad.json", m), "-f", "lp")
    assert r.exit_code == 2
    assert "all_different" in r.stderr


# ----------------------------------------------------------------------------- help


def test_every_command_and_option_has_help() -> None:
    group = get_command(app)
    commands = group.commands  # type: ignore[attr-defined]
    expected = {"schema", "check", "solve", "export", "formalize", "run", "eval", "serve", "worker"}
    expected |= {"settings", "fix"}
    assert set(commands) == expected
    for name, cmd in commands.items():
        assert cmd.help, name
        for param in cmd.params:
            if param.name == "help":
                continue
            assert getattr(param, "help", None), f"{name} {param.name}"
        r = run(name, "--help")
        assert r.exit_code == 0


# ----------------------------------------------------------------------------- as a user runs it


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    full_env.pop("OPTSCRIBE_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=full_env,
        timeout=120,
        check=False,
    )


def test_subprocess_solve_furniture() -> None:
    p = _cli("solve", "examples/furniture.json")
    assert p.returncode == 0, p.stderr
    assert "x[chair]" in p.stdout and "1350" in p.stdout


def test_subprocess_json_result_contract() -> None:
    p = _cli("solve", "examples/staffing_infeasible.json", "--json")
    assert p.returncode == 0, p.stderr
    result = Result.model_validate(json.loads(p.stdout))
    assert result.status == Status.INFEASIBLE


def test_a_bad_file_is_named_in_its_message(tmp_path: Path) -> None:
    from app.cli import app as cli_app

    runner = CliRunner()
    text = _write(tmp_path, "notes.txt", "hello")
    r = runner.invoke(cli_app, ["solve", text])
    assert r.exit_code == 2
    assert f"{text}: not valid JSON" in r.stderr and "contract JSON (.json)" in r.stderr
    listed = _write(tmp_path, "list.json", "[1, 2]")
    r = runner.invoke(cli_app, ["check", listed])
    assert r.exit_code == 2 and f"{listed}: a model is a JSON object, not a list" in r.stderr


def test_subprocess_malformed_json(tmp_path: Path) -> None:
    p = _cli("solve", _write(tmp_path, "broken.json", '{"name": '))
    assert p.returncode == 2
    assert p.stderr.startswith(f"optscribe: error: {tmp_path / 'broken.json'}: not valid JSON: EOF")
    assert "Traceback" not in p.stderr and p.stdout == ""


def test_subprocess_missing_file() -> None:
    p = _cli("check", "does/not/exist.json")
    assert p.returncode == 2
    assert "Traceback" not in p.stderr


def test_subprocess_internal_error() -> None:
    code = (
        "import sys, solvers.api\n"
        "def boom(*a, **k):\n"
        "    raise RuntimeError('kaput')\n"
        "solvers.api.solve_model = boom\n"
        "from app.cli import main\n"
        "sys.argv = ['optscribe', 'solve', 'examples/furniture.json']\n"
        "main()\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "OPTSCRIBE_DEBUG"},
    )
    assert p.returncode == 1
    assert "internal error" in p.stderr and "kaput" in p.stderr
    assert "Traceback" not in p.stderr


def test_subprocess_usage_error() -> None:
    p = _cli("solve")
    assert p.returncode == 2
    assert "Traceback" not in p.stderr


def test_serve_takes_its_data_dir_and_workers_from_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`serve --data-dir D --workers N` overrides OPTSCRIBE_DATA_DIR and OPTSCRIBE_WORKERS."""
    import uvicorn

    seen: dict[str, Any] = {}

    def fake_run(app: Any, **kwargs: Any) -> None:
        services = app.state.services
        seen.update(kwargs, data_dir=services.settings.data_dir, workers=services.settings.workers)
        services.store.close()

    monkeypatch.setattr(uvicorn, "run", fake_run)
    r = runner.invoke(app, ["serve", "--data-dir", str(tmp_path / "d"), "--workers", "0", "--port", "0"])
    assert r.exit_code == 0, r.output
    assert seen["data_dir"] == tmp_path / "d" and seen["workers"] == 0 and seen["port"] == 0
    assert (tmp_path / "d" / "jobs.sqlite3").exists()
