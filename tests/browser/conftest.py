"""Fixtures for the browser tests: a scripted LLM, the real service, and headless Chromium.

Every test in this directory is marked ``browser`` (``pytest -m "not browser"`` leaves them
out). What the fixtures give, cheapest first:

``stub_llm``          :class:`StubLLM`, an OpenAI-compatible HTTP server on loopback whose answers
                      a test scripts (``answer_with``, ``fail_with``, ``hold``) and whose requests
                      it records. Its default answer is the workshop model of ``shared_models``.
``live_server``       :class:`LiveServer`: ``python -m app serve`` in a subprocess (the whole service:
                      API, job store in a temporary OPTSCRIBE_DATA_DIR, one embedded worker) with
                      its LLM pointed at ``stub_llm``; ``.url``, ``.client()``, ``.log_text()``.
``live_server_no_llm`` the same with no LLM configured (formalization answers 503); the two
                      start side by side on first use of either.
``make_live_server``  a callable starting one more server with extra ``OPTSCRIBE_*`` variables,
                      stopped after the test (API keys, rate limits, ...).
``browser``           the Playwright ``Browser``: Debian's Chromium, headless.
``page``              a fresh context and page, 1280x900; ``phone_page``: 390x844, touch, mobile.
``page_errors``       :class:`PageErrors` of those pages: uncaught exceptions, console.error calls
                      and broken assets fail the test at its end (unless it is marked
                      ``allow_page_errors``); HTTP refusals of fetch/XHR are only recorded.
``screenshot``        ``screenshot(page, name)`` saves a full-page PNG under
                      ``test-artifacts/screenshots/`` and returns its path; a failed test
                      leaves ``<test>--FAILED.png`` there by itself.

The servers, the stub and the browser live as long as this package's tests (they start on
first use and stop when the last browser test is done); ``stub_llm`` is emptied before and
after each test. Jobs stay in the server's store from one test to the next, so a test must not
assume an empty job list.

Chromium is ``/usr/bin/chromium`` (Debian's package; ``OPTSCRIBE_TEST_CHROMIUM`` names another).
Without it the tests skip, except when ``CI`` is set or ``.ci/run`` asks for them
(``OPTSCRIBE_TEST_REQUIRE_BROWSER=1``): then a missing browser fails them. Playwright never
downloads a browser here.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import pytest
from llm_stub import Reply as StubReply  # one scripted answer: status, JSON or text body, delay
from llm_stub import chat_response
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, Request, Response, sync_playwright
from playwright.sync_api import Error as PlaywrightError
from shared_models import llm_json, workshop_model

HERE = Path(__file__).resolve().parent
CHROMIUM = os.environ.get("OPTSCRIBE_TEST_CHROMIUM") or "/usr/bin/chromium"
# Without the networking flags Chromium keeps calling Google's hosts, which the closed network
# refuses; --headless and a fresh --user-data-dir come from Playwright's own launch.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
SERVER_START_TIMEOUT_S = 60.0
ACTION_TIMEOUT_MS = 10_000


# ---------------------------------------------------------------------------------- markers


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A test that would skip for want of Chromium skips before its server starts.
    skip = None if _browser_present() or _browser_required() else pytest.mark.skip(reason=_NO_BROWSER)
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.browser)
            if skip and {"browser", "page", "phone_page"} & set(getattr(item, "fixturenames", ())):
                item.add_marker(skip)


_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    # Kept so that the page fixtures can take a screenshot of a failed test.
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    reports = request.node.stash.get(_REPORTS, {})
    return any(r.failed for r in reports.values())


# ---------------------------------------------------------------------------------- stub LLM


@dataclass(frozen=True)
class StubRequest:
    """A request the stub received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any  # the parsed JSON, or the raw text when it was not JSON

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", [])) if isinstance(self.body, dict) else []

    @property
    def text(self) -> str:
        """Every message's content, joined: what to search for the problem text."""
        return "\n".join(str(m.get("content") or "") for m in self.messages)

    @property
    def response_format(self) -> str | None:
        """``json_schema``, ``json_object`` or None."""
        fmt = self.body.get("response_format") if isinstance(self.body, dict) else None
        return fmt.get("type") if isinstance(fmt, dict) else None

    @property
    def schema_name(self) -> str | None:
        """The json_schema name: the pipeline stage (``single``, ``repair``, ...)."""
        fmt = self.body.get("response_format") if isinstance(self.body, dict) else None
        schema = fmt.get("json_schema") if isinstance(fmt, dict) else None
        return schema.get("name") if isinstance(schema, dict) else None


