"""Transportation problems n x n: how long optscribe takes to hand a model to HiGHS.

Three ways to build the same LP (n sources, n destinations, n*n shipments, 2n rows):

- optscribe: the contract JSON *text* (cost as a dense nested list over S x D in set
  order, supply and demand as lists) -> ``load_model`` -> ``lower`` -> ``HighsBackend().compile``,
  which ends with the model passed to HiGHS (``passModel``);
- direct: the same model built with highspy from numpy arrays (CSC matrix, one ``passModel``);
- pyomo: a hand-written ``ConcreteModel`` with indexed ``Var`` / ``Constraint``, handed to
  HiGHS by ``pyomo.contrib.solver`` ``Highs.set_instance`` (Pyomo's persistent HiGHS
  interface builds the highspy model; nothing is solved).

Every measurement runs in a fresh child process, so peak memory (``ru_maxrss``) belongs to
that measurement alone; the time is the best of ``--repeat`` runs in that child. Making the
input (JSON text, numpy arrays) is not timed. optscribe's time is also given "from parsed
model" (``lower`` + ``compile`` of that run, without the JSON validation in ``load_model``),
so that the cost of reading the text shows apart. With ``--verify-max N`` (default 100) the
models of size <= N are also solved and their optima compared.

    python bench/transport.py                       # sizes 10 100 300 1000
    python bench/transport.py --sizes 10 100 --skip-pyomo-above 1000 --json bench/out/t.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("optscribe", "direct", "pyomo")


# ----------------------------------------------------------------------------- data


def make_data(n: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed + n)
    cost = rng.integers(1, 100, size=(n, n)).astype(np.float64)
    demand = rng.integers(10, 50, size=n).astype(np.float64)
    supply = np.full(n, np.ceil(demand.sum() / n) + 5.0)  # feasible: total supply > demand
    return cost, supply, demand


def model_json(n: int, cost: np.ndarray, supply: np.ndarray, demand: np.ndarray) -> str:
    """The contract text, written row by row so that making it stays cheap."""
    nums = lambda a: ",".join(f"{v:g}" for v in a.tolist())  # noqa: E731
    cost_text = "[" + ",".join("[" + nums(row) + "]" for row in cost) + "]"
    elements = lambda p: json.dumps([f"{p}{k}" for k in range(1, n + 1)])  # noqa: E731
    return (
        '{"schema": "optscribe.model/v1", "name": "transport",'
        f' "sets": {{"S": {elements("s")}, "D": {elements("d")}}},'
        ' "parameters": {'
        f'"cost": {{"index": ["S", "D"], "values": {cost_text}}},'
        f' "supply": {{"index": ["S"], "values": [{nums(supply)}]}},'
        f' "demand": {{"index": ["D"], "values": [{nums(demand)}]}}}},'
        ' "variables": [{"name": "x", "index": ["S", "D"], "description": "units shipped"}],'
        ' "objective": {"sense": "minimize",'
        ' "expression": "sum(cost[s, d] * x[s, d] for s in S for d in D)"},'
        ' "constraints": ['
        '{"id": "supply_limit", "template": "linear", "for_each": "s in S",'
        ' "expression": "sum(x[s, d] for d in D) <= supply[s]"},'
        ' {"id": "demand_met", "template": "linear", "for_each": "d in D",'
        ' "expression": "sum(x[s, d] for s in S) >= demand[d]"}]}'
    )


# ----------------------------------------------------------------------------- the three builds


def build_optscribe(n: int, text: str) -> tuple[Any, dict[str, float]]:
    from solvers.api import load_model
    from solvers.lower import lower

    t0 = time.perf_counter()
    model = load_model(text)
    t1 = time.perf_counter()
    instance = lower(model)
    t2 = time.perf_counter()
    try:
        from solvers.backends.base import SolveOptions
        from solvers.backends.highs import HighsBackend
    except ImportError:  # before the HiGHS backend exists: lowering only
        return None, {"load": t1 - t0, "lower": t2 - t1}
    compiled = HighsBackend().compile(instance, SolveOptions())
    t3 = time.perf_counter()
    return compiled.solver_model, {"load": t1 - t0, "lower": t2 - t1, "compile": t3 - t2}


def build_direct(
    n: int, cost: np.ndarray, supply: np.ndarray, demand: np.ndarray
) -> tuple[Any, dict[str, float]]:
    import highspy

    t0 = time.perf_counter()
    ncol = n * n
    # column s*n + d is x[s, d]: one nonzero in supply row s, one in demand row n + d
    a_start = np.arange(0, 2 * ncol + 1, 2, dtype=np.int32)
    a_index = np.empty(2 * ncol, dtype=np.int32)
    a_index[0::2] = np.repeat(np.arange(n, dtype=np.int32), n)
    a_index[1::2] = n + np.tile(np.arange(n, dtype=np.int32), n)
    a_value = np.ones(2 * ncol)
    inf = highspy.kHighsInf
    row_lower = np.concatenate([np.full(n, -inf), demand])
    row_upper = np.concatenate([supply, np.full(n, inf)])
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    # the flat-array overload: numpy buffers go straight to HiGHS (an LP still passes an
    # all-zero integrality array, as highspy reads past an empty one)
    status = h.passModel(
        ncol, 2 * n, 2 * ncol, int(highspy.MatrixFormat.kColwise), int(highspy.ObjSense.kMinimize), 0.0,
        cost.reshape(-1), np.zeros(ncol), np.full(ncol, inf), row_lower, row_upper,
        a_start, a_index, a_value, np.zeros(ncol, dtype=np.int32),
    )  # fmt: skip
    if status != highspy.HighsStatus.kOk:
        raise RuntimeError(f"passModel: {status}")
    return h, {"build": time.perf_counter() - t0}


def build_pyomo(
    n: int, cost: np.ndarray, supply: np.ndarray, demand: np.ndarray
) -> tuple[Any, dict[str, float]]:
    import pyomo.environ as pyo
    from pyomo.contrib.solver.solvers.highs import Highs

    t0 = time.perf_counter()
    m = pyo.ConcreteModel()
    m.S = pyo.RangeSet(n)
    m.D = pyo.RangeSet(n)
    c = {(s + 1, d + 1): float(cost[s, d]) for s in range(n) for d in range(n)}
    m.cost = pyo.Param(m.S, m.D, initialize=c)
    m.supply = pyo.Param(m.S, initialize={s + 1: float(v) for s, v in enumerate(supply)})
    m.demand = pyo.Param(m.D, initialize={d + 1: float(v) for d, v in enumerate(demand)})
    m.x = pyo.Var(m.S, m.D, domain=pyo.NonNegativeReals)
    m.supply_limit = pyo.Constraint(m.S, rule=lambda m, s: sum(m.x[s, d] for d in m.D) <= m.supply[s])
    m.demand_met = pyo.Constraint(m.D, rule=lambda m, d: sum(m.x[s, d] for s in m.S) >= m.demand[d])
    m.obj = pyo.Objective(expr=sum(m.cost[s, d] * m.x[s, d] for s in m.S for d in m.D), sense=pyo.minimize)
    t1 = time.perf_counter()
    opt = Highs()
    opt.set_instance(m)
    t2 = time.perf_counter()
    return (opt, m), {"build": t1 - t0, "hand_over": t2 - t1}


# ----------------------------------------------------------------------------- one child


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _objective(kind: str, handle: Any) -> float | None:
    if handle is None:
        return None
    if kind == "pyomo":
        opt, m = handle
        res = opt.solve(m)
        return float(res.incumbent_objective)
    handle.setOptionValue("output_flag", False)
    handle.run()
    return float(handle.getInfo().objective_function_value)


def worker(kind: str, n: int, repeat: int, verify: bool) -> dict[str, Any]:
    # imports first, so that the baseline includes them for every kind alike
    import highspy  # noqa: F401

    if kind == "optscribe":
        import solvers.api  # noqa: F401
        import solvers.backends.highs  # noqa: F401
        import solvers.lower  # noqa: F401
    elif kind == "pyomo":
        import pyomo.contrib.solver.solvers.highs  # noqa: F401
        import pyomo.environ  # noqa: F401
    cost, supply, demand = make_data(n)
    text = model_json(n, cost, supply, demand) if kind == "optscribe" else ""
    base = _rss_mb()
    best: tuple[float, dict[str, float], Any] | None = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        if kind == "optscribe":
            handle, parts = build_optscribe(n, text)
        elif kind == "direct":
            handle, parts = build_direct(n, cost, supply, demand)
        else:
            handle, parts = build_pyomo(n, cost, supply, demand)
        dt = time.perf_counter() - t0
        if best is None or dt < best[0]:
            best = (dt, parts, handle)
        else:
            del handle
    assert best is not None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out: dict[str, Any] = {
        "kind": kind,
        "n": n,
        "seconds": best[0],
        "parts": best[1],
        "peak_mb": peak,
        "base_mb": base,
        "input_mb": len(text) / 2**20,
        "lowered_only": kind == "optscribe" and "compile" not in best[1],
    }
    if kind == "optscribe":
        # the same run without JSON validation: what lowering and the hand-over cost
        out["from_parsed"] = best[1]["lower"] + best[1].get("compile", 0.0)
    if verify:
        out["objective"] = _objective(kind, best[2])
    return out


# ----------------------------------------------------------------------------- the table


def run_child(kind: str, n: int, repeat: int, verify: bool, timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, str(n), "--repeat", str(repeat)]
    if verify:
        cmd.append("--verify")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"kind": kind, "n": n, "error": f"timed out after {timeout:.0f}s"}
    if p.returncode != 0:
        return {"kind": kind, "n": n, "error": (p.stderr.strip().splitlines() or ["?"])[-1]}
    return dict(json.loads(p.stdout.strip().splitlines()[-1]))


def _fmt(x: float | None, width: int, spec: str = ".4f") -> str:
    return (" " * width + "-")[-width:] if x is None else format(x, f">{width}{spec}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 300, 1000])
    ap.add_argument("--skip-pyomo-above", type=int, default=300, metavar="N")
    ap.add_argument("--repeat", type=int, default=3, help="runs per child; the best time counts")
    ap.add_argument(
        "--verify-max", type=int, default=100, metavar="N", help="solve and compare optima up to this n"
    )
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per child process")
    ap.add_argument("--json", type=Path, help="also write the measurements here")
    ap.add_argument("--worker", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    ap.add_argument("--verify", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        kind, n = args.worker[0], int(args.worker[1])
        print(json.dumps(worker(kind, n, args.repeat, args.verify)))
        return 0

    from importlib.metadata import version

    print(
        f"transportation n x n; python {sys.version.split()[0]}, numpy {np.__version__}, "
        f"highspy {version('highspy')}, pyomo {version('pyomo')}, {os.cpu_count()} cpus"
    )
    print("optscribe: JSON text -> load_model -> lower -> HighsBackend.compile (model passed to HiGHS)")
    print("direct:    numpy arrays -> CSC -> highspy passModel")
    print("pyomo:     ConcreteModel (indexed Var/Constraint) -> pyomo.contrib.solver Highs.set_instance")
    print(f"each cell: best of {args.repeat} runs in a fresh process; peak = ru_maxrss of that process (MB)")
    if any(n > args.skip_pyomo_above for n in args.sizes):
        print(f"pyomo is skipped above n = {args.skip_pyomo_above} (--skip-pyomo-above)")
    print()
    head = (
        f"{'n':>5} {'vars':>9} | {'optscribe s':>11} {'direct s':>9} {'pyomo s':>9} | {'opt/direct':>10} "
        f"{'opt/pyomo':>9} | {'parsed s':>9} {'parsed/dir':>10} | {'peak MB opt':>11} {'direct':>7} "
        f"{'pyomo':>7} | optscribe load/lower/compile s"
    )
    print(head)
    print("-" * len(head))
    results: list[dict[str, Any]] = []
    failed = False
    for n in args.sizes:
        verify = n <= args.verify_max
        row: dict[str, dict[str, Any]] = {}
        for kind in KINDS:
            if kind == "pyomo" and n > args.skip_pyomo_above:
                continue
            r = run_child(
                kind, n, args.repeat if n < 1000 else max(1, min(args.repeat, 2)), verify, args.timeout
            )
            row[kind] = r
            results.append(r)
        o, d, p = row.get("optscribe", {}), row.get("direct", {}), row.get("pyomo", {})
        so, sd, sp = o.get("seconds"), d.get("seconds"), p.get("seconds")
        sf = o.get("from_parsed")
        parts = o.get("parts", {})
        split = "/".join(f"{parts[k]:.3f}" for k in ("load", "lower", "compile") if k in parts)
        if o.get("lowered_only"):
            split += " (no HiGHS backend yet: lowering only)"
        vs_direct = so / sd if so and sd else None
        vs_pyomo = so / sp if so and sp else None
        parsed_vs_direct = sf / sd if sf and sd else None
        peaks = [o.get("peak_mb"), d.get("peak_mb"), p.get("peak_mb")]
        print(
            f"{n:>5} {n * n:>9} | {_fmt(so, 11)} {_fmt(sd, 9)} {_fmt(sp, 9)} | "
            f"{_fmt(vs_direct, 10, '.2f')} {_fmt(vs_pyomo, 9, '.2f')} | "
            f"{_fmt(sf, 9)} {_fmt(parsed_vs_direct, 10, '.2f')} | "
            f"{_fmt(peaks[0], 11, '.0f')} {_fmt(peaks[1], 7, '.0f')} {_fmt(peaks[2], 7, '.0f')} | {split}"
        )
        for kind, r in row.items():
            if "error" in r:
                failed = True
                print(f"      {kind} failed: {r['error']}")
        objs = {k: r["objective"] for k, r in row.items() if r.get("objective") is not None}
        if objs:
            ref = next(iter(objs.values()))
            same = all(abs(v - ref) <= 1e-6 * max(1.0, abs(ref)) for v in objs.values())
            failed |= not same
            print(
                f"      optimum {'agrees' if same else 'DIFFERS'}: "
                + ", ".join(f"{k} {v:.6g}" for k, v in objs.items())
            )
    print()
    print("targets: optscribe within 2x of direct highspy at every size, and faster than hand-written Pyomo")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
