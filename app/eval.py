"""The evaluation harness: run the pipeline over a public benchmark and score it.

``optscribe eval DATASET`` reads one benchmark file (every layout under
``../shared/data/benchmarks``), sends each problem's text (and its data, where the layout
carries data) through the formalization pipeline, and appends one JSON record per
problem to a results file; the summary (accuracy at two tolerances, valid models, solver
verdicts, LLM cost, time) is computed from that file, so an interrupted run resumes where
it stopped and ``--summary`` re-prints it at any time.

The rules that decide the published numbers live here and in ``docs/eval.md``:

* how labels are read (:func:`parse_answer`, :func:`objective_from_results`);
* when a result counts as correct (:func:`is_correct`, :func:`within_tolerance`);
* which problems are left out of the accuracy and why (``Problem.note``).

Nothing here needs an LLM: the runner takes any ``solve_text(text, tables)`` callable,
and the command imports the real one (``app.formalize.pipeline.solve_text``) lazily.
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import io
import json
import math
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeAlias, cast

import typer

__all__ = [
    "DATASETS",
    "INFEASIBLE",
    "TOLERANCES",
    "Answer",
    "DatasetError",
    "Outcome",
    "Problem",
    "ResultsFile",
    "benchmarks_dir",
    "format_summary",
    "is_correct",
    "load_dataset",
    "objective_from_results",
    "parameters_to_tables",
    "parse_answer",
    "percentile",
    "read_results",
    "register",
    "resolve_dataset",
    "run_eval",
    "summarize",
    "within_tolerance",
]

INFEASIBLE: Literal["infeasible"] = "infeasible"

#: A label: the optimal objective value, "infeasible", or None when the record has no
#: usable label (such a problem is run but left out of the accuracy, with its reason).
Answer: TypeAlias = float | Literal["infeasible"] | None

#: The tolerances the summary reports, the first being the headline accuracy.
TOLERANCES: tuple[float, ...] = (1e-4, 1e-2)

#: Result statuses that answer "there is no solution" for an infeasible label. An
#: ``infeasible_or_unbounded`` verdict counts: for a problem labelled infeasible the solver
#: has proven that no optimal solution exists, which is what the label says (SIRL's checker
#: accepts any output containing "nfeasible", Gurobi's INF_OR_UNBD included). ``unbounded``
#: does not count: it claims feasible solutions exist.
INFEASIBLE_STATUSES = frozenset({"infeasible", "infeasible_or_unbounded"})

#: Result statuses whose objective is compared with a numeric label.
VALUE_STATUSES = frozenset({"optimal", "feasible"})

#: Labels (compared after stripping and lower-casing) that mean "no feasible solution".
INFEASIBLE_LABELS = frozenset(
    {"no best solution", "infeasible", "no feasible solution", "no solution", "no optimal solution"}
)

#: A numeric label that OR-LLM-Agent's NL4OPT copy uses for "no solution" (and SIRL's
#: checker treats as one). Matched exactly: -99999 as a number or as its text.
SENTINEL_INFEASIBLE = -99999.0


class DatasetError(ValueError):
    """A dataset that cannot be found or read: unknown name, unknown layout, bad file."""


# ----------------------------------------------------------------------------- datasets

#: Short names for the benchmark files under the benchmarks directory. The plain names
#: (``nl4opt``, ``mamo_easy``...) pick the corrected or original variant that the
#: published work this harness compares with reports on; every file's stem is a name too.
DATASETS: dict[str, tuple[str, str]] = {
    "nl4opt": ("nl4opt/nl4opt_245_sirl_corrected.jsonl", "NL4Opt test, 245, SIRL-corrected labels"),
    "nl4opt_llmopt": ("nl4opt/nl4opt_230_llmopt_relabeled.jsonl", "NL4Opt, 230, LLMOPT relabelled"),
    "nl4opt_optmath": ("nl4opt/nl4opt_245_hf_mirror_optmath.jsonl", "NL4Opt, 245, ORLM/HF labels"),
    "nl4opt_agent": ("nl4opt/nl4opt_245_or_llm_agent.jsonl", "NL4Opt, 245, OR-LLM-Agent labels"),
    "nl4opt_e": ("nl4opt/nl4opt_e_289_resocratic.json", "NL4OPT-E, 289, ReSocratic results dicts"),
    "nl4opt_clean": ("nl4opt/nl4opt_214_llm4or_clean.jsonl", "NL4Opt, 214, LLM4OR cleaned"),
    "nl4opt_lpwp": ("nl4opt/nl4opt_lpwp_288_chain_of_experts.jsonl", "LPWP, 288, Chain-of-Experts"),
    "nl4opt_competition": (
        "nl4opt/nl4opt_competition_test_289.jsonl",
        "NL4Opt competition test, 289, no objective labels",
    ),
    "mamo_easy": ("mamo/mamo_easy_lp_642_sirl_fixed.jsonl", "MAMO EasyLP, 642, SIRL-fixed labels"),
    "mamo_complex": ("mamo/mamo_complex_lp_203_sirl_fixed.jsonl", "MAMO ComplexLP, 203, SIRL-fixed labels"),
    "mamo_easy_original": ("mamo/mamo_easy_lp_652.jsonl", "MAMO EasyLP, 652, original labels"),
    "mamo_complex_original": ("mamo/mamo_complex_lp_211.jsonl", "MAMO ComplexLP, 211, original labels"),
    "mamo_easy_llmopt": ("mamo/mamo_easy_652_llmopt_relabeled.jsonl", "MAMO EasyLP, 652, LLMOPT relabelled"),
    "mamo_complex_llmopt": ("mamo/mamo_complex_211_llmopt.jsonl", "MAMO ComplexLP, 211, LLMOPT copy"),
    "mamo_easy_clean": ("mamo/mamo_easy_lp_545_llm4or_clean.jsonl", "MAMO EasyLP, 545, LLM4OR cleaned"),
    "mamo_complex_clean": (
        "mamo/mamo_complex_lp_111_llm4or_clean.jsonl",
        "MAMO ComplexLP, 111, LLM4OR cleaned",
    ),
    "mamo_complex_optimind": (
        "mamo/mamo_complex_optimind_cleaned.csv",
        "MAMO ComplexLP, 210, OptiMind cleaned (evaluation only)",
    ),
    "nlp4lp": ("nlp4lp/nlp4lp_269_llm4or_mirror.jsonl", "NLP4LP, 269 (242 with solutions), with data"),
    "nlp4lp_clean": ("nlp4lp/nlp4lp_178_llm4or_clean.jsonl", "NLP4LP, 178, LLM4OR cleaned, with data"),
    "nlp4lp_llmopt": ("nlp4lp/nlp4lp_242_llmopt.jsonl", "NLP4LP, 242, LLMOPT text-only copy"),
    "optibench": ("optibench/optibench_605_resocratic.json", "OptiBench, 605, original results dicts"),
    "optibench_clean": ("optibench/optibench_403_llm4or_clean.jsonl", "OptiBench, 403, LLM4OR cleaned"),
    "optibench_sirl": ("optibench/optibench_605_sirl.jsonl", "OptiBench, 605, SIRL copy (2-dp labels)"),
    "optibench_llmopt": ("optibench/optibench_605_llmopt.jsonl", "OptiBench, 605, LLMOPT copy (2-dp labels)"),
}

BENCHMARK_SUFFIXES = (".jsonl", ".json", ".csv")


def benchmarks_dir() -> Path:
    """``$OPTSCRIBE_BENCHMARKS_DIR``, else ``../shared/data/benchmarks`` beside the repository."""
    env = os.environ.get("OPTSCRIBE_BENCHMARKS_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "benchmarks"


def resolve_dataset(path_or_name: str | Path) -> tuple[str, Path]:
    """The dataset's name and file: an existing path, a short name, or a file stem."""
    p = Path(path_or_name)
    if p.is_file():
        return p.stem, p
    name = str(path_or_name)
    root = benchmarks_dir()
    if name in DATASETS:
        f = root / DATASETS[name][0]
        if not f.is_file():
            raise DatasetError(f"dataset {name!r}: {f} does not exist (set OPTSCRIBE_BENCHMARKS_DIR)")
        return name, f
    if root.is_dir() and "/" not in name and os.sep not in name:
        hits = sorted(
            f for f in root.rglob("*") if f.is_file() and f.suffix in BENCHMARK_SUFFIXES and f.stem == name
        )
        if len(hits) == 1:
            return name, hits[0]
    raise DatasetError(
        f"unknown dataset {name!r}: give a file path, a file stem under {root}, or one of "
        + ", ".join(DATASETS)
    )


