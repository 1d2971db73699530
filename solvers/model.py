"""The model contract, schema ``optscribe.model/v1``.

This module owns the pydantic models that the LLM fills, that users write or edit by
hand, that the API accepts and that every backend compiles. Validation here is purely
structural (shapes, names, sizes); whether the symbols and expressions make sense is the
job of ``solvers.check`` and ``solvers.lower``.
"""

from __future__ import annotations

import json
import keyword
import math
import re
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

SCHEMA_ID = "optscribe.model/v1"

#: Words that name built-in functions or keywords of the expression language; a set,
#: parameter or variable may not take one of these names.
RESERVED = frozenset(
    {
        "sum",
        "min",
        "max",
        "abs",
        "start",
        "end",
        "ord",
        "first",
        "last",
        "len",
        "and",
        "or",
        "not",
        "in",
        "for",
        "if",
        "else",
        "True",
        "False",
        "None",
        "lambda",
        "is",
        "inf",
    }
)

MAX_EXPRESSION_CHARS = 20_000
MAX_TEXT_CHARS = 5_000
MAX_NAME_CHARS = 64

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _check_name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(
            f"{value[:80]!r} is not a valid name: use letters, digits and underscores, starting with a letter"
        )
    if value.startswith("__"):
        raise ValueError(f"{value!r} is not allowed: names may not start with '__'")
    if value in RESERVED or keyword.iskeyword(value):
        raise ValueError(f"{value!r} is a reserved word of the expression language: rename it")
    return value


Name = Annotated[str, StringConstraints(max_length=MAX_NAME_CHARS), Field(min_length=1)]
Expression = Annotated[str, StringConstraints(max_length=MAX_EXPRESSION_CHARS)]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS)]
Element = Union[Annotated[str, StringConstraints(max_length=MAX_NAME_CHARS)], int]


def _finite(v: Any) -> Any:
    v = _not_bool(v)
    if isinstance(v, int) and not -(2**1023) < v < 2**1023:  # beyond float: "inf" to pydantic
        raise ValueError("Input should be a finite number")
    return v


def _not_bool(v: Any) -> Any:
    # JSON true and false are not numbers, though pydantic would read them as 1 and 0;
    # lowering refuses them inside 'values' ("is not a number"), and so does the contract.
    if isinstance(v, bool):
        raise ValueError("true/false is not a number")
    return v


Number = Annotated[float, BeforeValidator(_finite)]
Whole = Annotated[int, BeforeValidator(_not_bool)]

_STRICT = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


class _Strict(BaseModel):
    model_config = _STRICT


# --------------------------------------------------------------------------- sets


class RangeSet(_Strict):
    """Whole numbers from ``range[0]`` to ``range[1]``, both included."""

    range: tuple[Whole, Whole]

    @field_validator("range")
    @classmethod
    def _ordered(cls, v: tuple[int, int]) -> tuple[int, int]:
        lo, hi = v
        if abs(lo) > 10**12 or abs(hi) > 10**12:
            raise ValueError("range ends must lie within +-10^12")
        if hi < lo:
            raise ValueError(f"range [{lo}, {hi}] is empty: the second number must be >= the first")
        return v


class TableSet(_Strict):
    """The distinct values of one column (or of several, as tuples) of a data table."""

    table: Name
    column: Name | None = None
    columns: list[Name] | None = None

    @model_validator(mode="after")
    def _one(self) -> TableSet:
        if (self.column is None) == (self.columns is None):
            raise ValueError("a table set names exactly one of 'column' or 'columns'")
        return self


SetDef = Union[RangeSet, TableSet, list[Element], list[list[Element]]]


# --------------------------------------------------------------------------- parameters