Scripted = StubReply | Callable[[StubRequest], StubReply]


def completion(
    payload: dict[str, Any] | str,
    *,
    delay: float = 0.0,
    prompt_tokens: int = 100,
    completion_tokens: int = 50,
    finish_reason: str = "stop",
) -> StubReply:
    """A 200 chat completion whose content is ``payload`` (a dict is sent as its JSON)."""
    content = payload if isinstance(payload, str) else json.dumps(payload)
    body = chat_response(content, prompt_tokens, completion_tokens, model="stub", finish_reason=finish_reason)
    return StubReply(200, json=body, delay=delay)


class StubLLM:
    """An OpenAI-compatible endpoint on loopback, answering from a script.

    ``POST /v1/chat/completions`` takes the next scripted reply; when the script is empty it
    serves ``default`` (a payload, or a :class:`StubReply`); with ``default = None`` an
    unscripted request gets a 500 and fails the test. ``GET /v1/models`` lists ``stub``.

        stub_llm.answer_with(llm_json(workshop_model()))   # one answer (a JSON string or a dict)
        stub_llm.answer_with(bad, good)                     # two, in order
        stub_llm.fail_with(429, headers={"retry-after": "0"})
        stub_llm.add(lambda req: completion({...}))         # computed from the request
        stub_llm.hold(); ...; stub_llm.wait_for_requests(1); ...; stub_llm.release()
        stub_llm.requests[-1].text                          # what the service sent

    The service retries 429/5xx/timeouts (``OPTSCRIBE_LLM_MAX_RETRIES``, 3) and asks again
    after an unusable answer, each retry taking the next scripted reply.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._gate = threading.Event()
        self._gate.set()
        self.script: list[Scripted] = []
        self.default: dict[str, Any] | str | StubReply | None = None
        self.requests: list[StubRequest] = []
        self.unscripted: list[StubRequest] = []
        self.reset()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="stub-llm", daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        """What ``OPTSCRIBE_LLM_BASE_URL`` is set to: ``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    # -- scripting -------------------------------------------------------------------------------

    def answer_with(self, *payloads: dict[str, Any] | str, delay: float = 0.0, **usage: int) -> StubLLM:
        """Queue one 200 completion per payload: a dict (sent as JSON) or the raw content text.

        ``delay`` (seconds) holds each answer back; ``prompt_tokens``/``completion_tokens``
        set the usage it reports (100 and 50 by default).
        """
        return self.add(*(completion(p, delay=delay, **usage) for p in payloads))

    def fail_with(
        self,
        status: int,
        message: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
        times: int = 1,
    ) -> StubLLM:
        """Queue ``times`` error answers with an OpenAI-style error body."""
        body = {"error": {"message": message or f"stub {status}", "type": "stub", "code": None}}
        return self.add(*(StubReply(status, json=body, headers=dict(headers or {}), delay=delay),) * times)

    def add(self, *items: Scripted) -> StubLLM:
        """Queue raw replies, or callables that build one from the :class:`StubRequest`."""
        with self._cond:
            self.script.extend(items)
        return self

    def hold(self) -> None:
        """Answers wait (after their request is recorded) until :meth:`release`."""
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def reset(self) -> None:
        """Empty the script and the records; the default answer is the workshop model again."""
        self.release()
        with self._cond:
            self.script.clear()
            self.requests.clear()
            self.unscripted.clear()
            self.default = json.loads(llm_json(workshop_model()))

    # -- what was sent ---------------------------------------------------------------------------

    @property
    def count(self) -> int:
        """Chat completion requests received."""
        return len(self.requests)

    @property
    def left(self) -> int:
        """Scripted replies not yet served."""
        return len(self.script)

    def wait_for_requests(self, n: int = 1, timeout: float = 10.0) -> list[StubRequest]:
        """Block until ``n`` chat completion requests have arrived (for use with :meth:`hold`)."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.requests) >= n, timeout):
                raise AssertionError(f"the stub LLM got {len(self.requests)} requests in {timeout}s, not {n}")
            return list(self.requests)

    # -- serving ---------------------------------------------------------------------------------

    def _next(self, request: StubRequest) -> StubReply:
        with self._cond:
            self.requests.append(request)
            self._cond.notify_all()
            item: Scripted | dict[str, Any] | str | None
            if self.script:
                item = self.script.pop(0)
            elif self.default is not None:
                item = self.default
            else:
                self.unscripted.append(request)
                item = None
        if item is None:
            return StubReply(500, json={"error": {"message": "stub LLM: no answer scripted", "type": "stub"}})
        if isinstance(item, dict | str):
            return completion(item)
        if isinstance(item, StubReply):
            return item
        return item(request)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path.rstrip("/").endswith("/models"):
                    models = {
                        "object": "list",
                        "data": [{"id": "stub", "object": "model", "owned_by": "stub"}],
                    }
                    self._send(StubReply(200, json=models))
                else:
                    self._send(StubReply(404, json={"error": {"message": f"no {self.path}"}}))

            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                try:
                    body: Any = json.loads(raw)
                except ValueError:
                    body = raw
                request = StubRequest("POST", self.path, dict(self.headers.items()), body)
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(StubReply(404, json={"error": {"message": f"no {self.path}"}}))
                    return
                reply = stub._next(request)
                stub._gate.wait(60)
                if reply.delay:
                    time.sleep(reply.delay)
                self._send(reply)

            def _send(self, reply: StubReply) -> None:
                if reply.text is not None:
                    data, kind = reply.text.encode(), "text/plain"
                else:
                    data, kind = (
                        json.dumps(reply.json if reply.json is not None else {}).encode(),
                        "application/json",
                    )
                self.send_response(reply.status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (its timeout); nothing to tell it

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def close(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="package")
def _stub_llm_server() -> Iterator[StubLLM]:
    stub = StubLLM()
    yield stub
    stub.close()


@pytest.fixture
def stub_llm(_stub_llm_server: StubLLM) -> Iterator[StubLLM]:
    """The stub LLM that ``live_server`` talks to, emptied for this test.

    Script it with ``answer_with(payload, ...)`` (a dict or the raw content text),
    ``fail_with(status)``, ``add(StubReply | callable)``, ``default = ...`` (``None``: an
    unscripted request fails the test), ``hold()``/``release()``; read ``requests``
    (:class:`StubRequest`: ``body``, ``messages``, ``text``, ``schema_name``), ``count``, ``left``.
    """
    stub = _stub_llm_server
    stub.reset()
    yield stub
    unscripted = list(stub.unscripted)
    stub.reset()
    if unscripted:
        pytest.fail(
            f"the stub LLM got {len(unscripted)} request(s) beyond its script "
            f"(default = None); the first: {unscripted[0].text[:300]!r}"
        )


# ---------------------------------------------------------------------------------- live server


@dataclass
class LiveServer:
    """``optscribe serve`` in a subprocess: ``url`` (no trailing slash), its store, its log."""

    url: str
    data_dir: Path
    log_path: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes]

    def client(self, **kwargs: Any) -> httpx2.Client:
        """An HTTP client with ``base_url=url`` (close it, or use ``with``)."""
        kwargs.setdefault("timeout", 30.0)
        return httpx2.Client(base_url=self.url, **kwargs)

    def log_text(self) -> str:
        """What the server wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """SIGINT (uvicorn's graceful shutdown), then kill after 15 s."""
        stop_all([self])

    def _interrupt(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)

    def _wait(self) -> None:
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _coverage_prefix(config: pytest.Config) -> list[str]:
    """``-m coverage run ...`` when pytest-cov measures this run, so the server's lines count.

    pytest-cov combines the ``.coverage.*`` files next to its data file at the end; the server
    writes one there when it exits after SIGINT.
    """
    plugin = config.pluginmanager.getplugin("_cov")
    controller = getattr(plugin, "cov_controller", None)
    cov = getattr(controller, "cov", None)
    if cov is None:
        return []
    topdir = getattr(controller, "topdir", None) or os.getcwd()
    data_file = os.path.join(topdir, cov.config.data_file)
    args = ["-m", "coverage", "run", "--parallel-mode", f"--data-file={data_file}"]
    sources = getattr(controller, "cov_source", None) or []
    if sources and all(isinstance(s, str) for s in sources):
        args.append("--source=" + ",".join(sources))
    if getattr(controller, "cov_branch", None):
        args.append("--branch")
    return args


