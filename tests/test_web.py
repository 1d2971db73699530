"""The web form without a browser: pages and fragments over a real store, and the pure rendering.

Jobs are created through the form's routes (the same validation as POST /v1/jobs) and finished
here by hand with results the solver computed in process, so no worker runs and every test is
quick. Covered: the page, its CSP and the vendored assets; the built-in examples; the LaTeX of
the golden examples; plan rows and chart data; highlighting, and escaping of problem texts and
constraint sources that carry ``<script>``; errors shown as HTML with their issues, never a
trace; the no-LLM notice; questions, suggestions and constraint edits starting new jobs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from shared_models import WORKSHOP_TEXT, workshop_model
from test_jobs_api import job_settings

from app.api import create_app
from app.api.security import hash_key
from app.jobs.store import Job, JobStore
from app.settings import Settings
from app.web import render
from app.web.routes import CSP, edited_constraint, examples, job_context
from solvers.api import load_model, solve_model

ROOT = Path(__file__).resolve().parents[1]
WORKER = "test-worker"


def settings_for(tmp: Path, **changes: Any) -> Settings:
    """The API tests' settings (no LLM, no keys, no limits) with no embedded workers."""
    return job_settings(tmp, **{"workers": 0, **changes})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    s = JobStore.in_data_dir(tmp_path / "data")
    yield s
    s.close()


@pytest.fixture
def client(tmp_path: Path, store: JobStore) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for(tmp_path), job_store=store)) as c:
        yield c


def golden(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ROOT / "examples" / f"{name}.json").read_text())
    return data


def finish_solved(store: JobStore, job_id: str, extra: dict[str, Any] | None = None) -> Job:
    """Run the job's model in process and finish the job with its result, as a worker would."""
    job = store.claim(job_id, WORKER, 60)
    assert job is not None
    model = job.request.get("model") or (extra or {}).get("formalization", {}).get("model")
    result = solve_model(load_model(model)).to_json_dict()
    assert store.finish(job_id, WORKER, "succeeded", result={**result, **(extra or {})})
    done = store.load_job(job_id)
    assert done is not None
    return done


def job_id_of(html: str) -> str:
    m = re.search(r'data-job-id="([0-9a-f]+)"', html)
    assert m is not None, html[:500]
    return m.group(1)


def submit_model(client: TestClient, model: dict[str, Any]) -> str:
    r = client.post("/ui/jobs/model", data={"model_json": json.dumps(model)})
    assert r.status_code == 200, r.text
    return job_id_of(r.text)


# ----------------------------------------------------------------------------- the page


def test_the_page_has_its_forms_a_csp_and_no_llm_notice(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"] == CSP
    assert "script-src 'self';" in CSP and "unsafe-eval" not in CSP
    assert r.headers["x-content-type-options"] == "nosniff"
    html = r.text
    for label in ('for="problem-text"', 'for="model-json"', 'for="table-csv-1"'):
        assert label in html
    assert "No LLM is configured" in html and "OPTSCRIBE_LLM_MODEL" in html
    assert re.search(r"<button type=\"submit\" disabled[^>]*>Formalize and solve", html)
    # no inline script or handler anywhere: the CSP would block them
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)
    assert not re.search(r"\son[a-z]+=", html)
    assert not re.search(r"(src|href)=\"(https?:)?//", html)


def test_with_an_llm_configured_there_is_no_notice(tmp_path: Path, store: JobStore) -> None:
    settings = settings_for(tmp_path, llm_base_url="http://127.0.0.1:9/v1", llm_model="m", llm_api_key="k")
    with TestClient(create_app(settings, job_store=store)) as c:
        html = c.get("/").text
    assert "No LLM is configured" not in html
    assert re.search(r"<button type=\"submit\"\s*>Formalize and solve", html)


