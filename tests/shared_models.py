"""Models shared by several test modules: the workshop (furniture) example and its text."""

from __future__ import annotations

import json
from typing import Any

from app.formalize.schemas import model_to_llm
from solvers.api import load_model

WORKSHOP_TEXT = (
    "A workshop makes chairs and tables. A chair earns $30 profit and a table $50. "
    "A chair uses 2 units of wood and 3 hours of labor; a table uses 4 units of wood and 2 hours of labor. "
    "The shop has 100 units of wood and 90 hours of labor. At least 5 tables must be made. "
    "How many of each should be made to maximize profit?"
)


def workshop_model(**overrides: Any) -> dict[str, Any]:
    m: dict[str, Any] = {
        "schema": "optscribe.model/v1",
        "name": "workshop",
        "sets": {"P": ["chair", "table"], "R": ["wood", "labor"]},
        "parameters": {
            "profit": {"index": ["P"], "values": {"chair": 30, "table": 50}},
            "use": {
                "index": ["R", "P"],
                "values": {"wood": {"chair": 2, "table": 4}, "labor": {"chair": 3, "table": 2}},
            },
            "avail": {"index": ["R"], "values": {"wood": 100, "labor": 90}},
            "min_tables": {"value": 5},
        },
        "variables": [{"name": "x", "index": ["P"], "domain": "integer", "description": "units made"}],
        "objective": {
            "sense": "maximize",
            "expression": "sum(profit[p] * x[p] for p in P)",
            "source": "How many of each should be made to maximize profit?",
        },
        "constraints": [
            {
                "id": "capacity",
                "template": "linear",
                "for_each": "r in R",
                "expression": "sum(use[r, p] * x[p] for p in P) <= avail[r]",
                "source": "The shop has 100 units of wood and 90 hours of labor.",
            },
            {
                "id": "tables_min",
                "template": "lower_bound",
                "expression": "x['table'] >= min_tables",
                "source": "At least 5 tables must be made.",
            },
        ],
    }
    m.update(overrides)
    return m


def llm_json(model: dict[str, Any], questions: list[str] | None = None, **extra: Any) -> str:
    """The model in the LLM's answer shape (as the single-call stage answers)."""
    form = model_to_llm(load_model(model), reasoning="test").model_dump(mode="json", by_alias=True)
    form["questions"] = questions or []
    form.update(extra)
    return json.dumps(form)