@dataclass(frozen=True)
class Problem:
    """One benchmark problem: what the pipeline gets, and what it is scored against."""

    id: str
    text: str
    answer: Answer
    #: Data the text refers to, as tables in the contract's shape (``{"columns": ...}``),
    #: keyed by table name; None when the layout carries no separate data.
    tables: dict[str, Any] | None = None
    #: The record's label fields exactly as the source has them.
    labels: dict[str, Any] = field(default_factory=dict)
    #: Why ``answer`` is None (the problem is then excluded from the accuracy), or which
    #: entry of a results dict was taken as the objective.
    note: str | None = None
    #: 0-based position in the file: the order of the summary's lists.
    position: int = 0


def load_dataset(path_or_name: str | Path) -> list[Problem]:
    """Every problem of a benchmark file, in file order (see ``docs/eval.md`` for the layouts)."""
    _, path = resolve_dataset(path_or_name)
    return read_problems(path)


def read_problems(path: Path) -> list[Problem]:
    try:
        raw = path.read_bytes().decode("utf-8-sig")
    except OSError as e:
        raise DatasetError(f"cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path} is not UTF-8 text: {e}") from None
    if path.suffix.lower() == ".csv":
        records: list[tuple[str | None, dict[str, Any]]] = [(None, r) for r in _csv_records(raw, path)]
    else:
        records = _json_records(raw, path)
    problems = [_problem(rec, pos, key, path) for pos, (key, rec) in enumerate(records)]
    ids = Counter(p.id for p in problems)
    if any(n > 1 for n in ids.values()):  # ids must identify a record for resume: fall back to positions
        problems = [
            Problem(str(p.position), p.text, p.answer, p.tables, p.labels, p.note, p.position)
            for p in problems
        ]
    return problems


def _csv_records(raw: str, path: Path) -> list[dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(raw, newline=""))
    fields = [f.strip().lower() for f in reader.fieldnames or []]
    if "question" not in fields or "answer" not in fields:
        raise DatasetError(f"{path}: a CSV benchmark needs 'question' and 'answer' columns, has {fields}")
    return [{(k or "").strip().lower(): v for k, v in row.items()} for row in reader]


def _json_records(raw: str, path: Path) -> list[tuple[str | None, dict[str, Any]]]:
    text = raw.strip()
    if not text:
        return []
    whole: Any = None
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None  # JSON Lines (several values): read line by line below
    if isinstance(whole, list):
        return [(None, _record(r, path, k + 1)) for k, r in enumerate(whole)]
    if isinstance(whole, dict):
        if "questions" in whole and "code_path" in whole:
            raise DatasetError(
                f"{path}: an OptiGuide what-if set (questions about a fixed Gurobi model whose code "
                "is not in the benchmarks); its questions do not define a problem on their own, so "
                "optscribe eval does not run it"
            )
        if whole and all(isinstance(v, dict) and "document" in v for v in whole.values()):
            return [(str(k), v) for k, v in whole.items()]
        return [(None, _record(whole, path, 1))]
    out: list[tuple[str | None, dict[str, Any]]] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            raise DatasetError(f"{path}, line {n}: not JSON: {e.msg}") from None
        rec = _record(value, path, n)
        if len(rec) == 1:  # the NL4Opt competition layout: {doc_id: {"document": ...}}
            ((key, inner),) = rec.items()
            if isinstance(inner, dict) and "document" in inner:
                out.append((str(key), inner))
                continue
        out.append((None, rec))
    return out