def test_static_files_and_vendored_assets_are_served(client: TestClient) -> None:
    for path, kind in [
        ("/static/app.js", "javascript"),
        ("/static/app.css", "text/css"),
        ("/static/vendor/katex/katex.min.js", "javascript"),
        ("/static/vendor/katex/katex.min.css", "text/css"),
        ("/static/vendor/katex/fonts/KaTeX_Main-Regular.woff2", "font/woff2"),
        ("/static/vendor/htmx/htmx.min.js", "javascript"),
        ("/static/vendor/chartjs/chart.umd.min.js", "javascript"),
    ]:
        r = client.get(path)
        assert r.status_code == 200, path
        assert kind in r.headers["content-type"], (path, r.headers["content-type"])
    vendor = (ROOT / "app" / "web" / "static" / "vendor" / "VENDOR.md").read_text()
    for package in ("katex", "htmx.org", "chart.js", "swagger-ui-dist"):
        assert f"| {package} |" in vendor
    assert vendor.count("sha512-") == 4
    for license_file in ("katex/LICENSE", "htmx/LICENSE", "chartjs/LICENSE.md", "swagger-ui/LICENSE"):
        assert (ROOT / "app" / "web" / "static" / "vendor" / license_file).is_file()


def test_the_api_docs_page_uses_the_vendored_swagger_ui(client: TestClient) -> None:
    html = client.get("/docs").text
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in html and "cdn" not in html.lower()
    assert client.get("/static/vendor/swagger-ui/swagger-ui-bundle.js").status_code == 200
    assert client.get("/redoc").status_code == 404


def test_no_asset_comes_from_a_cdn() -> None:
    web = ROOT / "app" / "web"
    for f in [*web.glob("templates/*.html"), web / "static" / "app.js", web / "static" / "app.css"]:
        text = f.read_text()
        assert not re.search(r"(src|href)=\"(https?:)?//", text), f
        assert "cdn" not in text.lower(), f


def test_the_api_schema_is_untouched(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p == "/" or p.startswith(("/ui", "/static"))]


@pytest.mark.parametrize("slug", ["bakery", "callcentre", "kitchen", "deliveries"])
def test_each_example_loads_into_the_forms_and_its_model_is_valid(client: TestClient, slug: str) -> None:
    ex = examples()[slug]
    load_model(ex.model)
    assert ex.text
    r = client.get(f"/ui/examples/{slug}")
    assert r.status_code == 200
    assert 'id="forms"' in r.text and "Loaded the example" in r.text
    assert json.loads(_textarea(r.text, "model-json")) == json.loads(ex.model)


def test_the_examples_expected_answers() -> None:
    outcomes = {
        slug: solve_model(load_model(ex.model)) for slug, ex in examples().items() if slug != "deliveries"
    }
    assert outcomes["bakery"].objective == pytest.approx(342)
    assert outcomes["callcentre"].status == "infeasible"
    assert outcomes["kitchen"].objective == pytest.approx(150)


def test_an_unknown_example_is_404(client: TestClient) -> None:
    assert client.get("/ui/examples/nope").status_code == 404


def _textarea(html: str, ident: str) -> str:
    import html as h

    m = re.search(rf'<textarea id="{ident}"[^>]*>(.*?)</textarea>', html, re.S)
    assert m is not None
    return h.unescape(m.group(1))


# ----------------------------------------------------------------------------- rendering


def test_latex_of_the_furniture_example() -> None:
    view = render.model_view(load_model(golden("furniture")))
    tex = {
        p.key or p.label: p.tex for p in [*view.sets, *view.parameters, *view.variables, *view.constraints]
    }
    assert tex["P"] == r"P = \{\text{chair}, \text{table}\}"
    assert tex["use"] == r"\mathit{use}_{r,p},\quad r \in R,\, p \in P"
    assert tex["min_tables"] == r"\mathit{min\_tables} = 5"
    # a clause after the first is a group led by \allowbreak: a narrow screen wraps between them
    assert tex["variable-x"] == r"x_{p} \in \mathbb{Z},\allowbreak\ {x_{p} \ge 0},\allowbreak\quad {p \in P}"
    assert tex["variable-big_batch"] == r"\mathit{big\_batch} \in \{0, 1\}"
    assert view.objective is not None
    assert view.objective.tex == r"\max\; \sum_{p \in P} \mathit{profit}_{p}\, x_{p}"
    capacity = view.constraints[0]
    assert capacity.tex == r"\sum_{p \in P} \mathit{use}_{r,p}\, x_{p} \le \mathit{avail}_{r}"
    assert capacity.quantifier == r"\forall\, r \in R"
    assert tex["tables_min"] == r"x_{\text{table}} \ge \mathit{min\_tables}"
    assert tex["batch_rule"] == r"\mathit{big\_batch} = 1 \;\Rightarrow\; x_{\text{chair}} \ge 20"


