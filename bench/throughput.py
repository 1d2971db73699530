"""Small models solved per minute through the solve pool, with 1 and 2 workers.

The models are the golden core catalogue (tests/golden/core: 45 small LP, MILP, CP and
scheduling models, a few infeasible and unbounded ones among them), sent round-robin with
automatic backend routing. Each worker count gets its own ``SolvePool``; as many caller
threads as workers keep every worker busy for ``--seconds``. Every answer's status is
checked against the catalogue's. Printed: solves per minute, the speed-up from 1 to 2
workers beside the machine's own ceiling (k pure-Python processes against one: on a shared
or throttled machine it is well below k), per-solve latency (p50 / p99) beside the same
models solved in this process, and what starting a worker costs (fork server, fork from it,
spawn). ``cores`` is the CPU the workers actually got (1.0 = one core busy all the time) and
``cpu ms`` their CPU per solve: when that stays flat from 1 to 2 workers while ``cores`` does
not double, the machine (other load, a CPU quota) is the limit, not the pool.

Run:  . .venv/bin/activate && python bench/throughput.py [--workers 1 2] [--seconds 15]
Target (issue 4): at least 600 a minute on 2 cores, near-linear from 1 to 2 workers.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.jobs.runner import Limits, SolvePool  # noqa: E402

CORE = ROOT / "tests" / "golden" / "core"


def _models() -> list[tuple[str, dict[str, Any], str]]:
    out = []
    for f in sorted(CORE.glob("*.json")):
        spec = json.loads(f.read_text())
        out.append((f.stem, spec["model"], spec["expect"]["status"]))
    return out


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def in_process(models: list[tuple[str, dict[str, Any], str]], rounds: int) -> float:
    """Mean seconds per solve of the same models in this process (imports already paid)."""
    from solvers.api import SolveOptions, solve_model

    opts = SolveOptions(time_limit=10.0, threads=1)
    for _, m, _ in models:
        solve_model(m, None, opts)
    t0 = time.perf_counter()
    for _ in range(rounds):
        for _, m, _ in models:
            solve_model(m, None, opts)
    return (time.perf_counter() - t0) / (rounds * len(models))


def through_pool(
    workers: int, seconds: float, models: list[tuple[str, dict[str, Any], str]], context: str
) -> dict[str, Any]:
    limits = Limits(time_limit=10.0)
    # no recycling after max_tasks during the run, so that the workers' CPU can be read at the
    # end (recycling costs one fork from the fork server per 1000 solves: about 0.3 %)
    with SolvePool(workers, limits=limits, context=context, max_tasks=10**9) as pool:
        pool.wait_ready()
        for _, m, _ in models[: 2 * workers]:
            pool.solve(m, {})
        counter = itertools.count()
        lock = threading.Lock()
        latencies: list[float] = []
        wrong: list[str] = []
        end = time.monotonic() + seconds

        def caller() -> None:
            while time.monotonic() < end:
                name, model, expect = models[next(counter) % len(models)]
                t = time.perf_counter()
                out = pool.solve(model, {})
                dt = time.perf_counter() - t
                status = out.result["status"] if out.result else out.reason
                with lock:
                    latencies.append(dt)
                    if status != expect:
                        wrong.append(f"{name}: {status} (expected {expect})")

        pids = pool.pids()
        cpu0 = sum(_cpu_seconds(p) for p in pids)
        t0 = time.monotonic()
        threads = [threading.Thread(target=caller) for _ in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - t0
        cpu = sum(_cpu_seconds(p) for p in pids) - cpu0
        return {
            "workers": workers,
            "solves": len(latencies),
            "seconds": wall,
            "per_minute": 60.0 * len(latencies) / wall,
            "p50_ms": 1000 * _pct(latencies, 0.5),
            "p99_ms": 1000 * _pct(latencies, 0.99),
            "worker_cpu_ms_per_solve": 1000 * cpu / max(1, len(latencies)),
            "worker_cpu_share": cpu / wall,  # cores the workers got, on average
            "wrong": wrong,
            "workers_started": pool.stats["started"],
        }


def startup_costs() -> dict[str, float]:
    """Seconds to a ready worker: fork server first start, fork from it, spawn (imports included)."""
    out: dict[str, float] = {}
    code = "import solvers.api, solvers.backends.highs, solvers.backends.cpsat, solvers.explain"
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    out["python_with_solver_imports_s"] = time.perf_counter() - t
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    out["bare_python_s"] = time.perf_counter() - t
    for label, context, warm in (
        ("forkserver_first_worker_s", "forkserver", True),  # starts the fork server (if not running)
        ("forkserver_worker_s", "forkserver", True),
        ("forkserver_worker_cold_s", "forkserver", False),
        ("spawn_worker_s", "spawn", True),
        ("spawn_worker_cold_s", "spawn", False),
    ):
        t = time.perf_counter()
        with SolvePool(1, context=context, warm=warm) as pool:
            pool.wait_ready()
            out[label] = time.perf_counter() - t
            if label in ("forkserver_worker_cold_s", "spawn_worker_cold_s"):
                m = json.loads((CORE / "knapsack.json").read_text())["model"]
                t = time.perf_counter()
                pool.solve(m, {"backend": "highs"})
                first = time.perf_counter() - t
                t = time.perf_counter()
                pool.solve(m, {"backend": "highs"})
                out[label.replace("_s", "_first_solve_s")] = first
                out[label.replace("_s", "_second_solve_s")] = time.perf_counter() - t
    return out


_BURN = "import time\nt = time.perf_counter(); n = 0\nwhile time.perf_counter() - t < {s}: n += 1\nprint(n)"


def cpu_ceiling(workers: int, seconds: float = 2.0) -> float:
    """How much faster k busy processes get through pure-Python work than one, on this machine now.

    The pool cannot scale better than this; on a shared or throttled machine it is below k.
    """
    procs = [
        subprocess.Popen([sys.executable, "-c", _BURN.format(s=seconds)], stdout=subprocess.PIPE, text=True)
        for _ in range(workers)
    ]
    counts = [int(p.communicate()[0]) for p in procs]
    return float(sum(counts))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seconds", type=float, default=15.0, help="measuring time per worker count")
    ap.add_argument("--context", choices=["forkserver", "spawn"], default="forkserver")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    models = _models()
    print(
        f"{len(models)} models from {CORE.relative_to(ROOT)}; {os.cpu_count()} CPUs; context {args.context}"
    )
    costs = startup_costs()
    print("\nstarting a worker (seconds until it is ready to solve):")
    for k, v in costs.items():
        print(f"  {k:42s} {v:8.3f}")
    ceiling = {w: cpu_ceiling(w) / cpu_ceiling(1) for w in args.workers}
    print(
        "\nthis machine now: k busy processes do "
        + ", ".join(f"{v:.2f}x (k={k})" for k, v in ceiling.items())
        + " the work of one (the ceiling for the pool's speed-up)"
    )
    here = in_process(models, 3)
    print(f"\nin this process: {1000 * here:.1f} ms a solve on average, {60 / here:.0f} a minute on one core")
    rows = [through_pool(w, args.seconds, models, args.context) for w in args.workers]
    print(
        f"\n{'workers':>7} {'solves':>7} {'per minute':>11} {'speed-up':>9} {'ceiling':>8} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'cores':>6} {'cpu ms':>7} wrong"
    )
    base = rows[0]["per_minute"] / rows[0]["workers"]
    for r in rows:
        r["speedup"] = r["per_minute"] / base
        r["ceiling"] = ceiling[r["workers"]]
        print(
            f"{r['workers']:>7} {r['solves']:>7} {r['per_minute']:>11.0f} {r['speedup']:>9.2f} "
            f"{r['ceiling']:>8.2f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['worker_cpu_share']:>6.2f} "
            f"{r['worker_cpu_ms_per_solve']:>7.1f} {len(r['wrong'])}"
        )
        for w in r["wrong"][:5]:
            print(f"    wrong: {w}")
    best = max(rows, key=lambda r: r["per_minute"])
    print(
        f"\ntarget: >= 600 a minute on 2 cores -> {best['per_minute']:.0f} with {best['workers']} worker(s): "
        + ("met" if best["per_minute"] >= 600 else "NOT met")
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"startup": costs, "in_process_s": here, "ceiling": ceiling, "pool": rows}, indent=2)
        )
    if any(r["wrong"] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
