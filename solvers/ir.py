"""The ground form of a model: what ``solvers.lower`` produces and every backend consumes.

A contract model speaks of sets, indexed parameters and ``for_each`` templates; the ground
form has flat columns (one per variable instance), linear rows in blocks (one block per
constraint id, one row per ``for_each`` binding), logic constraints as small formula
trees over columns, interval variables, and an objective with linear, quadratic and
constant parts. Everything keeps its way back to model ids: a column knows its variable
block and index, a row its constraint id and instance name.

Arrays are numpy, so a million-column model is a handful of arrays, not a million
Python objects; names (``x[chair]``) are made only when someone asks for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np
import numpy.typing as npt

from .model import Model

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

INF = float("inf")

# Set elements are carried as int64 codes: a whole number is its own code, a string gets
# a code from STR_BASE upward in the order it was first seen (sets are interned first,
# in declaration order, so comparing codes of one set's strings follows the set's order).
STR_BASE = 1 << 50
MAX_INT_ELEMENT = 1 << 40


class Interner:
    """Two-way map between set elements (str or int) and int64 codes."""

    def __init__(self) -> None:
        self._codes: dict[str, int] = {}
        self._strings: list[str] = []

    def code(self, value: str | int) -> int:
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            return int(value)
        s = str(value)
        c = self._codes.get(s)
        if c is None:
            c = STR_BASE + len(self._strings)
            self._codes[s] = c
            self._strings.append(s)
        return c

    def lookup(self, value: str) -> int | None:
        """The code of a string already seen, or None."""
        return self._codes.get(value)

    def value(self, code: int) -> str | int:
        code = int(code)
        if code >= STR_BASE:
            return self._strings[code - STR_BASE]
        return code

    def label(self, code: int) -> str:
        return str(self.value(code))


def key_label(interner: Interner, codes: tuple[int, ...] | list[int]) -> str:
    """``chair`` / ``1,a``: the text inside the brackets of an instance name."""
    return ",".join(interner.label(c) for c in codes)


@dataclass
class VarBlock:
    """One declared variable of the model and the columns it owns."""

    name: str
    domain: str  # continuous | integer | binary | boolean | interval | aux
    offset: int
    size: int
    keys: IntArray  # shape (size, arity): element codes of each instance, in column order
    description: str | None = None
    source: str | None = None
    unit: str | None = None

    def column_name(self, interner: Interner, k: int) -> str:
        if self.keys.shape[1] == 0:
            return self.name
        return f"{self.name}[{key_label(interner, tuple(self.keys[k]))}]"


@dataclass
class Columns:
    """Every column of the ground model."""

    lower: FloatArray
    upper: FloatArray
    integer: BoolArray
    blocks: list[VarBlock]
    interner: Interner
    _block_starts: IntArray | None = None

    @property
    def n(self) -> int:
        return int(self.lower.shape[0])

    def block_of(self, col: int) -> VarBlock:
        if self._block_starts is None or len(self._block_starts) != len(self.blocks):
            self._block_starts = np.array([b.offset for b in self.blocks], dtype=np.int64)
        i = int(np.searchsorted(self._block_starts, col, side="right")) - 1
        return self.blocks[i]

    def name(self, col: int) -> str:
        b = self.block_of(col)
        k = col - b.offset
        if b.domain == "interval":
            # interval blocks own 2 columns per instance: start then end
            inst, which = divmod(k, 2)
            base = b.column_name(self.interner, inst)
            return f"{base}.{'start' if which == 0 else 'end'}"
        return b.column_name(self.interner, k)

    def names(self) -> list[str]:
        return [self.name(j) for j in range(self.n)]

    def is_aux(self, col: int) -> bool:
        return self.block_of(col).domain == "aux"


@dataclass
class RowBlock:
    """The linear rows of one constraint id: ``lower <= A x <= upper`` row by row.

    ``coo`` holds the nonzeros as (local row, column, coefficient) arrays. ``keys`` are
    the element codes of each row's ``for_each`` binding, for naming. ``aux`` marks rows
    added by the compiler (e.g. for ``max(...)``) rather than written by the user.
    """

    cid: str
    template: str
    source: str | None
    n: int
    rows: IntArray
    cols: IntArray
    coefs: FloatArray
    lower: FloatArray
    upper: FloatArray
    keys: IntArray  # shape (n, k)
    aux: bool = False
    suffix: str = ""  # distinguishes extra rows of one id, e.g. '.max1'

    def row_name(self, interner: Interner, i: int) -> str:
        base = self.cid
        if self.keys.shape[1]:
            base = f"{self.cid}[{key_label(interner, tuple(self.keys[i]))}]"
        return base + self.suffix


# ----------------------------------------------------------------- logic formulas


@dataclass(frozen=True)
class Atom:
    """``lo <= sum(coefs * x[cols]) <= hi`` (the constant is already moved into lo/hi)."""

    cols: tuple[int, ...]
    coefs: tuple[float, ...]
    lo: float
    hi: float


@dataclass(frozen=True)
class Lit:
    """A binary/boolean column being 1 (or 0 when ``neg``)."""

    col: int
    neg: bool = False


@dataclass(frozen=True)
class And:
    items: tuple[Formula, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Formula, ...]


@dataclass(frozen=True)
class Not:
    item: Formula


@dataclass(frozen=True)
class Const:
    """A condition that the data already decides."""

    value: bool


Formula = Union[Atom, Lit, And, Or, Not, Const]


@dataclass(frozen=True)
class LinTerm:
    """A single linear expression ``sum(coefs * x[cols]) + const``."""

    cols: tuple[int, ...]
    coefs: tuple[float, ...]
    const: float = 0.0


@dataclass
class LogicCon:
    """One instance of a logic, scheduling or clause constraint.

    ``data`` by template:
      implication:      {"if": Formula, "then": Formula}
      either_or:        {"options": [Formula]}
      at_most_k / at_least_k / exactly_k: {"k": int, "options": [Formula]}
      all_different:    {"terms": [LinTerm]}
      fixed_charge:     {"variable": LinTerm, "indicator": Lit, "upper": float}
      semi_continuous:  {"variable": LinTerm, "lower": float, "upper": float}
      clause:           {"literals": [Lit]}
      no_overlap:       {"intervals": [int]}              (indices into Instance.intervals)
      precedence:       {"before": int, "after": int, "lag": float}
      cumulative:       {"intervals": [int], "demands": [float], "capacity": float}
    """

    cid: str
    name: str
    template: str
    source: str | None
    data: dict[str, Any]


@dataclass
class Intervals:
    """Interval variables: instance i has columns start_col[i] and end_col[i]."""

    start_col: IntArray
    end_col: IntArray
    duration: FloatArray
    names: list[str]

    @property
    def n(self) -> int:
        return int(self.start_col.shape[0])


@dataclass
class Aux:
    """An auxiliary column for max/min/abs: must appear with the right sign to be exact."""

    col: int
    kind: str  # 'max' (z >= each arg) or 'min' (z <= each arg)
    where: str


@dataclass
class Objective:
    sense: str  # minimize | maximize
    cols: IntArray
    coefs: FloatArray
    const: float
    qcols1: IntArray
    qcols2: IntArray
    qcoefs: FloatArray  # objective += sum(qcoefs * x[q1] * x[q2])
    source: str | None = None

    @property
    def is_quadratic(self) -> bool:
        return bool(self.qcoefs.shape[0])


@dataclass
class Instance:
    """A ground model, ready for any backend."""

    model: Model
    columns: Columns
    row_blocks: list[RowBlock]
    logic: list[LogicCon]
    intervals: Intervals
    objective: Objective | None
    aux: list[Aux] = field(default_factory=list)
    sources: dict[str, str | None] = field(default_factory=dict)  # constraint id -> sentence
    templates: dict[str, str] = field(default_factory=dict)  # constraint id -> template

    @property
    def n_rows(self) -> int:
        return sum(b.n for b in self.row_blocks)

    def features(self) -> set[str]:
        """What the model needs from a backend: used by routing and acceptance checks."""
        f: set[str] = set()
        d = {b.domain for b in self.columns.blocks}
        if "continuous" in d:
            f.add("continuous")
        if d & {"integer", "binary", "boolean"}:
            f.add("integer")
        if self.intervals.n:
            f.add("interval")
        for c in self.logic:
            f.add(c.template)
        if self.objective is not None and self.objective.is_quadratic:
            f.add("quadratic")
        if self.objective is None:
            f.add("feasibility")
        return f