def test_latex_of_the_schedule_and_staffing_examples() -> None:
    view = render.model_view(load_model(golden("workshop_schedule")))
    by_key = {p.key: p for p in [*view.variables, *view.constraints]}
    assert by_key["saw"].tex == r"\operatorname{nooverlap}\left\{\, \mathit{cut}_{j} : j \in J \,\right\}"
    assert by_key["cut_then_paint"].tex == (
        r"\operatorname{start}\left(\mathit{paint}_{j}\right) \ge "
        r"\operatorname{end}\left(\mathit{cut}_{j}\right) + \mathit{dry}"
    )
    assert by_key["variable-cut"].tex.startswith(r"\mathit{cut}_{j}:\ \text{interval of length }")
    staffing = render.model_view(load_model(golden("staffing_infeasible")))
    budget = next(p for p in staffing.parameters if p.label == "budget")
    assert budget.tex == r"\mathit{budget} = 4000\ \text{\$}"


@pytest.mark.parametrize(
    ("expression", "tex"),
    [
        ("x + y <= 5", "x + y \\le 5"),
        ("x - (y - z) >= 0", "x - \\left(y - z\\right) \\ge 0"),
        ("2 * (x + y) == 4", "2\\, \\left(x + y\\right) = 4"),
        ("x / 4 <= 1", "\\frac{x}{4} \\le 1"),
        ("1 <= x <= 3", "1 \\le x \\le 3"),
        (
            "sum(c[i] * x[i] for i in I if c[i] > 0) <= 9",
            "\\sum_{\\substack{i \\in I \\\\ c_{i} > 0}} c_{i}\\, x_{i} \\le 9",
        ),
        ("max(x[t] for t in T)", "\\max_{t \\in T} x_{t}"),
        ("abs(x - y) <= 1", "\\left|x - y\\right| \\le 1"),
        ("not b or c", "\\lnot b \\lor c"),
        ("x[t - 1] <= x[t]", "x_{t - 1} \\le x_{t}"),
        ("y == 1e-07", "y = 1 \\times 10^{-7}"),
    ],
)
def test_expression_latex(expression: str, tex: str) -> None:
    assert render.expr_str_tex(expression) == tex


def test_user_text_in_latex_is_escaped_and_bad_expressions_fall_back_to_text() -> None:
    assert render.tex_text("a_b {c} $d$ 50% \\x") == r"\text{a\_b \{c\} \$d\$ 50\% \textbackslash{}x}"
    assert render.expr_str_tex("x[") == r"\texttt{x[}"
    assert render.expr_str_tex("x['}{$a$ #1']") == r"x_{\text{\}\{\$a\$ \#1}}"


def test_plan_rows_and_charts() -> None:
    model = load_model(golden("furniture"))
    rows = render.plan_rows(
        model, {"x[chair]": 20.0, "x[table]": 15.0000000001, "big_batch": 0.0, "aux_1": 3}
    )
    assert [(r.label, r.value, r.description) for r in rows] == [
        ("x[chair]", "20", "units produced"),
        ("x[table]", "15", "units produced"),
    ]
    chart = render.chart_data(rows)
    assert chart is not None and chart.kind == "bars" and len(chart.items) == 2
    schedule = load_model(golden("workshop_schedule"))
    result = solve_model(schedule)
    rows = render.plan_rows(schedule, result.values)
    cut = next(r for r in rows if r.label == "cut[door]")
    assert cut.unit == "h" and cut.start is not None and cut.end == cut.start + 3
    gantt = render.chart_data(rows)
    assert gantt is not None and gantt.kind == "gantt" and gantt.title == "Schedule (h)"
    assert {i["group"] for i in gantt.items} == {"cut", "paint"} and len(gantt.items) == 6
    assert render.chart_data(rows[-1:]) is None