class Parameter(_Strict):
    """A number, or numbers indexed by one or more sets.

    Scalar: ``{"value": 5}``. Indexed: ``{"index": ["R", "P"], "values": {...}}`` nested in
    index order, or a list in range order. From a table: ``{"table": "routes",
    "index_columns": ["origin", "dest"], "column": "cost"}``.
    """

    index: list[Name] = Field(default_factory=list)
    value: Number | None = None
    values: dict[str, Any] | list[Any] | None = None
    table: Name | None = None
    index_columns: list[Name] | None = None
    column: Name | None = None
    default: Number | None = None
    description: Text | None = None
    unit: Annotated[str, StringConstraints(max_length=64)] | None = None

    @model_validator(mode="after")
    def _shape(self) -> Parameter:
        given = [self.value is not None, self.values is not None, self.table is not None]
        if sum(given) != 1:
            raise ValueError("a parameter has exactly one of 'value', 'values' or 'table'")
        if self.value is not None and self.index:
            raise ValueError("an indexed parameter gives 'values', not 'value'")
        if self.values is not None and not self.index:
            raise ValueError("'values' needs 'index' (the sets it is indexed by)")
        if self.table is not None:
            if self.column is None:
                raise ValueError("a table parameter names its 'column'")
            # a set of pairs takes two columns, so the count is checked where set arities are known
            # Without 'index', the sets are those declared from the same table columns.
            if self.index and not self.index_columns:
                raise ValueError("'index_columns' must name one table column per set in 'index'")
        return self


# --------------------------------------------------------------------------- variables

Domain = Literal["continuous", "integer", "binary", "boolean", "interval"]
Bound = Union[Number, Name, None]


class Variable(_Strict):
    """A decision variable, scalar or indexed by sets.

    ``lower`` defaults to 0 (most planning quantities cannot be negative); write
    ``"lower": null`` for a free variable. ``upper`` defaults to no bound. A bound may be a
    number or the name of a parameter indexed like the variable.
    """

    name: Name
    index: list[Name] = Field(default_factory=list)
    domain: Domain = "continuous"
    lower: Bound = 0.0
    upper: Bound = None
    duration: Number | Name | None = None
    start: tuple[Number | Name, Number | Name] | None = None
    end: tuple[Number | Name, Number | Name] | None = None
    description: Text | None = None
    source: Text | None = None
    unit: Annotated[str, StringConstraints(max_length=64)] | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name(v)

    @model_validator(mode="after")
    def _interval(self) -> Variable:
        if self.domain == "interval":
            if self.duration is None:
                raise ValueError(f"interval variable {self.name!r} needs a 'duration'")
        elif self.duration is not None or self.start is not None or self.end is not None:
            raise ValueError(
                f"'duration', 'start' and 'end' belong to interval variables; "
                f"{self.name!r} has domain {self.domain!r}"
            )
        return self


# --------------------------------------------------------------------------- objective


class Objective(_Strict):
    sense: Literal["minimize", "maximize"]
    expression: Expression
    source: Text | None = None
    description: Text | None = None


# --------------------------------------------------------------------------- constraints

ExprList = Union[list[Expression], Expression]


class _Constraint(_Strict):
    id: Name
    for_each: Expression | None = None
    source: Text | None = None
    description: Text | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        return _check_name(v)


LINEAR_TEMPLATES = (
    "upper_bound",
    "lower_bound",
    "linear",
    "sum",
    "ratio",
    "xby",
    "xy",
    "balance",
)


class LinearConstraint(_Constraint):
    """One comparison: ``<=``, ``>=`` or ``==`` (or a two-sided ``a <= e <= b``)."""

    template: Literal["upper_bound", "lower_bound", "linear", "sum", "ratio", "xby", "xy", "balance"]
    expression: Expression


class Implication(_Constraint):
    template: Literal["implication"]
    if_: Expression = Field(alias="if")
    then: Expression


class EitherOr(_Constraint):
    template: Literal["either_or"]
    options: ExprList


class CountingConstraint(_Constraint):
    template: Literal["at_most_k", "at_least_k", "exactly_k"]
    k: Whole | Name
    options: ExprList


class AllDifferent(_Constraint):
    template: Literal["all_different"]
    terms: ExprList


class FixedCharge(_Constraint):
    template: Literal["fixed_charge"]
    variable: Expression
    indicator: Expression
    upper: Number | Expression


class SemiContinuous(_Constraint):
    template: Literal["semi_continuous"]
    variable: Expression
    lower: Number | Expression
    upper: Number | Expression


class NoOverlap(_Constraint):
    template: Literal["no_overlap"]
    intervals: ExprList