def _server_env(data_dir: Path, llm: StubLLM | None, extra: dict[str, str]) -> dict[str, str]:
    # Nothing of the machine's own optscribe or OpenAI configuration leaks in.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPTSCRIBE_", "OPENAI_"))}
    env.update(
        PYTHONUNBUFFERED="1",
        OPTSCRIBE_DATA_DIR=str(data_dir),
        OPTSCRIBE_WORKERS="1",
        OPTSCRIBE_JOB_POLL_SECONDS="0.05",
    )
    if llm is not None:
        env.update(
            OPTSCRIBE_LLM_BASE_URL=llm.base_url,
            OPTSCRIBE_LLM_MODEL="stub",
            OPTSCRIBE_LLM_API_KEY="x",
            OPTSCRIBE_LLM_TIMEOUT="30",
            # The service remembers which structured mode an endpoint takes ("auto"); one
            # test's scripted 500 would change what every later test sees.
            OPTSCRIBE_LLM_STRUCTURED_MODE="json_schema",
            OPTSCRIBE_LLM_BACKOFF_BASE_S="0.05",
            OPTSCRIBE_LLM_BACKOFF_MAX_S="0.2",
        )
    env.update(extra)
    return env


def _get_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            status: int = r.status
            return status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError):
        return None


def _launch(directory: Path, config: pytest.Config, env: dict[str, str]) -> LiveServer:
    port = _free_port()
    log_path = directory / f"server-{port}.log"
    cmd = [sys.executable, *_coverage_prefix(config), "-m", "app", "serve", "--host", "127.0.0.1"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*cmd, "--port", str(port), "--log-level", "warning"],
            cwd=config.rootpath,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return LiveServer(f"http://127.0.0.1:{port}", Path(env["OPTSCRIBE_DATA_DIR"]), log_path, env, process)