def test_highlight_marks_quotes_whitespace_insensitively_and_escapes_everything() -> None:
    text = 'The shop has 100 units\n of wood. <script>alert("x")</script> & more'
    quotes = [("capacity", "the shop has 100 units of wood."), ("evil", '<script>alert("x")</script>')]
    html, found = render.highlight(text, quotes, flagged={"evil"})
    assert found == {"capacity", "evil"}
    assert '<mark class="src" data-refs="capacity">The shop has 100 units\n of wood.</mark>' in html
    assert (
        '<mark class="src conflict" data-refs="evil">&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;</mark>'
        in html
    )
    assert "<script" not in html and "&amp; more" in html
    overlapping, _ = render.highlight("a b c d", [("one", "a b c"), ("two", "b c d")])
    assert str(overlapping) == (
        '<mark class="src" data-refs="one">a </mark><mark class="src" data-refs="one two">b c</mark>'
        '<mark class="src" data-refs="two"> d</mark>'
    )


def test_constraint_edits() -> None:
    model = golden("furniture")
    edited = edited_constraint(model, "capacity", {"expression": "x['chair'] <= 3", "for_each": ""})
    capacity = edited["constraints"][0]
    assert capacity["expression"] == "x['chair'] <= 3" and "for_each" not in capacity
    assert model["constraints"][0]["for_each"] == "r in R"  # the original is untouched
    with pytest.raises(Exception, match="no constraint"):
        edited_constraint(model, "nope", {})


# ----------------------------------------------------------------------------- jobs and fragments


def test_a_pasted_model_starts_a_job_and_its_result_renders(client: TestClient, store: JobStore) -> None:
    r = client.post("/ui/jobs/model", data={"model_json": json.dumps(golden("furniture"))})
    assert r.status_code == 200
    assert r.headers["content-security-policy"] == CSP
    job_id = job_id_of(r.text)
    assert 'hx-swap-oob="innerHTML"' in r.text  # the old result is cleared
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"  # the same job, over /v1
    still = client.get(f"/ui/jobs/{job_id}")
    assert still.status_code == 200 and f'data-job-id="{job_id}"' in still.text
    finish_solved(store, job_id)
    html = client.get(f"/ui/jobs/{job_id}").text
    assert "A plan (optimal)" in html
    assert re.search(r"data-objective>\s*\d+", html)
    assert "<code>x[chair]</code>" in html and "units produced" in html
    assert 'data-tex="\\displaystyle \\sum_{p \\in P}' in html
    assert 'data-ref="capacity"' in html and 'data-refs="capacity"' in html
    for fmt in ("lp", "mps", "pyomo", "json"):
        assert f'data-export="{fmt}"' in html


def test_an_infeasible_job_shows_its_conflict_and_a_suggestion_starts_a_new_job(
    client: TestClient, store: JobStore
) -> None:
    job_id = submit_model(client, golden("staffing_infeasible"))
    finish_solved(store, job_id)
    html = client.get(f"/ui/jobs/{job_id}").text
    assert "No plan: the problem is infeasible" in html
    assert re.search(r'<li class="part constraint conflict" data-ref="cover"', html)
    assert '<mark class="src conflict"' in html
    assert "Apply and re-solve" in html
    r = client.post(f"/ui/jobs/{job_id}/relax", data={"which": "0"})
    assert r.status_code == 200, r.text
    new_id = job_id_of(r.text)
    assert new_id != job_id
    relaxed = store.load_job(new_id)
    assert relaxed is not None and relaxed.kind == "solve"
    assert relaxed.request["model"] != store.load_job(job_id).request["model"]  # type: ignore[union-attr]
    fixed = finish_solved(store, new_id)
    assert fixed.result is not None and fixed.result["status"] in ("optimal", "infeasible")


