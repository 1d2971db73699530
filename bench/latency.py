"""``POST /v1/solve`` latency at a fixed request rate, against the same solves in-process.

A real ``optscribe serve`` (``python -m app serve``, no job workers, access log off, a
temporary data directory) is started on a free loopback port, or ``--url`` names one that
runs already. This process, the second one, sends small models at ``--rate`` requests a
second for ``--seconds`` on an open-loop schedule: request i is due at ``t0 + i / rate``
whether or not the earlier ones have been answered, and its latency is counted from that due
time, not from when a connection was free to send it, so a server that stalls is charged for
every request that waited behind the stall (no coordinated omission). Requests go over
``--connections`` keep-alive connections, request i on connection i mod k, each from a
thread of its own (stdlib ``http.client``; see ``_service.Http`` for why that client).

The baseline is the same models solved in this process, on the same schedule, by the calls
``solve_small`` makes behind the route: ``load_model`` (the contract's validation), ``lower``
and ``solvers.api.solve_instance`` with the same options (time limit 10 s, explain on). The
difference is what the service adds: HTTP on loopback, JSON both ways, the framework, the
hop to a worker thread and back, the size checks, and the waits for a CPU at each of those
wake-ups. A third run sends ``GET /healthz`` on the same schedule: the floor of HTTP and the
framework alone. The three runs alternate in ``--rounds`` rounds, so that each meets the
same background load. The CPU the server spends per request (its process and children,
from /proc) is printed beside the CPU of the in-process solves: that difference does not
depend on the machine's other load, which the latencies do.

Models (``--model``, repeatable, sent round-robin): names from tests/golden/core, or
``furniture``, the example model of the API's documentation (app/api/schemas.py: two integer
variables, so a tiny MILP in HiGHS, about 10 ms). Default: the transportation and diet LPs
(under 2 ms each in process) and furniture.

Run:  . .venv/bin/activate && python bench/latency.py [--rate 50] [--seconds 10] [--json OUT]
Target (issue 4): overhead under 5 ms at p50 on this 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _service import Http, Processes, exit_on_sigterm, golden, pct, session_cpu_seconds  # noqa: E402

DEFAULT_MODELS = ["transportation", "diet", "furniture"]
TIME_LIMIT = 10.0


def load(name: str) -> tuple[dict[str, Any], str]:
    if name == "furniture":
        from app.api.schemas import FURNITURE

        return FURNITURE, "optimal"
    return golden(name)


class Sample:
    __slots__ = ("i", "model", "due", "sent", "done", "status", "ok")

    def __init__(self, i: int, model: str, due: float) -> None:
        self.i, self.model, self.due = i, model, due
        self.sent = self.done = 0.0
        self.status = 0
        self.ok = False

    @property
    def latency(self) -> float:
        return self.done - self.due


def schedule(rate: float, seconds: float, names: list[str]) -> list[Sample]:
    n = max(1, round(rate * seconds))
    return [Sample(i, names[i % len(names)], i / rate) for i in range(n)]


def over_http(
    url: str,
    path: str,
    bodies: dict[str, bytes | None],
    expect: dict[str, str],
    samples: list[Sample],
    connections: int,
) -> float:
    """Send ``samples`` on their schedule; answers the wall time from the first due time.

    Request i goes out on connection i mod ``connections``, from that connection's own thread,
    which sleeps until the request is due: no hand-over between client threads is timed. A
    request finds its connection busy only when the one before it on that connection is still
    unanswered; it then goes out late, and its latency, counted from its due time, says so.
    """
    errors: list[BaseException] = []
    clients = [Http(url) for _ in range(connections)]
    for c in clients:
        c.request("GET", "/healthz")  # connected before the clock starts

    def sender(client: Http, mine: list[Sample]) -> None:
        for s in mine:
            delay = s.due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            body = bodies[s.model]
            s.sent = time.perf_counter()
            try:
                s.status, data = client.request("POST" if body is not None else "GET", path, body)
            except OSError as e:
                s.done = time.perf_counter()
                s.status = -1
                errors.append(e)
                client.close()
                continue
            s.done = time.perf_counter()
            if s.status == 200 and expect.get(s.model):
                s.ok = json.loads(data).get("status") == expect[s.model]
            else:
                s.ok = s.status == 200

    t0 = time.perf_counter() + 0.05
    for s in samples:
        s.due += t0
    threads = [
        threading.Thread(target=sender, args=(c, samples[k::connections]), daemon=True)
        for k, c in enumerate(clients)
    ]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for c in clients:
            c.close()
    if errors:
        print(f"  {len(errors)} requests failed, the first: {errors[0]!r}", file=sys.stderr)
    return max(s.done for s in samples) - t0


def in_process(models: dict[str, dict[str, Any]], expect: dict[str, str], samples: list[Sample]) -> float:
    """The same solves in this process on the same schedule (one caller: a late one waits)."""
    from solvers.api import load_model, solve_instance
    from solvers.backends.base import SolveOptions
    from solvers.lower import lower

    options = SolveOptions(time_limit=TIME_LIMIT, explain=True)
    t0 = time.perf_counter() + 0.05
    for s in samples:
        s.due += t0
        delay = s.due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        s.sent = time.perf_counter()
        result = solve_instance(lower(load_model(models[s.model]), collect=True), None, options)
        s.done = time.perf_counter()
        s.status = 200
        s.ok = result.status == expect[s.model]
    return max(s.done for s in samples) - t0


def summary(samples: list[Sample], wall: float, cpu: float | None) -> dict[str, Any]:
    lat = [1000 * s.latency for s in samples]
    service = [1000 * (s.done - s.sent) for s in samples]
    return {
        "n": len(samples),
        "p50_ms": pct(lat, 0.5),
        "p90_ms": pct(lat, 0.9),
        "p99_ms": pct(lat, 0.99),
        "max_ms": max(lat),
        # from the send, leaving out any wait for a free connection (or for the caller)
        "service_p50_ms": pct(service, 0.5),
        "late_p99_ms": pct([1000 * (s.sent - s.due) for s in samples], 0.99),
        "achieved_rate": len(samples) / wall,
        "cpu_ms_per_request": None if cpu is None else 1000 * cpu / len(samples),
        "non_200": sum(s.status != 200 for s in samples),
        "wrong": sum(s.status == 200 and not s.ok for s in samples),
    }


class Run:
    """The samples of one kind of run, over all rounds: wall time and CPU seconds summed."""

    def __init__(self) -> None:
        self.samples: list[Sample] = []
        self.wall = 0.0
        self.cpu: float | None = 0.0

    def add(self, samples: list[Sample], wall: float, cpu: float | None) -> None:
        self.samples += samples
        self.wall += wall
        self.cpu = None if cpu is None or self.cpu is None else self.cpu + cpu

    def by_model(self, names: list[str]) -> dict[str, dict[str, Any]]:
        out = {name: summary([s for s in self.samples if s.model == name], self.wall, None) for name in names}
        out["all"] = summary(self.samples, self.wall, self.cpu)
        return out


def warm_up(url: str, bodies: dict[str, bytes | None], models: dict[str, Any], rounds: int = 5) -> None:
    """Imports, first solves, code paths: paid before anything is timed, on both sides."""
    from solvers.api import solve_model
    from solvers.backends.base import SolveOptions

    client = Http(url)
    try:
        for _ in range(rounds):
            for name, body in bodies.items():
                status, data = client.request("POST", "/v1/solve", body)
                if status != 200:
                    raise RuntimeError(f"warm-up: {name}: HTTP {status}: {data[:500]!r}")
                solve_model(models[name], None, SolveOptions(time_limit=TIME_LIMIT, explain=True))
            client.request("GET", "/healthz")
    finally:
        client.close()


def run(args: argparse.Namespace, url: str, server_sid: int | None) -> dict[str, Any]:
    """``--rounds`` rounds of: the API, the same solves in process, /healthz (each
    ``--seconds / --rounds`` long), so that all three meet the same background load."""
    models: dict[str, dict[str, Any]] = {}
    expect: dict[str, str] = {}
    for name in args.model:
        models[name], expect[name] = load(name)
    bodies: dict[str, bytes | None] = {
        name: json.dumps({"model": m, "options": {"time_limit": TIME_LIMIT}}).encode()
        for name, m in models.items()
    }
    warm_up(url, bodies, models)

    def over_loopback(path: str, b: dict[str, bytes | None], e: dict[str, str]) -> tuple[Any, ...]:
        samples = schedule(args.rate, seconds, args.model)
        cpu0 = 0.0 if server_sid is None else session_cpu_seconds(server_sid)
        wall = over_http(url, path, b, e, samples, args.connections)
        cpu = None if server_sid is None else session_cpu_seconds(server_sid) - cpu0
        return samples, wall, cpu

    api, direct, floor = Run(), Run(), Run()
    seconds = args.seconds / args.rounds
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}: POST /v1/solve, in process, GET /healthz", flush=True)
        api.add(*over_loopback("/v1/solve", bodies, expect))
        samples = schedule(args.rate, seconds, args.model)
        cpu0 = time.process_time()
        wall = in_process(models, expect, samples)
        direct.add(samples, wall, time.process_time() - cpu0)
        floor.add(*over_loopback("/healthz", dict.fromkeys(args.model), {}))
    return {
        "api": api.by_model(args.model),
        "direct": direct.by_model(args.model),
        "healthz": floor.by_model(args.model)["all"],
    }


def report(args: argparse.Namespace, url: str, out: dict[str, Any]) -> bool:
    api, direct, floor = out["api"], out["direct"], out["healthz"]
    print(
        f"\n{url}: {args.rate:g} requests/s scheduled, {args.seconds:g} s of each kind in {args.rounds} "
        f"round(s), {args.connections} keep-alive connections; latency from the scheduled send time, ms"
    )
    head = f"{'model':>16} {'n':>5} | {'api p50':>8} {'p90':>7} {'p99':>7} | "
    head += f"{'direct p50':>10} {'p90':>7} {'p99':>7} | {'overhead p50':>12} {'ratio':>6}"
    print(head)
    for name in [*args.model, "all"]:
        a, d = api[name], direct[name]
        over = a["p50_ms"] - d["p50_ms"]
        print(
            f"{name:>16} {a['n']:>5} | {a['p50_ms']:>8.2f} {a['p90_ms']:>7.2f} {a['p99_ms']:>7.2f} | "
            f"{d['p50_ms']:>10.2f} {d['p90_ms']:>7.2f} {d['p99_ms']:>7.2f} | {over:>12.2f} "
            f"{a['p50_ms'] / d['p50_ms']:>6.2f}"
        )
    a, d = api["all"], direct["all"]
    print(
        f"\nGET /healthz on the same schedule: p50 {floor['p50_ms']:.2f} ms, p99 {floor['p99_ms']:.2f} ms "
        "(HTTP on loopback and the framework, nothing solved)"
    )
    if a["cpu_ms_per_request"] is not None:
        print(
            f"CPU per request: server {a['cpu_ms_per_request']:.2f} ms (/healthz "
            f"{floor['cpu_ms_per_request']:.2f} ms), in process {d['cpu_ms_per_request']:.2f} ms: the "
            f"service spends {a['cpu_ms_per_request'] - d['cpu_ms_per_request']:.2f} ms of CPU more per solve"
        )
    print(
        f"achieved rate: api {a['achieved_rate']:.1f}/s, direct {d['achieved_rate']:.1f}/s, healthz "
        f"{floor['achieved_rate']:.1f}/s; late sends (p99, waiting for a free connection or the "
        f"caller): api {a['late_p99_ms']:.2f} ms, direct {d['late_p99_ms']:.2f} ms"
    )
    bad = a["non_200"] + a["wrong"] + d["wrong"] + floor["non_200"]
    print(
        f"non-200 answers: api {a['non_200']}, healthz {floor['non_200']}; wrong status: api {a['wrong']}, "
        f"direct {d['wrong']}"
    )
    over = a["p50_ms"] - d["p50_ms"]
    print(
        f"\ntarget: overhead under 5 ms at p50 -> {over:.2f} ms (api {a['p50_ms']:.2f} - direct "
        f"{d['p50_ms']:.2f}; ratio {a['p50_ms'] / d['p50_ms']:.2f}): " + ("met" if over < 5 else "NOT met")
    )
    return bad == 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=50.0, help="requests a second (default 50)")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each timed run (default 10)")
    ap.add_argument(
        "--model",
        action="append",
        help=f"golden core model name or 'furniture', repeatable (default: {' '.join(DEFAULT_MODELS)})",
    )
    ap.add_argument("--rounds", type=int, default=2, help="alternations of the three runs (default 2)")
    ap.add_argument("--connections", type=int, default=8, help="keep-alive connections (default 8)")
    ap.add_argument("--url", help="bench this running server instead of starting one")
    ap.add_argument("--access-log", action="store_true", help="the started server logs every request")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    args.model = args.model or DEFAULT_MODELS
    exit_on_sigterm()
    load_avg = os.getloadavg()
    print(f"{os.cpu_count()} CPUs, load average {load_avg[0]:.2f} {load_avg[1]:.2f} {load_avg[2]:.2f}")
    with Processes() as procs:
        sid = None
        if args.url:
            url = args.url.rstrip("/")
        else:
            # no job workers: only the synchronous path runs (idle workers would poll the store)
            level = "info" if args.access_log else "warning"
            url, server = procs.serve("serve", {"OPTSCRIBE_WORKERS": "0"}, log_level=level)
            sid = server.pid  # its own session: the server and any child it has
        out = run(args, url, sid)
    ok = report(args, url, out)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {"url": url, "rate": args.rate, "seconds": args.seconds, "rounds": args.rounds}
        meta |= {"connections": args.connections, "models": args.model, "load_avg": load_avg}
        args.json.write_text(json.dumps({**meta, **out}, indent=2))
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