def _wait_ready(server: LiveServer, config: pytest.Config) -> LiveServer:
    for attempt in range(3):
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while server.process.poll() is None and time.monotonic() < deadline:
            if _get_status(server.url + "/readyz") == 200:
                return server
            time.sleep(0.05)
        server.stop()
        log_text = server.log_text()
        if "address already in use" in log_text.lower() and attempt < 2:
            # another process took the free port between our probe and the server's bind
            server = _launch(server.log_path.parent, config, server.env)
            continue
        pytest.fail(
            f"optscribe serve did not become ready in {SERVER_START_TIMEOUT_S:.0f}s "
            f"(exit code {server.process.returncode}); its log:\n{log_text[-4000:]}"
        )
    raise AssertionError("unreachable")


def stop_all(servers: list[LiveServer]) -> None:
    """Stop servers side by side (each shutdown takes about a second)."""
    for server in servers:
        server._interrupt()
    for server in servers:
        server._wait()


def start_live_servers(
    config: pytest.Config, *specs: tuple[Path, StubLLM | None, dict[str, str]]
) -> list[LiveServer]:
    """Start one ``python -m app serve`` per (directory, LLM or None, extra env) side by side,
    each on a free loopback port, and wait until each /readyz answers 200."""
    launched: list[LiveServer] = []
    try:
        for directory, llm, extra in specs:
            data_dir = directory / "data"
            data_dir.mkdir(parents=True, exist_ok=True)
            launched.append(_launch(directory, config, _server_env(data_dir, llm, extra)))
        return [_wait_ready(server, config) for server in launched]
    except BaseException:
        stop_all(launched)
        raise