def _record(value: Any, path: Path, n: int) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DatasetError(f"{path}, record {n}: expected a JSON object, got {type(value).__name__}")
    return value


def _problem(rec: dict[str, Any], pos: int, key: str | None, path: Path) -> Problem:
    where = f"{path.name}, record {pos + 1}"
    source_id = key if key is not None else rec.get("id", rec.get("index"))
    pid = str(source_id) if source_id is not None and str(source_id).strip() else str(pos)
    note: str | None
    labels: dict[str, Any]
    tables: dict[str, Any] | None = None
    if "document" in rec:  # NL4Opt competition: documents and logical forms, no objective values
        text = rec["document"]
        labels = {k: rec[k] for k in ("obj_declaration", "const_declarations") if k in rec}
        answer, note = None, "no objective value in this layout (NL4Opt competition logical forms only)"
    elif "en_question" in rec:
        text = rec["en_question"]
        labels = {k: v for k, v in rec.items() if k != "en_question"}
        answer, note = parse_answer(rec.get("en_answer"))
    elif "Question" in rec:
        text = rec["Question"]
        labels = {k: rec[k] for k in ("Answer",) if k in rec}
        answer, note = parse_answer(rec.get("Answer"))
    elif "question" in rec and "results" in rec:
        text = rec["question"]
        labels = {"results": rec["results"]}
        if not isinstance(rec["results"], dict):
            answer, note = None, "results is not a dictionary"
        else:
            answer, note = objective_from_results(rec["results"], text)
    elif "question" in rec and "answer" in rec:
        text = rec["question"]
        labels = {"answer": rec["answer"]}
        answer, note = parse_answer(rec["answer"])
    elif "description" in rec and "solution" in rec:  # NLP4LP (OptiMUS folders)
        text = rec["description"]
        sol = rec["solution"]
        labels = {"solution": sol}
        if isinstance(sol, dict) and "objective" in sol:
            answer, note = parse_answer(sol["objective"])
        else:
            answer, note = None, "no objective in solution.json (the source gives no solution)"
        params = rec.get("parameters")
        if isinstance(params, dict) and params:
            tables = parameters_to_tables(params)
    elif "description" in rec and "sample" in rec:  # Chain-of-Experts LPWP / LLM4OR folders
        text = rec["description"]
        labels = {"sample": rec["sample"]}
        answer, note, tables = _from_sample(rec["sample"], text)
    else:
        raise DatasetError(f"{where}: unknown layout (fields: {', '.join(sorted(rec))})")
    if not isinstance(text, str) or not text.strip():
        raise DatasetError(f"{where}: the problem text is empty or not a string")
    return Problem(pid, text, answer, tables, labels, note, pos)


def _from_sample(sample: Any, text: str) -> tuple[Answer, str | None, dict[str, Any] | None]:
    """The first sample's first output is the label. Its ``input`` is passed as data only
    when the description holds no digit at all (a parametric template such as LPWP's
    prob_0); elsewhere in these files the input holds the optimal plan, not data."""
    if not isinstance(sample, list) or not sample or not isinstance(sample[0], dict):
        return None, "no sample in the record", None
    first = sample[0]
    out = first.get("output")
    value = out[0] if isinstance(out, list) and len(out) >= 1 else out
    answer, note = parse_answer(value) if value is not None else (None, "the sample's output is null")
    tables = None
    inp = first.get("input")
    if isinstance(inp, dict) and inp and not re.search(r"\d", text):
        tables = parameters_to_tables(inp)
    return answer, note, tables


# ----------------------------------------------------------------------------- labels

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?")


def parse_answer(value: Any) -> tuple[Answer, str | None]:
    """A label as a number, ``"infeasible"``, or None with the reason it is unusable.

    * JSON numbers are taken as they are (booleans are not numbers here).
    * Text is stripped; a leading ``$`` is dropped; commas are dropped only when they group
      thousands (``1,234,567.5``; ``1,5`` is refused, not read as 15 or 1.5); a list of one
      number (``"[18.0]"``, or a JSON list) is that number.
    * ``No Best Solution``, ``infeasible``, ``no feasible solution``, ``no solution`` and
      ``no optimal solution`` (any case) mean infeasible; so does the sentinel -99999.
    * Anything else (empty, NaN, infinite, several numbers, words) is unusable.
    """
    if value is None:
        return None, "no label"
    if isinstance(value, bool):
        return None, f"label is a boolean ({value})"
    if isinstance(value, int | float):
        x = float(value)
        if not math.isfinite(x):
            return None, f"label is not finite ({value})"
        return (INFEASIBLE, None) if x == SENTINEL_INFEASIBLE else (x, None)
    if isinstance(value, list):
        if len(value) == 1:
            return parse_answer(value[0])
        return None, f"label holds {len(value)} values"
    if not isinstance(value, str):
        return None, f"label is a {type(value).__name__}"
    s = value.strip()
    if not s:
        return None, "empty label"
    if s.lower().rstrip(".") in INFEASIBLE_LABELS:
        return INFEASIBLE, None
    if s.startswith("[") and s.endswith("]"):
        try:
            inner = json.loads(s)
        except json.JSONDecodeError:
            return None, f"unreadable label {value!r}"
        return parse_answer(inner)
    if s.startswith("$"):
        s = s[1:].strip()
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    if not _NUMBER.fullmatch(s):
        return None, f"not a number: {value!r}"
    return parse_answer(float(s))


def question_fingerprint(text: str) -> str:
    """The first 16 hex digits of SHA-256 of the text with its whitespace runs collapsed."""
    return hashlib.sha256(" ".join(text.split()).encode("utf-8")).hexdigest()[:16]