class Precedence(_Constraint):
    template: Literal["precedence"]
    before: Expression
    after: Expression
    lag: Number | Expression = 0.0


class Cumulative(_Constraint):
    template: Literal["cumulative"]
    intervals: ExprList
    demands: ExprList
    capacity: Number | Expression


class Clause(_Constraint):
    template: Literal["clause"]
    literals: ExprList


Constraint = Annotated[
    LinearConstraint
    | Implication
    | EitherOr
    | CountingConstraint
    | AllDifferent
    | FixedCharge
    | SemiContinuous
    | NoOverlap
    | Precedence
    | Cumulative
    | Clause,
    Field(discriminator="template"),
]

LOGIC_TEMPLATES = (
    "implication",
    "either_or",
    "at_most_k",
    "at_least_k",
    "exactly_k",
    "all_different",
    "fixed_charge",
    "semi_continuous",
)
SCHEDULING_TEMPLATES = ("no_overlap", "precedence", "cumulative")
ALL_TEMPLATES = LINEAR_TEMPLATES + LOGIC_TEMPLATES + SCHEDULING_TEMPLATES + ("clause",)


# --------------------------------------------------------------------------- tables


class Table(_Strict):
    """Tabular data carried with the model: columns, records, or CSV text."""

    columns: dict[Name, list[Element | float | None]] | None = None
    records: list[dict[Name, Element | float | None]] | None = None
    csv: str | None = None

    @model_validator(mode="after")
    def _one(self) -> Table:
        if sum(x is not None for x in (self.columns, self.records, self.csv)) != 1:
            raise ValueError("a table has exactly one of 'columns', 'records' or 'csv'")
        if self.columns is not None:
            lengths = {len(v) for v in self.columns.values()}
            if len(lengths) > 1:
                raise ValueError(f"table columns differ in length: {sorted(lengths)}")
        return self


# --------------------------------------------------------------------------- the model


class Model(_Strict):
    """An optimization model in the ``optscribe.model/v1`` contract."""

    schema_: Literal["optscribe.model/v1"] = Field(default="optscribe.model/v1", alias="schema")
    name: Name = "model"
    description: Text | None = None
    sets: dict[Name, SetDef] = Field(default_factory=dict)
    parameters: dict[Name, Parameter] = Field(default_factory=dict)
    variables: list[Variable] = Field(default_factory=list)
    objective: Objective | None = None
    constraints: list[Constraint] = Field(default_factory=list)
    tables: dict[Name, Table] = Field(default_factory=dict)

    @field_validator("sets", "parameters", "tables")
    @classmethod
    def _names(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key in v:
            _check_name(key)
        return v

    @model_validator(mode="after")
    def _unique(self) -> Model:
        seen: dict[str, str] = {}
        for kind, names in (
            ("set", list(self.sets)),
            ("parameter", list(self.parameters)),
            ("variable", [v.name for v in self.variables]),
        ):
            for n in names:
                if n in seen:
                    raise ValueError(f"the name {n!r} is used for a {seen[n]} and a {kind}: rename one")
                seen[n] = kind
        ids: set[str] = set()
        for c in self.constraints:
            if c.id in ids:
                raise ValueError(f"constraint id {c.id!r} is used twice: ids must be unique")
            if c.id in seen:
                raise ValueError(f"constraint id {c.id!r} is also the name of a {seen[c.id]}")
            ids.add(c.id)
        return self

    def dump(self) -> dict[str, Any]:
        """The model as contract JSON data (aliases, no empty optional fields).

        ``None`` fields are left out, except a variable's ``"lower": null``: its default is
        0, so leaving it out would turn a free variable into a nonnegative one.
        """
        out = self.model_dump(by_alias=True, exclude_none=True, mode="json")
        for var, data in zip(self.variables, out.get("variables", []), strict=True):
            if var.lower is None:
                data["lower"] = None
        return out

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.dump(), indent=indent)


def json_schema() -> dict[str, Any]:
    """The published JSON Schema of the contract."""
    schema = Model.model_json_schema(by_alias=True)
    schema["$id"] = "https://optscribe.dev/schema/optscribe.model/v1.json"
    schema["title"] = "optscribe.model/v1"
    return schema


def is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