@pytest.fixture(scope="package")
def _package_servers(
    _stub_llm_server: StubLLM, tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[tuple[LiveServer, LiveServer]]:
    # Both start together on first use: their start-ups (imports, the solve pool) overlap.
    with_llm, no_llm = start_live_servers(
        pytestconfig,
        (tmp_path_factory.mktemp("live-server"), _stub_llm_server, {}),
        (tmp_path_factory.mktemp("live-server-no-llm"), None, {}),
    )
    yield with_llm, no_llm
    stop_all([with_llm, no_llm])


@pytest.fixture(scope="package")
def live_server(_package_servers: tuple[LiveServer, LiveServer]) -> LiveServer:
    """The whole service (``python -m app serve``) with its LLM pointed at ``stub_llm``.

    A :class:`LiveServer`: ``url`` (``http://127.0.0.1:PORT``), ``client()`` (an
    ``httpx2.Client`` on it), ``log_text()``, ``data_dir``. One embedded job worker, jobs in
    SQLite in a temporary data directory, structured mode pinned to json_schema, tiny retry
    backoff. Shared by the package's tests; request ``stub_llm`` too to script the answers.
    It starts together with ``live_server_no_llm``.
    """
    return _package_servers[0]


@pytest.fixture(scope="package")
def live_server_no_llm(_package_servers: tuple[LiveServer, LiveServer]) -> LiveServer:
    """Like ``live_server`` but with no LLM configured: formalization answers 503."""
    return _package_servers[1]


@pytest.fixture
def make_live_server(
    _stub_llm_server: StubLLM, tmp_path: Path, pytestconfig: pytest.Config
) -> Iterator[Callable[..., LiveServer]]:
    """``make_live_server(llm=True, **env)`` starts one more server for this test only.

    ``env`` adds or overrides variables (``OPTSCRIBE_API_KEYS_REQUIRED="true"``, ...);
    ``llm=False`` leaves the LLM unconfigured. Each start costs a few seconds.
    """
    servers: list[LiveServer] = []

    def make(llm: bool = True, **env: str) -> LiveServer:
        directory = tmp_path / f"server-{len(servers)}"
        (server,) = start_live_servers(pytestconfig, (directory, _stub_llm_server if llm else None, env))
        servers.append(server)
        return server

    yield make
    stop_all(servers)


# ---------------------------------------------------------------------------------- browser


_NO_BROWSER = (
    f"no Chromium at {CHROMIUM}: install Debian's chromium package (apt-get install chromium) "
    "or name one in OPTSCRIBE_TEST_CHROMIUM"
)


def _browser_present() -> bool:
    return os.access(CHROMIUM, os.X_OK)


def _browser_required() -> bool:
    flags = (os.environ.get("CI", ""), os.environ.get("OPTSCRIBE_TEST_REQUIRE_BROWSER", ""))
    return any(f.strip().lower() not in ("", "0", "false", "no") for f in flags)


@pytest.fixture(scope="package")
def _playwright() -> Iterator[Playwright]:
    pw = sync_playwright().start()
    yield pw
    pw.stop()


@pytest.fixture(scope="package")
def browser(_playwright: Playwright) -> Iterator[Browser]:
    """Debian's Chromium, headless, launched once for the package's tests."""
    if not _browser_present():
        if _browser_required():
            pytest.fail(_NO_BROWSER + " (required here: CI or OPTSCRIBE_TEST_REQUIRE_BROWSER is set)")
        pytest.skip(_NO_BROWSER)
    launched = _playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    yield launched
    launched.close()


# What a page loads to look and work right; a 4xx/5xx or a failed load of one is a broken page.
# fetch/XHR answers are not here: a 401 or 422 may be the flow under test.
ASSET_TYPES = frozenset({"script", "stylesheet", "image", "font", "media", "manifest"})
# Chromium's own console line for every HTTP error answer, fetch/XHR included.
HTTP_ERROR_LINE = "Failed to load resource: the server responded with a status of"


class PageErrors:
    """What went wrong on the pages it watches, as text.

    ``failures`` fail the test: uncaught exceptions, ``console.error`` calls, and assets
    (scripts, styles, images, fonts) that answered 4xx/5xx or failed to load (a CDN out of
    reach). ``messages`` is all of that plus Chromium's console line for each HTTP error answer
    ("Failed to load resource: the server responded with a status of 422"), which fetch/XHR
    refusals the test provokes also produce; those alone fail nothing.
    """

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.failures: list[str] = []

    def watch(self, page: Page) -> Page:
        """Collect ``page``'s errors too (``page`` and ``phone_page`` are watched already)."""
        page.on("console", self._console)
        page.on("pageerror", self._page_error)
        page.on("response", self._response)
        page.on("requestfailed", self._request_failed)
        return page

    def clear(self) -> None:
        """Forget the errors so far (after a test has checked the ones it provoked)."""
        self.messages.clear()
        self.failures.clear()

    def __contains__(self, text: str) -> bool:
        return any(text in m for m in self.messages)

    def wait_for(self, page: Page, text: str, timeout: float = 5.0) -> str:
        """The first message containing ``text``, waiting for it (console lines can arrive
        after the page has already shown what caused them)."""
        deadline = time.monotonic() + timeout
        while True:
            found = next((m for m in self.messages if text in m), None)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"no page error mentions {text!r} in {timeout}s: {self.messages}")
            page.wait_for_timeout(25)  # lets Playwright deliver the events meanwhile

    def _add(self, text: str, *, fails: bool = True) -> None:
        self.messages.append(text)
        if fails:
            self.failures.append(text)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            where = f"{message.location.get('url') or '?'}:{message.location.get('lineNumber')}"
            self._add(f"console.error ({where}): {message.text}", fails=HTTP_ERROR_LINE not in message.text)

    def _page_error(self, error: PlaywrightError) -> None:
        self._add(f"uncaught {error.name}: {error.message}")

    def _response(self, response: Response) -> None:
        if response.status >= 400 and response.request.resource_type in ASSET_TYPES:
            kind = response.request.resource_type
            self._add(f"{kind} {response.url} answered {response.status}")

    def _request_failed(self, request: Request) -> None:
        failure = request.failure or "?"
        # ERR_ABORTED: a navigation or the page itself cancelled it, no fault of the server
        if request.resource_type in ASSET_TYPES and "ERR_ABORTED" not in failure:
            self._add(f"{request.resource_type} {request.url} failed to load: {failure}")