#: ReSocratic results dicts (OptiBench, NL4OPT-E, LLM4OR's cleaned OptiBench) list named
#: target values; the objective is the last entry, as SIRL and LLMOPT took it when they
#: derived their single-answer copies (checked: their labels equal the last entry, rounded
#: to 2 decimals, on all 605 OptiBench problems). The exceptions below were found by
#: reading every dict whose last key does not name an objective. Each is keyed by the
#: question's fingerprint and the dict's last key (so a copy of the text whose dict does
#: end with the objective is not touched), and gives the key of the objective entry, or
#: None when the dict holds decision values only (the problem then has no usable label).
RESULTS_AUDIT: dict[tuple[str, str], tuple[str | None, str]] = {
    # The objective is listed first, the decision values after it.
    ("77ac1da0367fba77", "Whether a fire stations should be built in City 6"): (
        "The optimal number of fire stations to be built is",
        "OptiBench 4",
    ),
    ("7584c9f18490d66c", "Whether a fire stations should be built in City 6"): (
        "The optimal number of fire stations to be built is",
        "OptiBench 20",
    ),
    ("7f93385c646eb57c", "Whether a fire stations should be built in City 6"): (
        "The optimal number of fire stations to be built is",
        "OptiBench 476",
    ),
    ("c56c22b05e972154", "Whether a fire stations should be built in City 6"): (
        "The optimal number of fire stations to be built is",
        "OptiBench 490",
    ),
    ("c1acea262bb791e1", "Units from Atlanta to Region 3"): (
        "The weekly cost of meeting demand is",
        "OptiBench 78",
    ),
    ("b8808e56eb13b107", "Units from Atlanta to Region 3"): (
        "The weekly cost of meeting demand is",
        "OptiBench 97",
    ),
    ("dfc328b088273218", "Units from Atlanta to Region 3"): (
        "The weekly cost of meeting demand is",
        "OptiBench 321",
    ),
    ("0cdde5275a23ef70", "Number of workers starting on Sunday"): (
        "The minimum number of workers needed is",
        "OptiBench 82",
    ),
    ("0ace0e2b571d7c9c", "Number of workers starting on Sunday"): (
        "The minimum number of workers needed is",
        "OptiBench 289",
    ),
    # The objective is one of the decision values ("minimize the ... number of taxi rides").
    ("48a1f540bd7c1be6", "The number of company car rides"): ("The number of taxi rides", "OptiBench 49"),
    ("6e71838046d69ab0", "The number of trucks used"): ("The number of vans used", "OptiBench 493"),
    ("6e71838046d69ab0", "Number of trucks used"): ("Minimum number of vans used", "NL4OPT-E 156"),
    # Decision values only: the objective's value is not given.
    ("aee1538fcbba7931", "The quantity of Fertilizer 5"): (None, "OptiBench 33: proportions only, no cost"),
    ("aedb955cb1d7d0d4", "The quantity of Fertilizer 5"): (None, "OptiBench 583: proportions only, no cost"),
    ("db7f9c613edcf46c", "The number of circular saws"): (None, "OptiBench 42: saw counts, not their total"),
    ("c5ab96fb401e4fb7", "The number of hybrid vans"): (None, "OptiBench 164: van counts, not their total"),
    ("256cc71ed45737ca", "The height of the box"): (None, "OptiBench 387: dimensions, not the surface area"),
    ("87b2782203f9cfa4", "The number of graduate researchers"): (
        None,
        "OptiBench 545: worker counts, not their total",
    ),
}


def objective_from_results(results: Mapping[str, Any], question: str) -> tuple[Answer, str | None]:
    """The objective value in a ReSocratic results dict: the last entry, except for the
    audited records above. The note says when the entry taken is not the last one."""
    if not results:
        return None, "empty results"
    keys = list(results)
    key, note = keys[-1], None
    audit = RESULTS_AUDIT.get((question_fingerprint(question), str(keys[-1])))
    if audit is not None:
        objective_key, where = audit
        if objective_key is None:
            return None, f"results hold no objective value, only decision values ({where})"
        if objective_key in results:
            key, note = objective_key, f"objective taken from results[{objective_key!r}] ({where}; audited)"
    answer, why = parse_answer(results[key])
    if answer is None:
        return None, f"unusable objective value (results[{key!r}]: {why})"
    return answer, note