def test_a_resolve_keeps_the_problems_words(client: TestClient, store: JobStore) -> None:
    """A model sent with its words (the page's text box) keeps them through a suggestion and an
    edit, so every later result still marks the model's sentences in the person's own text."""
    model = golden("staffing_infeasible")
    words = "Our team. " + " ".join(str(c["source"]) for c in model["constraints"] if c.get("source"))
    r = client.post("/ui/jobs/model", data={"model_json": json.dumps(model), "text": words})
    job_id = job_id_of(r.text)
    assert store.load_job(job_id).request["source_text"] == words  # type: ignore[union-attr]
    finish_solved(store, job_id)
    html = client.get(f"/ui/jobs/{job_id}").text
    assert "Our team." in html and '<mark class="src conflict"' in html
    relaxed_id = job_id_of(client.post(f"/ui/jobs/{job_id}/relax", data={"which": "0"}).text)
    assert store.load_job(relaxed_id).request["source_text"] == words  # type: ignore[union-attr]
    finish_solved(store, relaxed_id)
    assert "Our team." in client.get(f"/ui/jobs/{relaxed_id}").text
    # over the API too: with a model only, never alone
    r = client.post("/v1/jobs", json={"source_text": words})
    assert r.status_code == 422 and "source_text" in r.text


def test_a_suggestion_that_does_not_exist_is_shown_as_an_error(client: TestClient, store: JobStore) -> None:
    job_id = submit_model(client, golden("staffing_infeasible"))
    finish_solved(store, job_id)
    r = client.post(f"/ui/jobs/{job_id}/relax", data={"which": "99"})
    assert r.status_code == 422
    assert "The suggestion could not be applied" in r.text and "there is no suggestion" in r.text


def test_editing_a_constraint_starts_a_job_with_the_change(client: TestClient, store: JobStore) -> None:
    job_id = submit_model(client, golden("furniture"))
    finish_solved(store, job_id)
    r = client.post(
        f"/ui/jobs/{job_id}/constraints/tables_min",
        data={"field_expression": "x['table'] >= 10", "field_for_each": ""},
    )
    assert r.status_code == 200, r.text
    new = store.load_job(job_id_of(r.text))
    assert new is not None
    tables_min = next(c for c in new.request["model"]["constraints"] if c["id"] == "tables_min")
    assert tables_min["expression"] == "x['table'] >= 10"
    broken = client.post(
        f"/ui/jobs/{job_id}/constraints/tables_min", data={"field_expression": "x['table' >="}
    )
    assert broken.status_code == 422  # the checker's answer, where the person typed; no job
    assert "Nothing was started" in broken.text and "tables_min" in broken.text
    unknown = client.post(
        f"/ui/jobs/{job_id}/constraints/tables_min", data={"field_expression": "x['table'] >= minimum"}
    )
    assert unknown.status_code == 422 and "minimum" in unknown.text
    assert sum(store.counts_by_status().values()) == 2  # the first job and the good edit only


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"schema": "optscribe.model/v1", "name": ', "line 1, column"),
        ("[1, 2]", "a model is a JSON object"),
        ("", "the model box is empty"),
        ('{"schema": "optscribe.model/v1", "variables": [{"name": "x", "domain": "real"}]}', "domain"),
    ],
)
def test_a_bad_model_is_shown_with_its_issues_and_no_trace(
    client: TestClient, body: str, expected: str
) -> None:
    r = client.post("/ui/jobs/model", data={"model_json": body})
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("text/html")
    assert 'class="error" role="alert"' in r.text and expected in r.text
    assert "Traceback" not in r.text


def test_a_failed_job_shows_its_issues(client: TestClient, store: JobStore) -> None:
    job_id = submit_model(client, golden("furniture"))
    assert store.claim(job_id, WORKER, 60) is not None
    issue = {"code": "symbol", "message": "unknown name 'y'", "where": "constraints[0]", "fix": "declare it"}
    store.finish(
        job_id, WORKER, "failed", error={"code": "invalid_model", "message": "bad", "issues": [issue]}
    )
    html = client.get(f"/ui/jobs/{job_id}").text
    assert "The job failed" in html and "unknown name &#39;y&#39;" in html and "Fix: declare it" in html


