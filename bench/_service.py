"""What the service benchmarks share: real processes on loopback, a keep-alive client, cleanup.

:class:`Processes` starts ``optscribe serve`` (``python -m app serve``), ``optscribe worker``
and ``redis-server`` as subprocesses, each in a session of its own (so that a solver child
or a Celery pool process is stopped with its parent, and Ctrl-C at the terminal reaches only
the benchmark, which then stops them), on free loopback ports, with the job store in a
temporary data directory. Leaving its ``with`` block, normally, on an error, on Ctrl-C or
on SIGTERM (see :func:`exit_on_sigterm`), stops every process it started (SIGTERM, then
SIGKILL) and removes its directory. Nothing here is imported by the service.

:class:`Http` is the client: one stdlib ``http.client`` connection, kept alive. It is the
lightest client at hand, so that what a benchmark charges to the service is the service's.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "tests" / "golden" / "core"


def golden(name: str) -> tuple[dict[str, Any], str]:
    """The model and the expected status of ``tests/golden/core/<name>.json``."""
    spec = json.loads((CORE / f"{name}.json").read_text())
    return spec["model"], spec["expect"]["status"]


def pct(xs: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of xs; nan when empty."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(what: str, check: Callable[[], bool], timeout: float, every: float = 0.1) -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def exit_on_sigterm() -> None:
    """SIGTERM ends the benchmark as Ctrl-C does: through its ``finally`` blocks."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def cpu_by_process(sids: Collection[int]) -> dict[int, tuple[float, float]]:
    """Per live process in the sessions ``sids``: its own CPU seconds (user + system) and
    those of its children that it has reaped."""
    out: dict[int, tuple[float, float]] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) in sids:
            own = (int(fields[11]) + int(fields[12])) / tick
            out[int(entry)] = (own, (int(fields[13]) + int(fields[14])) / tick)
    return out


def session_cpu_seconds(sid: int) -> float:
    """CPU seconds of every live process in session ``sid``, reaped children included."""
    return sum(own + reaped for own, reaped in cpu_by_process({sid}).values())


def role(pid: int) -> str:
    """What a process of the service is, from its command line."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "gone"
    for word, name in (("forkserver", "solver process"), (" serve ", "serve"), (" worker ", "celery worker")):
        if word in cmd:
            return name
    return "redis-server" if "redis" in cmd else cmd[:40]


class Http:
    """One keep-alive HTTP/1.1 connection; reconnects once when the server closed it."""

    def __init__(self, base_url: str, timeout: float = 60.0) -> None:
        u = urlsplit(base_url)
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or 80
        self.prefix = u.path.rstrip("/")
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, self.prefix + path, body=body, headers=headers)
                resp = self.conn.getresponse()
                return resp.status, resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # the server closed an idle keep-alive connection: once more on a new one
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, payload: Any = None) -> tuple[int, Any]:
        body = None if payload is None else json.dumps(payload).encode()
        status, data = self.request(method, path, body)
        return status, json.loads(data) if data else None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Processes:
    """Subprocesses of one benchmark and their temporary directory; all gone on exit."""

    def __init__(self, keep_logs: bool = False, root: Path | None = None) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="optscribe-bench-", dir=root))
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.keep_logs = keep_logs

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def env(self, **changes: str) -> dict[str, str]:
        """This environment without the caller's OPTSCRIBE_* settings, plus ``changes``."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPTSCRIBE_")}
        env.update(changes)
        return env

    def start(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with (self.tmp / f"{name}.log").open("wb") as log:
            proc = subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.procs.append((name, proc))
        return proc

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
        """SIGTERM to the process's session (it and its children), SIGKILL if it lingers."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        # children that outlived their leader (a fork server, a solver child)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        self.procs = [(n, p) for n, p in self.procs if p is not proc]

    def close(self) -> None:
        # interrupts are held off until every process is stopped
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            for _, proc in reversed(self.procs):
                self.stop(proc)
        finally:
            signal.signal(signal.SIGINT, old)
            if self.keep_logs:
                print(f"logs kept in {self.tmp}", file=sys.stderr)
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)

    # -------------------------------------------------------------------------- the pieces

    def redis(self) -> tuple[str, subprocess.Popen[bytes]]:
        """A redis-server on a free loopback port, no persistence; answers its URL (db 0)."""
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        port = free_port()
        data = self.tmp / "redis"
        data.mkdir(exist_ok=True)
        args = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(data), "--save", ""]
        proc = self.start("redis", [exe, *args, "--appendonly", "no"], self.env())

        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"redis-server exited:\n{self.log_tail('redis')}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    return s.recv(16).startswith(b"+PONG")
            except OSError:
                return False

        wait_for("redis-server", up, 15)
        return f"redis://127.0.0.1:{port}/0", proc

    def data_dir(self, name: str) -> Path:
        """A data directory (job store) of its own for ``name``."""
        data = self.tmp / f"{name}-data"
        data.mkdir(exist_ok=True)
        return data

    def serve(
        self,
        name: str,
        settings: dict[str, str],
        log_level: str = "warning",
        timeout: float = 90.0,
        data: Path | None = None,
    ) -> tuple[str, subprocess.Popen[bytes]]:
        """``optscribe serve`` on a free port with ``settings`` (OPTSCRIBE_* names) and the
        job store in ``data`` (default: a new directory); waits for ``GET /readyz`` to answer
        200 and answers the base URL."""
        port = free_port()
        data = data or self.data_dir(name)
        env = self.env(OPTSCRIBE_DATA_DIR=str(data), **settings)
        cmd = [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)]
        proc = self.start(name, [*cmd, "--log-level", log_level], env)
        url = f"http://127.0.0.1:{port}"
        client = Http(url, timeout=5.0)

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"optscribe serve exited ({proc.returncode}):\n{self.log_tail(name)}")
            try:
                return client.request("GET", "/readyz")[0] == 200
            except OSError:
                client.close()
                return False

        try:
            wait_for(f"{name}: GET /readyz", ready, timeout, every=0.2)
        except TimeoutError as e:
            raise RuntimeError(f"{e}\n{self.log_tail(name)}") from None
        finally:
            client.close()
        return url, proc

    def worker(
        self,
        name: str,
        settings: dict[str, str],
        concurrency: int,
        data_dir: Path,
        log_level: str = "warning",
    ) -> subprocess.Popen[bytes]:
        """``optscribe worker -c concurrency`` on the job store in ``data_dir``."""
        env = self.env(OPTSCRIBE_DATA_DIR=str(data_dir), **settings)
        cmd = [sys.executable, "-m", "app", "worker", "-c", str(concurrency), "-n", f"{name}@%h"]
        return self.start(name, [*cmd, "--log-level", log_level], env)