def parameters_to_tables(params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A parameters JSON (NLP4LP, LPWP samples) as tables in the contract's shape.

    Scalars go into one table ``scalars`` (columns ``name``, ``value``); each list goes
    into a table of its own name with one 1-based index column per dimension (``i``,
    ``j``, ``k``...) and ``value``; a dict into ``key``, ``value``. Booleans become 0/1.
    """
    scalars = {k: v for k, v in params.items() if not isinstance(v, list | dict)}
    tables: dict[str, dict[str, Any]] = {}
    if scalars:
        name = "scalars" if "scalars" not in params else "scalar_parameters"
        tables[name] = {"columns": {"name": list(scalars), "value": [_cell(v) for v in scalars.values()]}}
    for k, v in params.items():
        if isinstance(v, list):
            rows = list(_flatten(v, ()))
            depth = max((len(ix) for ix, _ in rows), default=1)
            dims = [_dim_name(d) for d in range(depth)]
            cols: dict[str, list[Any]] = {d: [] for d in dims}
            cols["value"] = []
            for ix, x in rows:
                for d, name in enumerate(dims):
                    cols[name].append(ix[d] if d < len(ix) else None)
                cols["value"].append(_cell(x))
            tables[k] = {"columns": cols}
        elif isinstance(v, dict):
            tables[k] = {"columns": {"key": [str(x) for x in v], "value": [_cell(x) for x in v.values()]}}
    return tables


def _flatten(v: Any, ix: tuple[int, ...]) -> Iterable[tuple[tuple[int, ...], Any]]:
    if isinstance(v, list):
        for n, x in enumerate(v, start=1):
            yield from _flatten(x, (*ix, n))
    else:
        yield ix, v


def _dim_name(d: int) -> str:
    return "ijkl"[d] if d < 4 else f"d{d + 1}"


def _cell(x: Any) -> Any:
    if isinstance(x, bool):
        return int(x)
    if isinstance(x, int | float | str) or x is None:
        return x
    return json.dumps(x)


# ----------------------------------------------------------------------------- scoring


def within_tolerance(got: float, want: float, tol: float) -> bool:
    """``|got - want| / (|want| + 1) <= tol``: relative error, with the +1 keeping a zero
    (or tiny) label from demanding an exact match. The criterion of SIRL's published
    checker (Cardinal-Operations/SIRL, check_result.py), there with tol = 1e-6."""
    return abs(got - want) <= tol * (abs(want) + 1.0)


def is_correct(answer: Answer, result: Mapping[str, Any] | None, error: str | None, tol: float) -> bool:
    """Whether optscribe's answer matches the label at relative tolerance ``tol``.

    A run that ended with an error has given no answer (a partial result it carries is
    not scored). A numeric label needs status optimal or feasible and a finite objective
    within tolerance; an infeasible label needs status infeasible or
    infeasible_or_unbounded.
    """
    if answer is None:
        raise ValueError("a problem without a label is not scored")
    if error is not None or result is None:
        return False
    status = result.get("status")
    if answer == INFEASIBLE:
        return status in INFEASIBLE_STATUSES
    if status not in VALUE_STATUSES:
        return False
    obj = _finite(result.get("objective"))
    return obj is not None and within_tolerance(obj, float(answer), tol)


def _finite(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return float(x) if math.isfinite(x) else None


def tol_label(tol: float) -> str:
    return f"{tol:.0e}".replace("e-0", "e-")


# ----------------------------------------------------------------------------- outcomes


@dataclass
class Outcome:
    """What one pipeline run gave: the model and result (contract JSON), its cost, its error."""

    model: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    repair_rounds: int = 0
    error: str | None = None

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any]) -> Outcome:
        """Read the dict ``app.formalize.pipeline.solve_text`` returns (``Formalization.to_dict``):
        ``model``, ``result``, ``llm_calls``, ``usage`` (or ``tokens``), ``repair_rounds``,
        ``error``, ``status`` (``needs_input`` and ``failed`` are errors)."""
        usage = d.get("usage") if isinstance(d.get("usage"), Mapping) else {}
        tokens = d.get("tokens") if isinstance(d.get("tokens"), Mapping) else {}
        assert isinstance(usage, Mapping) and isinstance(tokens, Mapping)
        prompt = tokens.get("prompt", usage.get("prompt_tokens", usage.get("input_tokens", 0)))
        completion = tokens.get("completion", usage.get("completion_tokens", usage.get("output_tokens", 0)))
        calls = d.get("llm_calls", usage.get("calls", 0))
        error = d.get("error")
        status = d.get("status")
        if error is None and status == "needs_input":
            qs = d.get("questions") or []
            error = "needs input: " + "; ".join(str(q) for q in qs) if qs else "needs input"
        elif error is None and status == "failed":
            error = "failed"
        return cls(
            model=_as_json(d.get("model")),
            result=_as_json(d.get("result")),
            llm_calls=_int(calls),
            prompt_tokens=_int(prompt),
            completion_tokens=_int(completion),
            repair_rounds=_int(d.get("repair_rounds", 0)),
            error=None if error is None else str(error),
        )


def _int(x: Any) -> int:
    try:
        return int(x or 0)
    except (TypeError, ValueError):
        return 0


def _as_json(x: Any) -> dict[str, Any] | None:
    if x is None:
        return None
    for method in ("to_json_dict", "dump", "model_dump"):
        fn = getattr(x, method, None)
        if callable(fn):
            x = fn()
            break
    return dict(x) if isinstance(x, Mapping) else None


#: ``solve_text(text, tables)``: an Outcome, or the pipeline's dict.
SolveFn: TypeAlias = Callable[[str, dict[str, Any] | None], Outcome | Mapping[str, Any]]


# ----------------------------------------------------------------------------- results file


@dataclass
class ResultsFile:
    records: list[dict[str, Any]]
    #: A last line cut off mid-write (no newline, not JSON): dropped, its problem re-run.
    partial_tail: bool = False
    #: Complete lines that are not JSON objects (skipped).
    bad_lines: int = 0
    #: Byte length of the readable part (everything before a partial tail).
    good_bytes: int = 0


def read_results(path: Path) -> ResultsFile:
    """The records of a results file, tolerating a partially written last line."""
    data = path.read_bytes()
    out = ResultsFile(records=[], good_bytes=len(data))
    start = 0
    while start < len(data):
        end = data.find(b"\n", start)
        complete = end != -1
        line = data[start : end if complete else len(data)]
        nxt = end + 1 if complete else len(data)
        if line.strip():
            try:
                rec = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                rec = None
            if isinstance(rec, dict):
                out.records.append(rec)
            elif complete:
                out.bad_lines += 1
            else:
                out.partial_tail = True
                out.good_bytes = start
        start = nxt
    return out


def _json_safe(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, Mapping):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    return x


def make_record(
    problem: Problem,
    outcome: Outcome,
    seconds: float,
    dataset: str,
    source: str,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    result = outcome.result
    status = result.get("status") if result else None
    rec: dict[str, Any] = {
        "id": problem.id,
        "position": problem.position,
        "dataset": dataset,
        "source": source,
        "answer": problem.answer,
        "answer_note": problem.note,
        "status": status,
        "objective": _finite(result.get("objective")) if result else None,
        "correct": None
        if problem.answer is None
        else {tol_label(t): is_correct(problem.answer, result, outcome.error, t) for t in TOLERANCES},
        "valid_model": outcome.model is not None and result is not None,
        "llm_calls": outcome.llm_calls,
        "tokens": {"prompt": outcome.prompt_tokens, "completion": outcome.completion_tokens},
        "seconds": round(seconds, 6),
        "repair_rounds": outcome.repair_rounds,
        "error": outcome.error,
        "model": outcome.model,
        "result": result,
    }
    if meta:
        rec.update({k: v for k, v in meta.items() if k not in rec})
    return cast(dict[str, Any], _json_safe(rec))


# ----------------------------------------------------------------------------- the runner


class ResultsMismatch(DatasetError):
    """The results file holds records of another benchmark file."""


def run_eval(
    problems: Sequence[Problem],
    solve: SolveFn,
    out: Path,
    *,
    dataset: str,
    source: str,
    concurrency: int = 1,
    use_tables: bool = True,
    fatal: Callable[[BaseException], bool] | tuple[type[BaseException], ...] = (),
    meta: Mapping[str, Any] | None = None,
    progress: Callable[[dict[str, Any], int, int], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> list[dict[str, Any]]:
    """Run every problem not yet in ``out`` and append its record; return all records.

    Records are appended, flushed and synced one by one as problems finish, so a crash
    loses at most the problems in flight. A problem whose ``solve`` raises an ordinary
    exception gets a record with that error (and the tokens the exception's ``usage``
    says were spent); a ``fatal`` exception (a type in the tuple, or one the predicate
    accepts: no LLM configured, endpoint down) or a BaseException (interrupt) stops the
    run: nothing more is started, what finishes is still written, and it propagates.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    done: list[dict[str, Any]] = []
    if out.exists():
        existing = read_results(out)
        others = sorted({str(r.get("source")) for r in existing.records if r.get("source") != source})
        if others:
            raise ResultsMismatch(
                f"{out} holds results of {', '.join(others)}, not {source}: use another --out file"
            )
        if existing.partial_tail:
            with out.open("r+b") as cut:
                cut.truncate(existing.good_bytes)
        done = existing.records
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
    is_fatal = fatal if callable(fatal) else _instance_of(fatal)
    seen = {str(r.get("id")) for r in done}
    todo = [p for p in problems if p.id not in seen]
    total = len(problems)
    written = [len(problems) - len(todo)]
    new: list[dict[str, Any]] = []
    lock = threading.Lock()

    with out.open("ab") as f:
        if f.tell() > 0:  # a last line without its newline (written whole, newline lost)
            with out.open("rb") as r:
                r.seek(-1, os.SEEK_END)
                if r.read(1) != b"\n":
                    f.write(b"\n")

        def write(rec: dict[str, Any]) -> None:
            line = json.dumps(rec, ensure_ascii=False, allow_nan=False) + "\n"
            with lock:
                f.write(line.encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
                new.append(rec)
                written[0] += 1
                if progress is not None:
                    progress(rec, written[0], total)

        def one(p: Problem) -> dict[str, Any]:
            tables = p.tables if use_tables else None
            t0 = clock()
            try:
                got = solve(p.text, tables)
                outcome = got if isinstance(got, Outcome) else Outcome.from_mapping(got)
            except Exception as e:  # one problem's failure is a result, not the end of the run
                if is_fatal(e):
                    raise
                outcome = _outcome_of_exception(e)
            return make_record(p, outcome, clock() - t0, dataset, source, meta)

        if concurrency == 1:
            for p in todo:
                write(one(p))
        else:
            _run_pool(todo, one, write, concurrency)
    return done + new


def _instance_of(types: tuple[type[BaseException], ...]) -> Callable[[BaseException], bool]:
    def test(e: BaseException) -> bool:
        return isinstance(e, types)

    return test


def _outcome_of_exception(e: Exception) -> Outcome:
    usage = getattr(e, "usage", None)
    return Outcome(
        llm_calls=_int(getattr(usage, "calls", 0)),
        prompt_tokens=_int(getattr(usage, "prompt_tokens", 0)),
        completion_tokens=_int(getattr(usage, "completion_tokens", 0)),
        error=f"{type(e).__name__}: {e}",
    )


def _run_pool(
    todo: Sequence[Problem],
    one: Callable[[Problem], dict[str, Any]],
    write: Callable[[dict[str, Any]], None],
    concurrency: int,
) -> None:
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="optscribe-eval")
    pending: set[Future[dict[str, Any]]] = set()
    queue = list(reversed(todo))
    failure: BaseException | None = None
    try:
        while queue or pending:
            while queue and len(pending) < concurrency and failure is None:
                pending.add(pool.submit(one, queue.pop()))
            if not pending:
                break
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                exc = fut.exception()
                if exc is None:
                    write(fut.result())
                elif failure is None:
                    failure = exc
            if failure is not None:
                queue.clear()
    except BaseException as e:  # interrupted while waiting: stop starting, keep what finishes
        failure = failure or e
        queue.clear()
        for fut in pending:
            fut.cancel()
        pool.shutdown(wait=True)
        for fut in pending:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                write(fut.result())
        raise failure from None
    finally:
        pool.shutdown(wait=True)
    if failure is not None:
        raise failure


# ----------------------------------------------------------------------------- summary


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) by linear interpolation between closest ranks
    (numpy's default, Hyndman and Fan type 7); None for no values."""
    if not values:
        return None
    xs = sorted(values)
    h = (len(xs) - 1) * q / 100.0
    lo = math.floor(h)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (h - lo) * (xs[hi] - xs[lo])


def _share(n: int, d: int) -> float | None:
    return n / d if d else None


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def summarize(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The summary of a results file, recomputed from each record's label and result.

    Accuracy is over the problems with a usable label; every other share and mean is over
    all problems run. Records are taken in dataset order (``position``), the first record
    of an id when an id repeats; the output does not depend on the order of the file.
    """
    by_id: dict[str, Mapping[str, Any]] = {}
    duplicates = 0
    for r in records:
        rid = str(r.get("id"))
        if rid in by_id:
            duplicates += 1
            continue
        by_id[rid] = r
    recs = sorted(by_id.values(), key=lambda r: (_int(r.get("position")), str(r.get("id"))))
    n = len(recs)
    scored = [r for r in recs if r.get("answer") is not None]
    excluded = [r for r in recs if r.get("answer") is None]

    def ok(r: Mapping[str, Any], tol: float) -> bool:
        result = r.get("result") if isinstance(r.get("result"), Mapping) else None
        answer = r.get("answer")
        err = r.get("error")
        return is_correct(answer, result, None if err is None else str(err), tol)

    correct = {tol_label(t): sum(ok(r, t) for r in scored) for t in TOLERANCES}
    clean = [r for r in recs if r.get("error") is None]
    solved = [
        r for r in clean if r.get("status") in VALUE_STATUSES and _finite(r.get("objective")) is not None
    ]
    infeasible_labelled = [r for r in scored if r.get("answer") == INFEASIBLE]
    infeasible_found = [r for r in infeasible_labelled if ok(r, TOLERANCES[0])]
    false_infeasible = [
        r
        for r in scored
        if r.get("answer") != INFEASIBLE and r.get("error") is None and r.get("status") in INFEASIBLE_STATUSES
    ]
    tokens_p = [float(_int((r.get("tokens") or {}).get("prompt"))) for r in recs]
    tokens_c = [float(_int((r.get("tokens") or {}).get("completion"))) for r in recs]
    seconds = [float(r.get("seconds") or 0.0) for r in recs]
    return {
        "datasets": sorted({str(r.get("dataset")) for r in recs}),
        "sources": sorted({str(r.get("source")) for r in recs}),
        "problems": n,
        "scored": len(scored),
        "excluded": {
            "count": len(excluded),
            "reasons": dict(sorted(Counter(_reason(r.get("answer_note")) for r in excluded).items())),
            "ids": [str(r.get("id")) for r in excluded],
        },
        "correct": correct,
        "accuracy": {k: _share(v, len(scored)) for k, v in correct.items()},
        "valid_model": _share(sum(bool(r.get("valid_model")) for r in recs), n),
        "solved": _share(len(solved), n),
        "infeasible": {
            "labelled": len(infeasible_labelled),
            "detected": len(infeasible_found),
            "share": _share(len(infeasible_found), len(infeasible_labelled)),
            "claimed_on_feasible": len(false_infeasible),
        },
        "errors": sum(r.get("error") is not None for r in recs),
        "llm_calls_mean": _mean([float(_int(r.get("llm_calls"))) for r in recs]),
        "tokens_mean": {
            "prompt": _mean(tokens_p),
            "completion": _mean(tokens_c),
            "total": _mean([a + b for a, b in zip(tokens_p, tokens_c, strict=True)]),
        },
        "repair_rounds_mean": _mean([float(_int(r.get("repair_rounds"))) for r in recs]),
        "seconds": {
            "p50": percentile(seconds, 50),
            "p95": percentile(seconds, 95),
            "mean": _mean(seconds),
            "total": sum(seconds),
        },
        "duplicate_records": duplicates,
    }


def _reason(note: Any) -> str:
    """An exclusion note without its particulars (the record keeps them): for counting."""
    return re.split(r" \(|: ", str(note or "no label"), maxsplit=1)[0]


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _num(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def format_summary(s: Mapping[str, Any]) -> str:
    """The summary for people: one line per figure."""
    lines = [f"dataset: {', '.join(s['datasets']) or '-'} ({', '.join(s['sources']) or '-'})"]
    ex = s["excluded"]
    lines.append(
        f"problems: {s['problems']}, scored: {s['scored']}, excluded (no usable label): {ex['count']}"
    )
    for reason, count in ex["reasons"].items():
        lines.append(f"  - {count} x {reason}")
    for k, v in s["accuracy"].items():
        lines.append(f"accuracy @ rel. tol {k}: {_pct(v)} ({s['correct'][k]}/{s['scored']})")
    lines.append(f"valid model: {_pct(s['valid_model'])}, solved (objective found): {_pct(s['solved'])}")
    inf = s["infeasible"]
    lines.append(
        f"infeasible labels detected: {inf['detected']}/{inf['labelled']}"
        f", infeasible claimed on feasible labels: {inf['claimed_on_feasible']}"
    )
    tok = s["tokens_mean"]
    lines.append(
        f"errors: {s['errors']}; mean LLM calls {_num(s['llm_calls_mean'], 2)}, mean tokens "
        f"{_num(tok['total'], 0)} ({_num(tok['prompt'], 0)} prompt + {_num(tok['completion'], 0)} completion)"
        f", mean repair rounds {_num(s['repair_rounds_mean'], 2)}"
    )
    sec = s["seconds"]
    lines.append(
        f"seconds: p50 {_num(sec['p50'], 2)}, p95 {_num(sec['p95'], 2)}, total {_num(sec['total'], 1)}"
    )
    if s.get("duplicate_records"):
        lines.append(
            f"note: {s['duplicate_records']} repeated record(s) ignored (the first of each id counts)"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the command

EXIT_INTERNAL = 1
EXIT_INPUT = 2


def _dataset_help() -> str:
    rows = "\n".join(f"  {name:<22} {desc}" for name, (_, desc) in DATASETS.items())
    return (
        "Run the pipeline over a benchmark and score it against the labels (see docs/eval.md).\n\n"
        "DATASET is a file path, a file stem under the benchmarks directory "
        "($OPTSCRIBE_BENCHMARKS_DIR, default ../shared/data/benchmarks), or one of:\n\n"
        f"\b\n{rows}\n\n"
        "Records are appended to --out as problems finish; running again resumes (problems "
        "already in the file are skipped). --summary FILE re-prints the summary of a results file."
    )


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"optscribe eval: {message}", err=True)
    return typer.Exit(code)


def _load_solver() -> tuple[SolveFn, Callable[[BaseException], bool]]:
    """The real pipeline's ``solve_text``, and which of its exceptions stop the run.

    Imported here, lazily, so that the harness itself never needs the pipeline or an LLM.
    Stopping (exit 1, resume later) rather than recording a wrong answer: no LLM configured
    (``LLMNotConfigured``) and an endpoint that gives no answer after its retries
    (``LLMUnavailable``), since an outage is not the system's answer to a problem. One
    problem's own failure (``LLMBadOutput``, ``FormalizationFailed``, its time budget
    used up, ``LLMBudgetExceeded``) is recorded as that problem's error.
    """
    pipeline = importlib.import_module("app.formalize.pipeline")
    solve = getattr(pipeline, "solve_text", None)
    if not callable(solve):
        raise ImportError("app.formalize.pipeline has no solve_text")
    try:
        errors = importlib.import_module("app.errors")
    except ImportError:
        errors = None

    def kind(name: str) -> type[BaseException] | None:
        t = getattr(errors, name, None)
        return t if isinstance(t, type) and issubclass(t, BaseException) else None

    stop = tuple(t for t in (kind("LLMNotConfigured"), kind("LLMUnavailable")) if t is not None)
    per_problem = tuple(t for t in (kind("LLMBudgetExceeded"),) if t is not None)

    def is_fatal(e: BaseException) -> bool:
        return isinstance(e, stop) and not isinstance(e, per_problem)

    ready = getattr(pipeline, "ensure_ready", None)
    if callable(ready):
        ready()
    return cast(SolveFn, solve), is_fatal


def _llm_name() -> str | None:
    """The configured LLM's name for the records, when the settings say it."""
    try:
        settings = importlib.import_module("app.settings").get_settings()
    except Exception:
        return None
    for attr in ("llm_model", "model", "llm_name"):
        v = getattr(settings, attr, None)
        if isinstance(v, str) and v:
            return v
    return None


def register(app: typer.Typer) -> None:
    """Add the ``eval`` command to the CLI."""

    @app.command("eval", help=_dataset_help())
    def eval_command(
        dataset: Annotated[
            str | None,
            typer.Argument(metavar="DATASET", help="A benchmark: short name, file stem or path (see above)."),
        ] = None,
        limit: Annotated[
            int | None, typer.Option("--limit", min=1, help="Only the first N problems of the file.")
        ] = None,
        concurrency: Annotated[
            int, typer.Option("--concurrency", "-c", min=1, help="Problems solved at once (threads).")
        ] = 1,
        out: Annotated[
            Path | None,
            typer.Option("--out", "-o", help="Results file (JSON Lines); default: eval-<DATASET>.jsonl."),
        ] = None,
        summary: Annotated[
            Path | None, typer.Option("--summary", help="Only print the summary of this results file.")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
        no_tables: Annotated[
            bool, typer.Option("--no-tables", help="Do not pass data tables (NLP4LP parameters); text only.")
        ] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines on stderr.")] = False,
    ) -> None:
        def show(records: list[dict[str, Any]]) -> None:
            s = summarize(records)
            typer.echo(json.dumps(s, indent=2) if as_json else format_summary(s))

        if summary is not None:
            if dataset is not None:
                raise _fail("give either DATASET or --summary FILE, not both", EXIT_INPUT)
            try:
                rf = read_results(summary)
            except OSError as e:
                raise _fail(f"cannot read {summary}: {e.strerror or e}", EXIT_INPUT) from None
            if rf.bad_lines or rf.partial_tail:
                typer.echo(
                    f"optscribe eval: {summary}: skipped {rf.bad_lines + rf.partial_tail} unreadable line(s)",
                    err=True,
                )
            show(rf.records)
            return
        if dataset is None:
            raise _fail("give a DATASET (or --summary FILE); see --help for the names", EXIT_INPUT)
        try:
            name, path = resolve_dataset(dataset)
            problems = read_problems(path)
        except DatasetError as e:
            raise _fail(str(e), EXIT_INPUT) from None
        if limit is not None:
            problems = problems[:limit]
        target = out or Path(f"eval-{name}.jsonl")
        existed = target.exists()
        try:
            solve, fatal = _load_solver()
        except ImportError as e:
            raise _fail(f"the formalization pipeline is not available: {e}", EXIT_INTERNAL) from None
        except Exception as e:  # ensure_ready: no LLM configured, and the like
            raise _fail(str(e) or type(e).__name__, EXIT_INTERNAL) from None
        llm = _llm_name()

        def report(rec: dict[str, Any], k: int, total: int) -> None:
            if quiet:
                return
            corr = rec.get("correct")
            verdict = "-" if corr is None else ("ok" if next(iter(corr.values())) else "wrong")
            what = rec.get("error") or rec.get("status") or "no result"
            typer.echo(
                f"[{k}/{total}] {rec['id']}: {verdict} ({str(what)[:80]}, {rec['seconds']:.1f} s)", err=True
            )

        try:
            records = run_eval(
                problems,
                solve,
                target,
                dataset=name,
                source=path.name,
                concurrency=concurrency,
                use_tables=not no_tables,
                fatal=fatal,
                meta={"llm": llm} if llm else None,
                progress=report,
            )
        except DatasetError as e:
            raise _fail(str(e), EXIT_INPUT) from None
        except OSError as e:
            raise _fail(f"cannot write {target}: {e.strerror or e}", EXIT_INPUT) from None
        except KeyboardInterrupt:
            raise _fail(
                f"interrupted; finished problems are in {target} (run again to resume)", 130
            ) from None
        except Exception as e:  # a fatal pipeline error: no LLM configured, endpoint down
            if not existed and target.exists() and target.stat().st_size == 0:
                target.unlink()
            typer.echo(f"optscribe eval: {e}", err=True)
            if target.exists():
                typer.echo(
                    f"optscribe eval: stopped; the finished problems are in {target}: run again to resume",
                    err=True,
                )
            raise typer.Exit(EXIT_INTERNAL) from None
        ids = {p.id for p in problems}
        show([r for r in records if str(r.get("id")) in ids])
