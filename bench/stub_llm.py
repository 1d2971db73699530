"""A local OpenAI-compatible stub endpoint for exercising ``optscribe eval`` without an LLM.

It answers every chat completion. When the problem text in the request is one of the
benchmark problems formalized by hand in ``tests/golden/benchmarks/``, it answers with that
model (in the single-call answer shape); for any other problem it answers with a model that
is deliberately wrong (an empty plan), so the harness's scoring, records and summary can be
seen end to end. It is a test double, not a model: the numbers it produces measure the
harness, never optscribe's accuracy.

    python bench/stub_llm.py --port 8765 &
    OPTSCRIBE_LLM_BASE_URL=http://127.0.0.1:8765/v1 OPTSCRIBE_LLM_MODEL=stub \\
        optscribe eval nl4opt_optmath --limit 20 --out /tmp/nl4opt.jsonl
"""

from __future__ import annotations

import argparse
import json
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "benchmarks"

PLACEHOLDER = {
    "reasoning": "stub: unknown problem",
    "name": "unknown",
    "sets": [],
    "parameters": [],
    "variables": [{"name": "x", "index": [], "domain": "continuous", "lower": 0, "upper": 1}],
    "objective": {"sense": "minimize", "expression": "x", "source": None},
    "constraints": [],
    "questions": [],
}


def _norm(text: str) -> str:
    return " ".join(re.sub(r"\W+", " ", text.lower()).split())


def load_answers() -> dict[str, str]:
    """Normalised problem text -> single-call answer JSON, for every golden benchmark file."""
    from app.eval import load_dataset
    from app.formalize.schemas import model_to_llm
    from solvers.api import load_model

    answers: dict[str, str] = {}
    by_file: dict[str, dict[str, str]] = {}
    for f in sorted(GOLDEN.glob("*.json")):
        spec = json.loads(f.read_text())
        origin = spec["origin"]
        texts = by_file.get(origin["file"])
        if texts is None:
            problems = load_dataset(ROOT.parent / "shared" / "data" / "benchmarks" / origin["file"])
            texts = by_file[origin["file"]] = {p.id: p.text for p in problems}
        text = texts.get(str(origin["record"])) or next(
            (t for k, t in texts.items() if k.endswith(str(origin["record"]))), None
        )
        if text is None:
            continue
        form = model_to_llm(load_model(spec["model"]), reasoning="stub").model_dump(
            mode="json", by_alias=True
        )
        form["questions"] = []
        answers[_norm(text)[:200]] = json.dumps(form)
    return answers


def make_handler(answers: dict[str, str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body: dict[str, Any] = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            user = _norm(" ".join(m.get("content") or "" for m in body["messages"] if m["role"] == "user"))
            content = next((a for key, a in answers.items() if key in user), None)
            if content is None:
                content = json.dumps(PLACEHOLDER)
            fmt = body.get("response_format") or {}
            if (fmt.get("json_schema") or {}).get("name") == "repair":
                answer = json.loads(content)
                answer.pop("questions", None)
                answer["changes"] = []
                content = json.dumps(answer)
            reply = {
                "id": "stub",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", "stub"),
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": content},
                    }
                ],
                "usage": {
                    "prompt_tokens": len(user) // 4,
                    "completion_tokens": len(content) // 4,
                    "total_tokens": (len(user) + len(content)) // 4,
                },
            }
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=8765)
    args = ap.parse_args()
    answers = load_answers()
    print(f"stub LLM on http://127.0.0.1:{args.port}/v1 knows {len(answers)} benchmark problems", flush=True)
    ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(answers)).serve_forever()


if __name__ == "__main__":
    main()