@pytest.fixture
def page_errors(request: pytest.FixtureRequest) -> Iterator[PageErrors]:
    """The errors of ``page`` and ``phone_page`` (:class:`PageErrors`); its ``failures`` left
    at the end fail the test, unless it is marked ``@pytest.mark.allow_page_errors`` (or calls
    ``page_errors.clear()``)."""
    errors = PageErrors()
    yield errors
    if errors.failures and request.node.get_closest_marker("allow_page_errors") is None:
        pytest.fail("the page went wrong (a JS error is a bug):\n" + "\n".join(errors.failures))


def _new_page(
    browser: Browser, errors: PageErrors, request: pytest.FixtureRequest, **options: Any
) -> Iterator[Page]:
    context = browser.new_context(locale="en-US", timezone_id="UTC", reduced_motion="reduce", **options)
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    page = errors.watch(context.new_page())
    failed_shot = _screenshot_path(request, "FAILED")
    failed_shot.unlink(missing_ok=True)  # one from an earlier run would mislead
    yield page
    if _failed(request):
        try:
            _save_screenshot(page, request, "FAILED")
        except PlaywrightError:
            pass  # the page or browser is gone; the failure itself says more
    context.close()


@pytest.fixture
def page(browser: Browser, page_errors: PageErrors, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A new browser context and page, 1280x900, en-US, UTC; a screenshot when the test fails."""
    yield from _new_page(browser, page_errors, request, viewport=DESKTOP)


@pytest.fixture
def phone_page(browser: Browser, page_errors: PageErrors, request: pytest.FixtureRequest) -> Iterator[Page]:
    """Like ``page`` on a phone: 390x844, touch, mobile viewport rules (``<meta viewport>``)."""
    yield from _new_page(browser, page_errors, request, viewport=PHONE, is_mobile=True, has_touch=True)


def _screenshot_path(request: pytest.FixtureRequest, name: str) -> Path:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{request.node.name}--{name}").strip("_")
    return request.config.rootpath / "test-artifacts" / "screenshots" / f"{stem}.png"


def _save_screenshot(page: Page, request: pytest.FixtureRequest, name: str) -> Path:
    path = _screenshot_path(request, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path


Screenshot = Callable[[Page, str], Path]


@pytest.fixture
def screenshot(request: pytest.FixtureRequest) -> Screenshot:
    """``screenshot(page, name)``: a full-page PNG at
    ``test-artifacts/screenshots/<test name>--<name>.png``; returns the path."""

    def take(page: Page, name: str) -> Path:
        return _save_screenshot(page, request, name)

    return take