def test_a_text_job_without_an_llm_answers_the_notice(client: TestClient) -> None:
    r = client.post("/ui/jobs/text", data={"text": WORKSHOP_TEXT})
    assert r.status_code == 422
    assert "No LLM is configured" in r.text and "OPTSCRIBE_LLM_BASE_URL" in r.text


def llm_client_settings(tmp: Path) -> Settings:
    return settings_for(tmp, llm_base_url="http://127.0.0.1:9/v1", llm_model="m", llm_api_key="k")


def test_a_text_job_with_tables_is_stored_as_the_api_would(tmp_path: Path, store: JobStore) -> None:
    with TestClient(create_app(llm_client_settings(tmp_path), job_store=store)) as c:
        r = c.post(
            "/ui/jobs/text",
            data={
                "text": WORKSHOP_TEXT,
                "table_name_1": "routes",
                "table_csv_1": "a,b\n1,2\n",
                "table_csv_2": " ",
            },
        )
        assert r.status_code == 200, r.text
        job = store.load_job(job_id_of(r.text))
        assert job is not None and job.kind == "formalize"
        assert job.request["text"] == WORKSHOP_TEXT
        assert job.request["tables"] == {"routes": {"csv": "a,b\n1,2\n"}}
        empty = c.post("/ui/jobs/text", data={"text": "  "})
        assert empty.status_code == 422 and "the problem text is empty" in empty.text


EVIL = "<script>alert(1)</script>"


def test_a_text_job_is_shown_beside_its_model_and_everything_is_escaped(
    tmp_path: Path, store: JobStore
) -> None:
    text = WORKSHOP_TEXT.replace("must be made.", f"must be made. {EVIL}") + " \"quoted\" 'single'"
    model = workshop_model()
    model["constraints"][1]["source"] = f"At least 5 tables must be made. {EVIL}"
    model["constraints"][1]["description"] = f'" onmouseover="alert(2) {EVIL}'
    with TestClient(create_app(llm_client_settings(tmp_path), job_store=store)) as c:
        job_id = job_id_of(c.post("/ui/jobs/text", data={"text": text}).text)
        formalization = {"model": model, "summary": EVIL, "issues": [], "usage": {"total_tokens": 3}}
        finish_solved(store, job_id, {"formalization": formalization})
        html = c.get(f"/ui/jobs/{job_id}").text
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'onmouseover="alert' not in html
    assert '<mark class="src" data-refs="tables_min">At least 5 tables must be made. &lt;script&gt;' in html
    assert "The problem text" in html and "How the model was written" in html


def test_a_job_waiting_for_answers_shows_a_form_that_resumes_it(tmp_path: Path, store: JobStore) -> None:
    with TestClient(create_app(llm_client_settings(tmp_path), job_store=store)) as c:
        job_id = job_id_of(c.post("/ui/jobs/text", data={"text": WORKSHOP_TEXT}).text)
        assert store.claim(job_id, WORKER, 60) is not None
        question = f"How much wood? {EVIL}"
        assert store.set_needs_input(job_id, WORKER, [question])
        html = c.get(f"/ui/jobs/{job_id}").text
        assert "A few questions first" in html and "How much wood? &lt;script&gt;" in html
        nothing = c.post(f"/ui/jobs/{job_id}/answers", data={"question_1": question, "answer_1": " "})
        assert nothing.status_code == 422
        r = c.post(f"/ui/jobs/{job_id}/answers", data={"question_1": question, "answer_1": "100 units"})
        assert r.status_code == 200, r.text
        job = store.load_job(job_id)
        assert job is not None and job.status == "queued"
        assert job.request["answers"] == {question: "100 units"}
        again = c.post(f"/ui/jobs/{job_id}/answers", data={"question_1": question, "answer_1": "x"})
        assert again.status_code == 422 and 'class="error"' in again.text  # 409 of the API, as HTML


