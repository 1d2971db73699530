"""The structured answers the LLM gives at each formalization stage, and their converters.

The contract (``solvers.model.Model``) keys sets and parameters by name and nests parameter
values in dictionaries keyed by set elements. Strict structured-output modes (OpenAI
``strict: true``, and the grammar-constrained decoders of vLLM, llama.cpp and Ollama) cannot
describe objects with arbitrary keys, so the LLM fills an equivalent *LLM form* instead:

- sets, parameters and variables are lists of objects that carry their ``name``;
- parameter values are a list of entries ``{"key": ["wood", "chair"], "value": 2}`` (one
  element per index component, a set of pairs contributing two);
- a constraint is one flat object with every template field present, ``null`` where the
  template does not use it;
- every property is required (``null`` or ``[]`` when not used) and no object is open.

``Formulate.to_model()`` turns the LLM form into the contract, ``model_to_llm()`` does the
reverse (for repair prompts and few-shot examples). Data tables never travel through the
LLM: ``to_model(tables=...)`` attaches the request's tables again.

``strict_json_schema(cls)`` / ``response_format(stage)`` give the JSON Schema to send; it has
no ``default`` keys and every object lists all its properties as required. The models accept
answers from non-strict endpoints too: a missing nullable field reads as ``null``, a missing
list as ``[]``, a missing variable ``lower`` as 0.
"""

from __future__ import annotations

import json
import re
import types
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, model_validator

from solvers.errors import CheckFailed, Issue
from solvers.model import (
    ALL_TEMPLATES,
    LINEAR_TEMPLATES,
    SCHEMA_ID,
    Domain,
    Model,
    Parameter,
    RangeSet,
    Table,
    TableSet,
    Variable,
)

__all__ = [
    "STAGES",
    "Classify",
    "ClassifiedConstraint",
    "ClassifiedObjective",
    "FormShapeError",
    "Formulate",
    "Identify",
    "LlmConstraint",
    "LlmObjective",
    "LlmParameter",
    "LlmSet",
    "LlmVariable",
    "Repair",
    "SingleCall",
    "Unrepresentable",
    "ValueEntry",
    "classify_part",
    "identify_part",
    "model_to_llm",
    "response_format",
    "strict_json_schema",
]

TemplateName = Literal[
    "upper_bound",
    "lower_bound",
    "linear",
    "sum",
    "ratio",
    "xby",
    "xy",
    "balance",
    "implication",
    "either_or",
    "at_most_k",
    "at_least_k",
    "exactly_k",
    "all_different",
    "fixed_charge",
    "semi_continuous",
    "no_overlap",
    "precedence",
    "cumulative",
    "clause",
]
DomainName = Literal["continuous", "integer", "binary", "boolean", "interval"]
Sense = Literal["minimize", "maximize"]
ElementValue = Union[str, int]
NumberOrName = Union[float, str]
ListField = Union[str, list[str]]

assert set(get_args(TemplateName)) == set(ALL_TEMPLATES), "TemplateName is out of step with the contract"
assert get_args(DomainName) == get_args(Domain), "DomainName is out of step with the contract"

#: The fields each template uses besides id, template, for_each, source, description.
TEMPLATE_FIELDS: dict[str, tuple[str, ...]] = {
    **{t: ("expression",) for t in LINEAR_TEMPLATES},
    "implication": ("if", "then"),
    "either_or": ("options",),
    "at_most_k": ("k", "options"),
    "at_least_k": ("k", "options"),
    "exactly_k": ("k", "options"),
    "all_different": ("terms",),
    "fixed_charge": ("variable", "indicator", "upper"),
    "semi_continuous": ("variable", "lower", "upper"),
    "no_overlap": ("intervals",),
    "precedence": ("before", "after", "lag"),
    "cumulative": ("intervals", "demands", "capacity"),
    "clause": ("literals",),
}
#: Template fields that may stay null (the contract has a default for them).
OPTIONAL_TEMPLATE_FIELDS = frozenset({"lag"})
_ALL_TEMPLATE_FIELDS = tuple(dict.fromkeys(f for fs in TEMPLATE_FIELDS.values() for f in fs))