def test_another_callers_job_is_not_found(tmp_path: Path, store: JobStore) -> None:
    key_a, key_b = "a" * 24, "b" * 24
    settings = settings_for(
        tmp_path, api_keys_required=True, api_key_hashes=[hash_key(key_a), hash_key(key_b)]
    )
    with TestClient(create_app(settings, job_store=store)) as c:
        page = c.get("/")
        assert page.status_code == 200 and 'id="api-key"' in page.text
        assert c.post("/ui/jobs/model", data={"model_json": "{}"}).status_code == 401
        r = c.post(
            "/ui/jobs/model",
            data={"model_json": json.dumps(golden("furniture"))},
            headers={"X-API-Key": key_a},
        )
        job_id = job_id_of(r.text)
        assert c.get(f"/ui/jobs/{job_id}", headers={"X-API-Key": key_a}).status_code == 200
        other = c.get(f"/ui/jobs/{job_id}", headers={"X-API-Key": key_b})
        assert other.status_code == 404 and other.json()["error"]["code"] == "not_found"


def test_without_a_job_store_the_page_says_jobs_are_off(tmp_path: Path) -> None:
    with TestClient(create_app(settings_for(tmp_path))) as c:
        assert "Jobs are off on this server" in c.get("/").text
        r = c.post("/ui/jobs/model", data={"model_json": "{}"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "jobs_unavailable"


def test_a_failed_formalization_without_a_model(tmp_path: Path, store: JobStore) -> None:
    with TestClient(create_app(llm_client_settings(tmp_path), job_store=store)) as c:
        job_id = job_id_of(c.post("/ui/jobs/text", data={"text": "hello"}).text)
        assert store.claim(job_id, WORKER, 60) is not None
        result = {"formalization": {"model": None, "issues": [{"code": "x", "message": "no model"}]}}
        error = {"code": "formalization_failed", "message": "the LLM wrote no model"}
        store.finish(job_id, WORKER, "failed", result=result, error=error)
        job = store.load_job(job_id)
        assert job is not None
        ctx = job_context(job)
        assert ctx["view"] is None and ctx["solve"] is None and ctx["text"] == "hello"
        html = c.get(f"/ui/jobs/{job_id}").text
    assert "The job failed" in html and "the LLM wrote no model" in html and "hello" in html


# ----------------------------------------------------------------------------- a new user's walkthrough


def _heading_and_items(html: str) -> tuple[str, list[str]]:
    heading = re.search(r"<h3>(.*?)</h3>", html, re.S)
    assert heading is not None, html
    return heading.group(1).strip(), re.findall(r"<li>(.*?)</li>", html, re.S)


def test_one_problem_is_shown_once_under_a_heading_that_sums_it_up(client: TestClient) -> None:
    r = client.post("/ui/jobs/model", data={"model_json": '{"foo": 1}'})
    assert r.status_code == 422
    heading, items = _heading_and_items(r.text)
    assert heading == "The model has 1 problem"
    assert len(items) == 1 and r.text.count("unknown field") == 1
    empty = client.post("/ui/jobs/model", data={"model_json": "  "}).text
    heading, items = _heading_and_items(empty)
    assert heading == "There is no model to solve" and "not valid JSON" not in empty
    assert len(items) == 1 and "the model box is empty" in items[0]
    typo = client.post("/ui/jobs/model", data={"model_json": '{"a": '}).text
    assert _heading_and_items(typo)[0] == "The model is not valid JSON"
    array = client.post("/ui/jobs/model", data={"model_json": "[1]"}).text
    assert _heading_and_items(array)[0] == "The model is not a JSON object"  # it is JSON
    nothing = client.post("/ui/jobs/text", data={"text": " "})
    assert nothing.status_code == 422  # the no-LLM notice first: no LLM here
    two = {"schema": "optscribe.model/v1", "name": "m", "foo": 1, "bar": 2}
    heading, items = _heading_and_items(
        client.post("/ui/jobs/model", data={"model_json": json.dumps(two)}).text
    )
    assert heading == "The model has 2 problems" and len(items) == 2


def test_errors_can_be_focused_and_say_nothing_was_started(client: TestClient, store: JobStore) -> None:
    job_id = submit_model(client, golden("furniture"))
    finish_solved(store, job_id)
    r = client.post(f"/ui/jobs/{job_id}/constraints/tables_min", data={"field_expression": "x['t'] >= nope"})
    assert r.status_code == 422
    assert '<div class="error" role="alert" tabindex="-1">' in r.text
    assert _heading_and_items(r.text)[0] == "The model has 1 problem" and "Nothing was started" in r.text


def test_the_page_has_an_icon_of_its_own(client: TestClient) -> None:
    html = client.get("/").text
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in html
    svg = client.get("/static/favicon.svg")
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    ico = client.get("/favicon.ico")
    assert ico.status_code == 200 and ico.headers["content-type"].startswith("image/svg+xml")
    assert ico.content == svg.content and b"<svg" in ico.content


def test_the_plan_shows_a_unit_column_only_when_a_decision_has_a_unit(
    client: TestClient, store: JobStore
) -> None:
    furniture = submit_model(client, golden("furniture"))
    finish_solved(store, furniture)
    html = client.get(f"/ui/jobs/{furniture}").text
    assert ">Unit</th>" not in html and 'class="unit"' not in html
    assert '<td class="what">units produced</td>' in html
    assert '<span class="what-inline">units produced</span>' in html  # shown there on a phone
    chart = json.loads(__import__("html").unescape(re.search(r'data-chart="([^"]*)"', html).group(1)))  # type: ignore[union-attr]
    assert chart["axis"] == "units produced" and chart["title"] == "Decisions: units produced"
    schedule = submit_model(client, golden("workshop_schedule"))
    finish_solved(store, schedule)
    html = client.get(f"/ui/jobs/{schedule}").text
    assert ">Unit</th>" in html and '<td class="unit">h</td>' in html


def test_chart_axes_say_what_the_values_measure() -> None:
    row = render.PlanRow
    same = [
        row("x[a]", "x", "a", "1", 1, "kg", "flour used"),
        row("x[b]", "x", "b", "2", 2, "kg", "flour used"),
    ]
    assert render.chart_data(same).axis == "flour used (kg)"  # type: ignore[union-attr]
    mixed = [row("x[a]", "x", "a", "1", 1, "kg", "flour"), row("y", "y", "", "2", 2, "kg", "sugar")]
    assert render.chart_data(mixed).axis == "kg"  # type: ignore[union-attr]
    apart = [row("x[a]", "x", "a", "1", 1, "", "flour"), row("y", "y", "", "2", 2, "h", "sugar")]
    chart = render.chart_data(apart)
    assert chart is not None and chart.axis == "" and chart.title == "Decisions"
    tasks = [row("t", "t", "", "", 1, "min", "a task", start=0, end=1)]
    assert render.chart_data(tasks).axis == "time (min)"  # type: ignore[union-attr]


def test_the_results_editor_says_it_solves_the_edited_model(client: TestClient, store: JobStore) -> None:
    job_id = submit_model(client, golden("furniture"))
    finish_solved(store, job_id)
    html = client.get(f"/ui/jobs/{job_id}").text
    assert ">Solve the edited model</button>" in html and "Solve this model" not in html
    assert "Point at, tap or tab to a part of the model" in html
    # the formulas that may scroll sideways (a tab stop in Chrome) are named maths
    formulas = re.findall(r'<div class="formula">(.*?)</div>', html, re.S)
    assert formulas
    for f in formulas:
        for span in re.findall(r'<span class="tex[^"]*"[^>]*>', f):
            assert 'role="math"' in span and re.search(r'aria-label="[^"]+"', span), span
    assert 'aria-label="for each r in R"' in html


def test_the_no_llm_notice_says_where_the_docs_are(client: TestClient) -> None:
    html = client.get("/").text
    assert "<code>docs/llm.md</code>\n  in the optscribe repository" in html
    assert re.search(r'<pre class="scroll-x" tabindex="0" role="region" aria-label="[^"]+">', html)