class FormShapeError(CheckFailed):
    """The LLM's answer cannot be turned into a contract model (a field missing for its
    template, a parameter key of the wrong length...). ``issues`` say where and how to fix it,
    in the words a repair prompt can pass back."""


class Unrepresentable(ValueError):
    """A contract model that the LLM form cannot express (e.g. list values over a table set)."""


def _shape(where: str, message: str, fix: str = "") -> Issue:
    return Issue(code="shape", message=message, where=where, fix=fix)


# --------------------------------------------------------------------------- base


def _allows_none(annotation: Any) -> bool:
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        return type(None) in get_args(annotation)
    return annotation is None or annotation is type(None)


def _is_list(annotation: Any) -> bool:
    return get_origin(annotation) is list


class _LlmForm(BaseModel):
    """Closed objects; every field required in the schema, lenient when parsing."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)

    #: Values for fields an answer leaves out (besides null for nullable fields, [] for lists).
    FALLBACKS: ClassVar[dict[str, Any]] = {}

    @model_validator(mode="before")
    @classmethod
    def _fill_missing(cls, data: Any) -> Any:
        """Answers from endpoints without strict mode may leave out nulls and empty lists."""
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for name, field in cls.model_fields.items():
            key = field.alias or name
            if key in out or name in out:
                continue
            if name in cls.FALLBACKS:
                out[key] = cls.FALLBACKS[name]
            elif _allows_none(field.annotation):
                out[key] = None
            elif _is_list(field.annotation):
                out[key] = []
        return out


# --------------------------------------------------------------------------- the five elements


class LlmSet(_LlmForm):
    """A set: the things a decision or a number is about (products, resources, days, routes).
    Fill exactly one of elements, range, tuples or table; the others are null."""

    name: str = Field(description="Short identifier, e.g. P, R, T, ROUTES (letters, digits, _).")
    elements: list[ElementValue] | None = Field(
        description='The members, e.g. ["bread", "cake"]. Null when range, tuples or table is used.'
    )
    range: list[int] | None = Field(
        description="Numbered periods or items: [first, last], both included, e.g. [1, 12] for 12 months."
    )
    tuples: list[list[ElementValue]] | None = Field(
        description='Sparse pairs such as routes or precedences, e.g. [["a", "b"], ["b", "c"]].'
    )
    table: str | None = Field(description="Name of a data table whose column(s) list the members.")
    columns: list[str] | None = Field(
        description="With table: one column for plain members, two or more for tuples."
    )
    description: str | None = Field(description="What the members are.")


class ValueEntry(_LlmForm):
    """One number of an indexed parameter."""

    key: list[ElementValue] = Field(
        description='One element per index component, in index order, e.g. ["wood", "chair"]; '
        "a set of pairs contributes both parts of its pair."
    )
    value: float


class LlmParameter(_LlmForm):
    """A number from the text (or from a data table), scalar or indexed by sets.
    Give exactly one of value (scalar), values (indexed) or table."""

    name: str = Field(description="Identifier, e.g. profit, avail, min_tables.")
    index: list[str] = Field(description="Names of the sets it is indexed by, in order; [] for a scalar.")
    value: float | None = Field(description="The number of a scalar parameter.")
    values: list[ValueEntry] | None = Field(
        description='Indexed numbers, one entry per key, e.g. [{"key": ["chair"], "value": 30}].'
    )
    default: float | None = Field(description="Value for keys not listed in values (often 0).")
    table: str | None = Field(description="Data table holding the numbers.")
    index_columns: list[str] | None = Field(description="With table: the column(s) holding the keys.")
    column: str | None = Field(description="With table: the column holding the numbers.")
    unit: str | None = Field(description='Unit, e.g. "kg", "hours", "$ per unit".')
    description: str | None = Field(description="What the number means.")
    source: str | None = Field(description="The sentence of the text that states it, copied exactly.")


class LlmVariable(_LlmForm):
    """A decision to be made."""

    FALLBACKS: ClassVar[dict[str, Any]] = {"lower": 0}
    name: str = Field(description="Identifier, e.g. make, ship, open, task.")
    index: list[str] = Field(description="Sets it is indexed by, in order; [] for a single decision.")
    domain: DomainName = Field(
        description="integer for whole things (units, people, trucks); continuous for divisible amounts "
        "(kg, litres, hours, money); binary for yes/no; interval for a task with a duration."
    )
    lower: NumberOrName | None = Field(
        description="Lower bound: 0 for amounts that cannot be negative (the usual case), a number, or a "
        "parameter indexed like the variable; null only for a quantity that may be negative."
    )
    upper: NumberOrName | None = Field(
        description="Upper bound: a number or a parameter indexed like the variable; null for none."
    )
    duration: NumberOrName | None = Field(
        description="Interval variables only: a number or a parameter indexed like the variable."
    )
    start: list[NumberOrName] | None = Field(
        description="Interval variables only, optional: [earliest, latest] start."
    )
    end: list[NumberOrName] | None = Field(
        description="Interval variables only, optional: [earliest, latest] end."
    )
    unit: str | None = Field(description="Unit of the decided quantity.")
    description: str | None = Field(description="What is decided.")
    source: str | None = Field(description="The sentence of the text that asks for it, copied exactly.")


class LlmObjective(_LlmForm):
    """What to minimize or maximize."""

    sense: Sense
    expression: str = Field(description="e.g. sum(profit[p] * make[p] for p in P)")
    source: str | None = Field(description="The sentence that states the goal, copied exactly.")
    description: str | None


class LlmConstraint(_LlmForm):
    """One rule of the text. Fill the fields of its template, null for every other field."""

    id: str = Field(description="Identifier naming the rule, e.g. wood_limit, min_tables.")
    source: str | None = Field(description="The sentence of the text that states the rule, copied exactly.")
    template: TemplateName
    for_each: str | None = Field(
        description='One instance per element: "r in R", "s in S, d in D if cost[s, d] > 0", '
        '"(a, b) in E"; null for a single constraint.'
    )
    expression: str | None = Field(
        description="Linear family only: one comparison, e.g. sum(use[r, p] * x[p] for p in P) <= avail[r]"
    )
    if_: str | None = Field(alias="if", description="implication: the condition, e.g. open[f] == 1")
    then: str | None = Field(description="implication: what must hold then, e.g. x[f] >= 10")
    options: ListField | None = Field(
        description="either_or, at_most_k, at_least_k, exactly_k: the conditions, as a list of "
        'expressions or one comprehension string such as "pick[p] for p in P".'
    )
    k: int | str | None = Field(description="at_most_k, at_least_k, exactly_k: the count.")
    terms: ListField | None = Field(description="all_different: the expressions that must differ.")
    variable: str | None = Field(description="fixed_charge, semi_continuous: the amount, e.g. make[p]")
    indicator: str | None = Field(
        description="fixed_charge: the binary that must be 1 for a positive amount."
    )
    lower: NumberOrName | None = Field(description="semi_continuous: least amount when not 0.")
    upper: NumberOrName | None = Field(
        description="fixed_charge, semi_continuous: largest amount (when on), e.g. 100 or cap[p]."
    )
    intervals: ListField | None = Field(
        description='no_overlap, cumulative: interval variables, e.g. "task[t] for t in T".'
    )
    demands: ListField | None = Field(
        description='cumulative: what each interval uses, same order, e.g. "crew[t] for t in T".'
    )
    capacity: NumberOrName | None = Field(description="cumulative: what is available at any time.")
    before: str | None = Field(description="precedence: the interval that finishes first, e.g. task[a]")
    after: str | None = Field(description="precedence: the interval that starts afterwards, e.g. task[b]")
    lag: NumberOrName | None = Field(description="precedence: least wait between them (null for none).")
    literals: ListField | None = Field(
        description='clause: boolean literals, at least one true, e.g. ["a", "not b"].'
    )
    description: str | None

    def field_value(self, name: str) -> Any:
        return self.if_ if name == "if" else getattr(self, name)


# --------------------------------------------------------------------------- stage answers


class ClassifiedObjective(_LlmForm):
    """The goal stated by the text."""

    sense: Sense
    source: str = Field(description="The sentence that states the goal, copied exactly.")
    note: str = Field(description="What is minimized or maximized, in a few words.")


class ClassifiedConstraint(_LlmForm):
    """One rule of the text and its template."""

    id: str = Field(description="Identifier naming the rule, e.g. wood_limit.")
    source: str = Field(description="The sentence that states the rule, copied exactly.")
    template: TemplateName
    note: str = Field(description="The rule in a few words: over which elements, compared with what.")


class Identify(_LlmForm):
    """Stage 1: the sets, the numbers and the decisions of the problem."""

    FALLBACKS: ClassVar[dict[str, Any]] = {"reasoning": ""}
    reasoning: str = Field(description="A few lines: what is decided, what data the text gives.")
    sets: list[LlmSet]
    parameters: list[LlmParameter]
    variables: list[LlmVariable]
    questions: list[str] = Field(
        description="Questions to the user for numbers the model needs and the text does not give; "
        "[] if none."
    )


class Classify(_LlmForm):
    """Stage 2: the objective and every rule of the text, each classified into a template."""

    objective: ClassifiedObjective | None = Field(
        description="Null when the text only asks whether a plan exists."
    )
    constraints: list[ClassifiedConstraint]


class Formulate(_LlmForm):
    """The complete model: sets, parameters, variables, objective and constraints."""

    FALLBACKS: ClassVar[dict[str, Any]] = {"reasoning": "", "name": "model"}
    reasoning: str = Field(description="A few lines: decisions, data, and which sentence gives which rule.")
    name: str = Field(description="Identifier for the model, e.g. bakery_plan.")
    description: str | None = Field(description="The problem in one sentence.")
    sets: list[LlmSet]
    parameters: list[LlmParameter]
    variables: list[LlmVariable]
    objective: LlmObjective | None = Field(description="Null when the text only asks whether a plan exists.")
    constraints: list[LlmConstraint]

    # ----------------------------------------------------------------- to the contract

    def to_contract(self, tables: Mapping[str, Table | Mapping[str, Any]] | None = None) -> dict[str, Any]:
        """The contract JSON data. Raises FormShapeError with every shape problem found;
        names, expressions and symbols are checked later by the contract and ``solvers.check``."""
        issues: list[Issue] = []
        out: dict[str, Any] = {"schema": SCHEMA_ID, "name": _model_name(self.name)}
        if self.description:
            out["description"] = self.description
        sets: dict[str, Any] = {}
        arity: dict[str, int] = {}
        for s in self.sets:
            where = f"set {s.name}"
            if s.name in sets:
                issues.append(_shape(where, f"set {s.name!r} is declared twice", "declare each set once"))
                continue
            sd, n = _set_to_contract(s, where, issues)
            if sd is not None:
                sets[s.name] = sd
                arity[s.name] = n
        out["sets"] = sets
        params: dict[str, Any] = {}
        for p in self.parameters:
            where = f"parameter {p.name}"
            if p.name in params:
                issues.append(_shape(where, f"parameter {p.name!r} is declared twice", "declare it once"))
                continue
            pd = _param_to_contract(p, where, arity, issues)
            if pd is not None:
                params[p.name] = pd
        out["parameters"] = params
        out["variables"] = [_var_to_contract(v, f"variable {v.name}", issues) for v in self.variables]
        if self.objective is not None:
            out["objective"] = _drop_none(self.objective.model_dump())
        out["constraints"] = [_constraint_to_contract(c, issues) for c in self.constraints]
        if tables:
            out["tables"] = {
                k: t.model_dump(exclude_none=True) if isinstance(t, Table) else dict(t)
                for k, t in tables.items()
            }
        if issues:
            raise FormShapeError(issues)
        return out

    def to_model(self, tables: Mapping[str, Table | Mapping[str, Any]] | None = None) -> Model:
        """The contract model. Raises FormShapeError for shapes the contract cannot take, and
        ``solvers.errors.ModelError`` / ``CheckFailed`` (with Issues) when the contract refuses it."""
        from solvers.api import load_model

        return load_model(self.to_contract(tables))

    def quotes(self) -> list[tuple[str, str]]:
        """(where, quote) for every ``source`` given: each should occur verbatim in the text.
        Parameter sources are not kept by the contract, so check them here."""
        out: list[tuple[str, str]] = []
        out += [(f"parameter {p.name}", p.source) for p in self.parameters if p.source]
        out += [(f"variable {v.name}", v.source) for v in self.variables if v.source]
        if self.objective is not None and self.objective.source:
            out.append(("objective", self.objective.source))
        out += [(f"constraint {c.id}", c.source) for c in self.constraints if c.source]
        return out


class SingleCall(Formulate):
    """Identify, classify and formulate in one answer."""

    questions: list[str] = Field(
        description="Questions to the user for numbers the model needs and the text does not give; "
        "[] when the text is complete. Never invent a missing number."
    )


class Repair(Formulate):
    """The corrected complete model."""

    changes: list[str] = Field(description="What was changed and why, one short line per change.")


STAGES: dict[str, type[_LlmForm]] = {
    "identify": Identify,
    "classify": Classify,
    "formulate": Formulate,
    "single": SingleCall,
    "repair": Repair,
}


# --------------------------------------------------------------------------- LLM form -> contract


def _model_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_]+", "_", name.strip()).strip("_")[:64]
    if not cleaned or cleaned[0].isdigit():
        cleaned = "model_" + cleaned if cleaned else "model"
    return cleaned[:64]


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _set_to_contract(s: LlmSet, where: str, issues: list[Issue]) -> tuple[Any, int]:
    given = [k for k in ("elements", "range", "tuples", "table") if getattr(s, k) is not None]
    if len(given) != 1:
        issues.append(
            _shape(
                where,
                f"set {s.name!r} gives {' and '.join(given) if given else 'none'} of elements, range, "
                "tuples, table",
                "fill exactly one of them and set the others to null",
            )
        )
        return None, 0
    if s.columns is not None and s.table is None:
        issues.append(_shape(where, "columns is given without a table", "set columns to null"))
    if s.elements is not None:
        return list(s.elements), 1
    if s.range is not None:
        if len(s.range) != 2:
            issues.append(
                _shape(where, f"range has {len(s.range)} numbers", "write [first, last], e.g. [1, 12]")
            )
            return None, 0
        return {"range": [s.range[0], s.range[1]]}, 1
    if s.tuples is not None:
        sizes = {len(t) for t in s.tuples}
        if len(sizes) > 1 or sizes & {0, 1}:
            issues.append(
                _shape(
                    where,
                    f"the tuples of set {s.name!r} have lengths {sorted(sizes)}",
                    "give every tuple the same length, at least 2 (e.g. [origin, destination])",
                )
            )
            return None, 0
        return [list(t) for t in s.tuples], sizes.pop() if sizes else 2
    cols = s.columns or []
    if not cols:
        issues.append(_shape(where, "a table set names no column", 'give columns, e.g. ["origin"]'))
        return None, 0
    if len(cols) == 1:
        return {"table": s.table, "column": cols[0]}, 1
    return {"table": s.table, "columns": list(cols)}, len(cols)


def _param_to_contract(
    p: LlmParameter, where: str, arity: Mapping[str, int], issues: list[Issue]
) -> dict[str, Any] | None:
    given = [k for k in ("value", "values", "table") if getattr(p, k) is not None]
    if len(given) != 1:
        issues.append(
            _shape(
                where,
                f"parameter {p.name!r} gives {' and '.join(given) if given else 'none'} "
                "of value, values, table",
                "a scalar fills value; an indexed parameter fills index and values; the others are null",
            )
        )
        return None
    out: dict[str, Any] = {}
    if p.index:
        out["index"] = list(p.index)
    if p.value is not None:
        if p.index:
            issues.append(
                _shape(
                    where,
                    f"parameter {p.name!r} is indexed by {p.index} but gives one value",
                    'give values as [{"key": [...], "value": ...}], or set index to [] for a scalar',
                )
            )
            return None
        out["value"] = p.value
    elif p.values is not None:
        if not p.index:
            issues.append(
                _shape(
                    where,
                    f"parameter {p.name!r} gives values but no index",
                    "name the sets it is indexed by in index, or give one value",
                )
            )
            return None
        nested = _nest(p, where, arity, issues)
        if nested is None:
            return None
        out["values"] = nested
    else:
        if p.column is None:
            issues.append(_shape(where, "a table parameter names no column", "name the column of numbers"))
            return None
        out["table"] = p.table
        if p.index_columns is not None:
            out["index_columns"] = list(p.index_columns)
        out["column"] = p.column
    for k in ("default", "description", "unit"):
        if getattr(p, k) is not None:
            out[k] = getattr(p, k)
    return out


def _nest(
    p: LlmParameter, where: str, arity: Mapping[str, int], issues: list[Issue]
) -> dict[str, Any] | None:
    depth: int | None = None
    if all(s in arity for s in p.index):
        depth = sum(arity[s] for s in p.index)
    root: dict[str, Any] = {}
    ok = True
    for e in p.values or []:
        key = [str(k) for k in e.key]
        label = ", ".join(key)
        if depth is not None and len(key) != depth:
            issues.append(
                _shape(
                    where,
                    f"parameter {p.name!r}: key [{label}] has {len(key)} part(s), but the index "
                    f"{p.index} needs {depth}",
                    "give one element per index set, in index order (a set of pairs takes two)",
                )
            )
            ok = False
            continue
        if not key:
            issues.append(_shape(where, f"parameter {p.name!r} has an entry with an empty key", "remove it"))
            ok = False
            continue
        node = root
        for part in key[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                ok = False
                break
            node = nxt
        else:
            if key[-1] in node:
                issues.append(
                    _shape(where, f"parameter {p.name!r} gives [{label}] twice", "keep one value per key")
                )
                ok = False
            else:
                node[key[-1]] = e.value
            continue
        issues.append(_shape(where, f"parameter {p.name!r}: keys of different lengths", "give full keys"))
    return root if ok else None


def _var_to_contract(v: LlmVariable, where: str, issues: list[Issue]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": v.name}
    if v.index:
        out["index"] = list(v.index)
    out["domain"] = v.domain
    out["lower"] = v.lower
    if v.upper is not None:
        out["upper"] = v.upper
    if v.domain == "interval":
        if v.duration is None:
            issues.append(
                _shape(where, f"interval variable {v.name!r} has no duration", "give a number or a parameter")
            )
        else:
            out["duration"] = v.duration
        for k in ("start", "end"):
            window = getattr(v, k)
            if window is None:
                continue
            if len(window) != 2:
                issues.append(
                    _shape(
                        where,
                        f"{k} of {v.name!r} has {len(window)} items",
                        f"write {k} as [earliest, latest]",
                    )
                )
            else:
                out[k] = list(window)
    else:
        extra = [k for k in ("duration", "start", "end") if getattr(v, k) is not None]
        if extra:
            issues.append(
                _shape(
                    where,
                    f"{', '.join(extra)} belong(s) to interval variables, but {v.name!r} is {v.domain}",
                    "set them to null, or make the variable an interval",
                )
            )
    for k in ("description", "source", "unit"):
        if getattr(v, k) is not None:
            out[k] = getattr(v, k)
    return out


def _constraint_to_contract(c: LlmConstraint, issues: list[Issue]) -> dict[str, Any]:
    where = f"constraint {c.id}"
    out: dict[str, Any] = {"id": c.id, "template": c.template}
    if c.for_each is not None and c.for_each.strip():
        out["for_each"] = c.for_each
    mine = TEMPLATE_FIELDS[c.template]
    missing = [f for f in mine if c.field_value(f) is None and f not in OPTIONAL_TEMPLATE_FIELDS]
    if missing:
        issues.append(
            _shape(
                where,
                f"template {c.template} needs {', '.join(missing)}, which is null",
                f"fill {', '.join(missing)}, or choose the template that matches the rule",
            )
        )
    foreign = [f for f in _ALL_TEMPLATE_FIELDS if f not in mine and c.field_value(f) is not None]
    if foreign:
        owners = sorted({t for t, fs in TEMPLATE_FIELDS.items() if set(foreign) <= set(fs)})
        hint = f" or change the template to {' / '.join(owners)}" if owners else ""
        issues.append(
            _shape(
                where,
                f"template {c.template} does not use {', '.join(foreign)}",
                f"set {', '.join(foreign)} to null{hint}",
            )
        )
    for f in mine:
        value = c.field_value(f)
        if value is not None:
            out[f] = list(value) if isinstance(value, list) else value
    for k in ("source", "description"):
        if getattr(c, k) is not None:
            out[k] = getattr(c, k)
    return out


# --------------------------------------------------------------------------- contract -> LLM form


def model_to_llm(model: Model, reasoning: str = "") -> Formulate:
    """The LLM form of a contract model (tables are left out: pass them to ``to_model``).
    Raises Unrepresentable where the LLM form cannot say the same thing."""
    elements: dict[str, list[tuple[str, ...]] | None] = {}
    sets: list[LlmSet] = []
    for name, sd in model.sets.items():
        el: list[ElementValue] | None = None
        rng: list[int] | None = None
        tup: list[list[ElementValue]] | None = None
        table: str | None = None
        columns: list[str] | None = None
        if isinstance(sd, RangeSet):
            rng = [sd.range[0], sd.range[1]]
            elements[name] = [(str(i),) for i in range(sd.range[0], sd.range[1] + 1)]
        elif isinstance(sd, TableSet):
            table = sd.table
            columns = [sd.column] if sd.column is not None else list(sd.columns or [])
            elements[name] = None
        elif sd and isinstance(sd[0], list):
            tup = [list(t) for t in sd if isinstance(t, list)]
            elements[name] = [tuple(str(x) for x in t) for t in tup]
        else:
            el = [x for x in sd if not isinstance(x, list)]
            elements[name] = [(str(x),) for x in el]
        sets.append(
            LlmSet(
                name=name, elements=el, range=rng, tuples=tup, table=table, columns=columns, description=None
            )
        )
    params = [_param_to_llm(n, p, elements) for n, p in model.parameters.items()]
    variables = [_var_to_llm(v) for v in model.variables]
    objective = None
    if model.objective is not None:
        o = model.objective
        objective = LlmObjective(
            sense=o.sense, expression=o.expression, source=o.source, description=o.description
        )
    constraints = [_constraint_to_llm(c.model_dump(by_alias=True)) for c in model.constraints]
    return Formulate(
        reasoning=reasoning,
        name=model.name,
        description=model.description,
        sets=sets,
        parameters=params,
        variables=variables,
        objective=objective,
        constraints=constraints,
    )


def _param_to_llm(
    name: str, p: Parameter, elements: Mapping[str, list[tuple[str, ...]] | None]
) -> LlmParameter:
    values: list[ValueEntry] | None = None
    if p.values is not None:
        levels: list[list[tuple[str, ...]] | None] = [elements.get(s) for s in p.index]
        values = [ValueEntry(key=list(k), value=v) for k, v in _flatten(name, p.values, levels)]
    return LlmParameter(
        name=name,
        index=list(p.index),
        value=p.value,
        values=values,
        default=p.default,
        table=p.table,
        index_columns=list(p.index_columns) if p.index_columns is not None else None,
        column=p.column,
        unit=p.unit,
        description=p.description,
        source=None,
    )


def _flatten(
    name: str, values: Any, levels: list[list[tuple[str, ...]] | None]
) -> Iterator[tuple[tuple[ElementValue, ...], float]]:
    """(key, value) pairs of nested dictionaries / lists in set order."""
    arity = [len(lv[0]) if lv else 1 for lv in levels]
    depth = sum(arity)

    def walk(node: Any, prefix: tuple[ElementValue, ...]) -> Iterator[tuple[tuple[ElementValue, ...], float]]:
        if len(prefix) == depth:
            if isinstance(node, bool) or not isinstance(node, (int, float)):
                raise Unrepresentable(f"parameter {name!r}: {node!r} at {list(prefix)} is not a number")
            yield prefix, float(node)
            return
        if isinstance(node, dict):
            for k, item in node.items():
                yield from walk(item, (*prefix, k))
            return
        if isinstance(node, list):
            # the set of the component at this depth, which must be a set of single elements
            at, pos, which = len(prefix), 0, -1
            for i, n in enumerate(arity):
                if at < pos + n:
                    which = i
                    break
                pos += n
            lvl = levels[which] if which >= 0 else None
            if lvl is None or arity[which] != 1 or len(node) != len(lvl):
                raise Unrepresentable(
                    f"parameter {name!r}: a list of values over a set whose elements are not known here"
                )
            for el, item in zip(lvl, node, strict=True):
                yield from walk(item, (*prefix, el[0]))
            return
        raise Unrepresentable(f"parameter {name!r}: unexpected {type(node).__name__} in values")

    yield from walk(values, ())


def _var_to_llm(v: Variable) -> LlmVariable:
    return LlmVariable(
        name=v.name,
        index=list(v.index),
        domain=v.domain,
        lower=v.lower,
        upper=v.upper,
        duration=v.duration,
        start=list(v.start) if v.start is not None else None,
        end=list(v.end) if v.end is not None else None,
        unit=v.unit,
        description=v.description,
        source=v.source,
    )


def _constraint_to_llm(d: dict[str, Any]) -> LlmConstraint:
    data: dict[str, Any] = {k: None for k in ("for_each", "source", "description", *_ALL_TEMPLATE_FIELDS)}
    data.update({k: v for k, v in d.items() if v is not None})
    return LlmConstraint.model_validate(data)


# --------------------------------------------------------------------------- parts of an answer


def identify_part(form: Formulate, questions: list[str] | None = None) -> Identify:
    """The stage-1 answer contained in a full model (for few-shot examples)."""
    return Identify(
        reasoning=form.reasoning,
        sets=form.sets,
        parameters=form.parameters,
        variables=form.variables,
        questions=list(questions or []),
    )


def classify_part(form: Formulate) -> Classify:
    """The stage-2 answer contained in a full model (for few-shot examples)."""
    objective = None
    if form.objective is not None:
        o = form.objective
        objective = ClassifiedObjective(
            sense=o.sense, source=o.source or "", note=o.description or o.expression
        )
    constraints = [
        ClassifiedConstraint(
            id=c.id,
            source=c.source or "",
            template=c.template,
            note=c.description or _rule_of(c),
        )
        for c in form.constraints
    ]
    return Classify(objective=objective, constraints=constraints)


def _rule_of(c: LlmConstraint) -> str:
    parts = [
        f"{f}: {_short(c.field_value(f))}"
        for f in TEMPLATE_FIELDS[c.template]
        if c.field_value(f) is not None
    ]
    if c.for_each:
        parts.append(f"for each {c.for_each}")
    return "; ".join(parts)


def _short(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


# --------------------------------------------------------------------------- JSON Schema


def strict_json_schema(cls: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema of a stage answer for strict structured output: closed objects, every
    property required, no ``default`` keys, ``$ref`` never beside other keywords."""
    schema = cls.model_json_schema(by_alias=True)
    defs = schema.get("$defs", {})

    def fix(node: Any) -> Any:
        if isinstance(node, list):
            return [fix(x) for x in node]
        if not isinstance(node, dict):
            return node
        node = dict(node)
        node.pop("default", None)
        if "$ref" in node and len(node) > 1:
            target = defs[node["$ref"].split("/")[-1]]
            node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        if "allOf" in node and len(node["allOf"]) == 1:
            inner = node.pop("allOf")[0]
            node = {**fix(inner), **node}
        out: dict[str, Any] = {}
        for k, v in node.items():
            if k in ("properties", "$defs"):
                out[k] = {name: fix(sub) for name, sub in v.items()}
            elif k in ("items", "anyOf", "additionalProperties"):
                out[k] = fix(v)
            else:
                out[k] = v
        if out.get("type") == "object" or "properties" in out:
            out["additionalProperties"] = False
            out["required"] = list(out.get("properties", {}))
        return out

    result: dict[str, Any] = fix(schema)
    return result


def response_format(stage: str) -> dict[str, Any]:
    """The ``response_format`` argument of ``chat.completions.create`` for a stage."""
    cls = STAGES[stage]
    return {
        "type": "json_schema",
        "json_schema": {"name": f"optscribe_{stage}", "strict": True, "schema": strict_json_schema(cls)},
    }
