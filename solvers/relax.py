"""Apply a suggested relaxation: the model with one (or several) of an explanation's fixes.

An infeasible result carries ``Relaxation`` suggestions (``solvers.explain``, or the CP-SAT
backend): change this right-hand side or this variable bound from ``current`` to
``suggested``. ``apply_relaxation`` turns one such suggestion into a new contract model, so
that a person can read what changed and solve it again:

* ``rhs`` whose data side is one parameter that nothing else reads (``... <= team`` with
  ``team`` a scalar ``value``, or ``... <= cap[r]`` read with the ``for_each`` binding itself,
  the element given in ``values``): that value is edited (``team`` 14 -> 16) and the parameter's
  description says so; the expression stays as the person wrote it. Otherwise (a parameter read
  elsewhere, a table-backed one, an element that takes the ``default``), as below.
* ``rhs`` of a constraint without ``for_each``: the comparison's data side moves by the
  change: a number is rewritten (``day + night >= 12`` becomes ``day + night >= 9``), any
  other expression gets the change appended (``x >= min_tables - 3``).
* ``rhs`` of one instance of a ``for_each`` constraint: a parameter ``relax_<id>`` indexed
  like the ``for_each`` binding (``default`` 0, one value per relaxed instance) is added on
  the data side (``... <= avail[r] + relax_capacity[r]``), so every other instance keeps its
  rows exactly.
* ``rhs`` of a ``precedence`` (CP-SAT relaxes its lag): the lag changes the same way (a lag
  that is one such parameter has that value edited).
* ``lower`` / ``upper`` of a variable: that bound changes; for one element of an indexed
  variable, through a bound parameter indexed like the variable (an existing one is edited
  when nothing else reads it, else a new one ``<variable>_<side>`` is made).

The row side that moves is the one ``explain`` relaxed: the lowered row of ``a <= b`` is
``a - b <= 0`` and its right-hand side moves by ``change``, which is ``a <= b + change`` (or
``a - change <= b`` when the data sit on the left); an equality keeps being one; of a
two-sided ``lo <= e <= hi``, the end whose value is ``current`` moves (both, when they are
equal: ``explain`` keeps such a row an equality). Every edit is checked by lowering the new
model: the targeted row, lag or bound must read ``suggested``; otherwise, and for
suggestions that cannot be applied (an unknown id, a stale ``current``, a logic template),
``ModelError`` says why. A model with parameter values edited must moreover lower to what the
model with the expressions rewritten lowers to (every row, bound, lag and the objective; only
the targeted values may differ, by rounding): else the rewritten one is returned. The input
model is never changed.
"""

from __future__ import annotations

import ast
import copy
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any, TypeGuard

import numpy as np
from pydantic import ValidationError

from . import expr as ex
from .errors import CheckFailed, Issue, ModelError
from .ir import Instance, Interner, RowBlock, VarBlock
from .lower import Lowering
from .model import MAX_NAME_CHARS, MAX_TEXT_CHARS, LinearConstraint, Model, Precedence
from .result import Relaxation

__all__ = ["FIX_MARK", "apply_relaxation", "apply_relaxations"]

#: the start of every note and parameter description this module writes
FIX_MARK = "Suggested fix"

Key = tuple[str | int, ...]


def apply_relaxation(model: Model, relaxation: Relaxation | Mapping[str, Any]) -> Model:
    """A new model in which the one suggested change is made (the input is left as it is)."""
    return apply_relaxations(model, [relaxation])


def apply_relaxations(model: Model, relaxations: Sequence[Relaxation | Mapping[str, Any]]) -> Model:
    """A new model in which all the suggested changes are made together.

    Raises ``ModelError`` (with an ``Issue`` of code ``relax``) when a suggestion does not
    fit the model: unknown id or instance, ``current`` not what the model says, a template
    whose right-hand side cannot be changed, or two suggestions for the same thing.
    """
    rels = [_relaxation(r) for r in relaxations]
    lowering, instance = _lower(model, "the model")
    data = model.model_dump(by_alias=True, mode="json", exclude_unset=True)
    plan = _Plan(model, lowering, instance, copy.deepcopy(data))
    for r in rels:
        plan.add(r)
    # the expressions rewritten: always made and checked, the answer when no value can be edited
    plan.apply()
    new = _validate(plan.data)
    _, after = _lower(new, "the changed model")
    plan.verify(after)
    # the parameter values edited instead, where a data side is one parameter read nowhere else
    direct = replace(plan, data=copy.deepcopy(data), edit_parameters=True, edited=[], param_notes={})
    direct.apply()
    if not direct.edited:
        return new
    try:
        edited = _validate(direct.data)
        _, got = _lower(edited, "the changed model")
        direct.verify(got)
    except ModelError:
        return new
    return edited if direct.agrees(after, got) else new


# ----------------------------------------------------------------------------- helpers


def _validate(data: dict[str, Any]) -> Model:
    try:
        return Model.model_validate(data)
    except ValidationError as e:  # pragma: no cover - the edits keep to the contract
        raise _refuse(f"the changed model does not validate: {e.errors()[0]['msg']}") from None


def _refuse(message: str, where: str = "", fix: str = "") -> ModelError:
    return ModelError(Issue(code="relax", message=message, where=where, fix=fix))


def _relaxation(r: Relaxation | Mapping[str, Any]) -> Relaxation:
    if isinstance(r, Relaxation):
        return r
    try:
        return Relaxation.model_validate(r)
    except ValidationError as e:
        raise _refuse(
            f"not a relaxation: {e.errors()[0]['msg']}",
            fix="pass one of the result's explanation.relaxations",
        ) from None


def _lower(model: Model, what: str) -> tuple[Lowering, Instance]:
    lw = Lowering(model)
    try:
        return lw, lw.run()
    except ModelError as e:
        raise _refuse(f"{what} does not check: {e.issue}") from None
    except CheckFailed as e:
        first = e.issues[0] if e.issues else "unknown problem"
        raise _refuse(f"{what} does not check: {first}") from None


def _close(a: float, b: float) -> bool:
    a, b = float(a), float(b)
    if a == b:
        return True
    if not (math.isfinite(a) and math.isfinite(b)):
        return False
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def _clean(x: float) -> float | int:
    """``x`` to 12 significant digits, and an int when it is whole (for readable JSON)."""
    y = float(f"{x:.12g}")
    if y.is_integer() and abs(y) < 1e15:
        return int(y)
    return y


def _fmt(x: float) -> str:
    return repr(_clean(x))


def _signed(x: float) -> str:
    return ("+" if x > 0 else "-") + _fmt(abs(x))


def _append(text: str, v: float) -> str:
    return f"{text} + {_fmt(v)}" if v > 0 else f"{text} - {_fmt(-v)}"


def _fresh(base: str, taken: set[str]) -> str:
    name = base[:MAX_NAME_CHARS]
    k = 2
    while name in taken:
        suffix = f"_{k}"
        name = base[: MAX_NAME_CHARS - len(suffix)] + suffix
        k += 1
    taken.add(name)
    return name


def _nested_set(tree: dict[str, Any], labels: Sequence[str], value: float | int) -> None:
    node = tree
    for lab in labels[:-1]:
        nxt = node.get(lab)
        if not isinstance(nxt, dict):
            nxt = node[lab] = {}
        node = nxt
    node[labels[-1]] = value


def _nested_get(tree: Any, labels: Sequence[str]) -> Any:
    node = tree
    for lab in labels:
        if not isinstance(node, dict) or lab not in node:
            return None
        node = node[lab]
    return node


def _labels(key: Key) -> list[str]:
    return [str(k) for k in key]


def _show(key: Key) -> str:
    return ",".join(_labels(key))


def _add_note(target: dict[str, Any], notes: list[str], summary: str) -> None:
    """Append the notes to ``description`` (a summary when they would not fit)."""
    old = target.get("description") or ""
    for text in (" ".join(notes), summary):
        new = f"{old} {text}" if old else text
        if len(new) <= MAX_TEXT_CHARS:
            target["description"] = new
            return


# ----------------------------------------------------------------------------- spans


def _operand_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the operands of the top-level comparison in ``text``.

    The expression was already accepted by ``solvers.expr.parse``; Python's ``ast`` is used
    here only for the end positions of the operands (the whitelisted tree keeps starts).
    """
    # as expr.parse reads it (a carriage return too: ast would count columns per line);
    # each replaced character is one space, so positions stay those of ``text``
    flat = " ".join(text.split("\n")).replace("\r", " ")
    tree = ast.parse(flat, mode="eval").body
    if not isinstance(tree, ast.Compare):  # pragma: no cover - checked by the caller
        raise _refuse("not a comparison")
    raw = flat.encode("utf-8")
    out: list[tuple[int, int]] = []
    for node in [tree.left, *tree.comparators]:
        assert node.end_col_offset is not None
        # ast positions count UTF-8 bytes: turn them into characters
        start = len(raw[: node.col_offset].decode("utf-8"))
        end = len(raw[: node.end_col_offset].decode("utf-8"))
        out.append((start, end))
    return out


def _literal(node: ex.Node) -> float | None:
    if isinstance(node, ex.Num):
        return float(node.value)
    if isinstance(node, ex.Unary) and node.op == "-" and isinstance(node.operand, ex.Num):
        return -float(node.operand.value)
    return None


# ----------------------------------------------------------------------------- the plan


@dataclass
class _RowFix:
    """One instance of a linear constraint whose row side(s) move by ``delta``."""

    name: str
    key: Key
    sides: tuple[str, ...]  # "lower" and/or "upper" of the lowered row
    delta: float
    expect: tuple[float, float]  # the row's bounds after the change
    codes: tuple[int, ...] = ()  # the key's element codes


@dataclass
class _LagFix:
    name: str
    key: Key
    delta: float
    expect: float
    codes: tuple[int, ...] = ()


@dataclass
class _BoundFix:
    name: str  # the column, x[chair]
    key: Key
    codes: tuple[int, ...]
    old: float
    new: float


@dataclass
class _Plan:
    model: Model
    lowering: Lowering
    instance: Instance
    data: dict[str, Any]
    rows: dict[str, list[_RowFix]] = field(default_factory=dict)
    lags: dict[str, list[_LagFix]] = field(default_factory=dict)
    bounds: dict[tuple[str, str], list[_BoundFix]] = field(default_factory=dict)
    seen: set[tuple[str, str]] = field(default_factory=set)
    #: edit the value of a parameter that is a whole data side (else rewrite the expression)
    edit_parameters: bool = False
    edited: list[str] = field(default_factory=list)  # the parameters whose values were edited
    param_notes: dict[str, list[str]] = field(default_factory=dict)
    _row_index: dict[str, dict[str, tuple[RowBlock, int]]] = field(default_factory=dict)
    _col_index: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def interner(self) -> Interner:
        return self.instance.columns.interner

    def taken(self) -> set[str]:
        d = self.data
        names = set(d.get("sets", {})) | set(d.get("parameters", {}))
        names |= {v["name"] for v in d.get("variables", [])}
        names |= {c["id"] for c in d.get("constraints", [])}
        return names

    # -------------------------------------------------------------- reading suggestions

    def add(self, r: Relaxation) -> None:
        target = (r.kind, r.name)
        if target in self.seen:
            raise _refuse(f"two suggestions change {r.name!r} ({r.kind})", r.name, "pass each one once")
        self.seen.add(target)
        if not math.isfinite(r.suggested):
            raise _refuse(f"the suggested value for {r.name!r} is not a finite number", r.name)
        if r.kind == "rhs":
            self.add_rhs(r)
        elif r.kind in ("lower", "upper"):
            self.add_bound(r)
        else:
            raise _refuse(
                f"unknown relaxation kind {r.kind!r} for {r.name!r}",
                r.name,
                "the kinds are 'rhs', 'lower' and 'upper'",
            )

    def _stale(self, r: Relaxation, actual: str) -> ModelError:
        return _refuse(
            f"the suggestion for {r.name!r} starts from {r.current:g}, but the model has {actual}",
            r.name,
            "solve the model again and apply one of its new suggestions",
        )

    def add_rhs(self, r: Relaxation) -> None:
        con = next((c for c in self.model.constraints if c.id == r.id), None)
        if con is None:
            raise _refuse(
                f"the model has no constraint {r.id!r}",
                r.name,
                "apply suggestions to the model they came from",
            )
        if isinstance(con, Precedence):
            self.add_lag(r, con)
            return
        if not isinstance(con, LinearConstraint):
            raise _refuse(
                f"constraint {r.id!r} is a {con.template!r} constraint: it has no right-hand side to change",
                r.name,
                "only linear constraints (and the lag of a precedence) can be relaxed this way",
            )
        found = self.row(r.id, r.name)
        if found is None:
            raise _refuse(f"constraint {r.id!r} has no instance {r.name!r}", r.name)
        block, i = found
        lo, hi = float(block.lower[i]), float(block.upper[i])
        if lo == hi:
            sides: tuple[str, ...] = ("lower", "upper")
            current = lo
        elif math.isfinite(lo) and _close(r.current, lo):
            sides, current = ("lower",), lo
        elif math.isfinite(hi) and _close(r.current, hi):
            sides, current = ("upper",), hi
        else:
            raise self._stale(r, f"{lo:g} <= row <= {hi:g}")
        if not _close(r.current, current):
            raise self._stale(r, f"{current:g}")
        delta = r.suggested - current
        new_lo = lo + delta if "lower" in sides else lo
        new_hi = hi + delta if "upper" in sides else hi
        if new_lo > new_hi and not _close(new_lo, new_hi):
            raise _refuse(
                f"the suggestion for {r.name!r} would put the lower end above the upper end",
                r.name,
            )
        codes = tuple(int(c) for c in block.keys[i])
        key = tuple(self.interner.value(c) for c in codes)
        self.rows.setdefault(r.id, []).append(_RowFix(r.name, key, sides, delta, (new_lo, new_hi), codes))

    def row(self, cid: str, name: str) -> tuple[RowBlock, int] | None:
        index = self._row_index.get(cid)
        if index is None:
            index = {}
            for b in self.instance.row_blocks:
                if b.cid == cid and not b.aux:
                    for i in range(b.n):
                        index[b.row_name(self.interner, i)] = (b, i)
            self._row_index[cid] = index
        return index.get(name)

    def column(self, block: VarBlock, name: str) -> int | None:
        """The position in ``block`` of the column named ``name`` (x[chair])."""
        index = self._col_index.get(block.name)
        if index is None:
            names = self.instance.columns.interner
            index = self._col_index[block.name] = {block.column_name(names, k): k for k in range(block.size)}
        return index.get(name)

    def add_lag(self, r: Relaxation, con: Precedence) -> None:
        idx = [k for k, lc in enumerate(self.instance.logic) if lc.cid == con.id]
        pos = next((n for n, k in enumerate(idx) if self.instance.logic[k].name == r.name), None)
        if pos is None:
            raise _refuse(f"constraint {r.id!r} has no instance {r.name!r}", r.name)
        lag = float(self.instance.logic[idx[pos]].data["lag"])
        if not _close(r.current, lag):
            raise self._stale(r, f"a lag of {lag:g}")
        codes: tuple[int, ...] = ()
        if con.for_each:
            # the instances of a logic constraint come in the order of its for_each binding
            codes = tuple(int(c) for c in self.lowering.keys_of(self.lowering.base_env(con))[pos])
        key: Key = tuple(self.interner.value(c) for c in codes)
        delta = r.suggested - lag
        self.lags.setdefault(r.id, []).append(_LagFix(r.name, key, delta, r.suggested, codes))

    def add_bound(self, r: Relaxation) -> None:
        var = next((v for v in self.model.variables if v.name == r.id), None)
        if var is None:
            raise _refuse(
                f"the model has no variable {r.id!r}", r.name, "apply suggestions to the model they came from"
            )
        side = r.kind
        if var.domain in ("binary", "boolean", "interval"):
            what = "0 and 1" if var.domain != "interval" else "its start and end windows"
            raise _refuse(
                f"{r.name!r}: the bounds of {var.domain} variable {var.name!r} are {what}; "
                "they are not changed by a suggestion",
                r.name,
            )
        suffix = f".{side}"
        if not r.name.endswith(suffix):
            raise _refuse(
                f"a suggestion for the {side} bound names {r.name!r}, not '<variable>{suffix}'", r.name
            )
        column = r.name[: -len(suffix)]
        block = next(b for b in self.instance.columns.blocks if b.name == var.name)
        k = self.column(block, column)
        if k is None:
            raise _refuse(f"variable {var.name!r} has no element {column!r}", r.name)
        cols = self.instance.columns
        old = float((cols.lower if side == "lower" else cols.upper)[block.offset + k])
        if not math.isfinite(old) or not _close(r.current, old):
            raise self._stale(r, f"{column} {side} bound {old:g}")
        other = float((cols.upper if side == "lower" else cols.lower)[block.offset + k])
        if (side == "lower" and r.suggested > other) or (side == "upper" and r.suggested < other):
            raise _refuse(f"the suggestion for {r.name!r} would cross the {column} bounds", r.name)
        codes = tuple(int(c) for c in block.keys[k])
        key = tuple(self.interner.value(c) for c in codes)
        self.bounds.setdefault((var.name, side), []).append(_BoundFix(column, key, codes, old, r.suggested))

    # -------------------------------------------------------------- making the changes

    def apply(self) -> None:
        for cid, fixes in self.rows.items():
            self.apply_rows(cid, fixes)
        for cid, lags in self.lags.items():
            self.apply_lags(cid, lags)
        for (vname, side), bfixes in self.bounds.items():
            self.apply_bound(vname, side, bfixes)
        params = self.data.get("parameters", {})
        for pname, notes in self.param_notes.items():
            _add_note(params[pname], notes, f"{FIX_MARK}es applied to {len(notes)} value(s) of {pname}.")

    def edit_value(
        self, node: ex.Node | None, targets: Sequence[str], codes: tuple[int, ...], v: float, name: str
    ) -> str | None:
        """Move by ``v`` the value of the parameter that ``node`` (a whole data side of the
        instance ``name``, with element ``codes``) is, when that can be done alone: ``node`` is
        a scalar parameter (``targets`` empty: no for_each) or an indexed one read with exactly
        the for_each binding ``targets``, nothing else in the model reads it, and the element
        has its own number (``value``, or an entry of ``values``; not a table, not the
        ``default``). Returns the note for the constraint, or None (nothing changed)."""
        if not self.edit_parameters or node is None:
            return None
        params: dict[str, Any] = self.data.get("parameters", {})
        if isinstance(node, ex.Name) and not targets:
            pname = node.id
        elif (
            isinstance(node, ex.Index)
            and targets
            and [a.id if isinstance(a, ex.Name) else None for a in node.args] == list(targets)
        ):
            pname = node.name
        else:
            return None
        p = params.get(pname)
        if not isinstance(p, dict) or _mentions(self.data, pname) != 1:
            return None
        if isinstance(node, ex.Name):
            raw = p.get("value")
            if p.get("index") or not _is_number(raw):
                return None
            old = float(raw)
            new = _clean(old + v)
            p["value"] = new
            what = f"{_fmt(old)} -> {_fmt(new)}"
            shown = pname
        else:
            slot = self.slot(p.get("values"), p.get("index") or [], codes)
            if slot is None:
                return None
            holder, at = slot
            old = float(holder[at])
            new = _clean(old + v)
            holder[at] = new
            shown = f"{pname}[{','.join(self.interner.label(c) for c in codes)}]"
            what = f"{shown} {_fmt(old)} -> {_fmt(new)}"
        self.edited.append(pname)
        self.param_notes.setdefault(pname, []).append(f"{FIX_MARK} applied: {what} (constraint {name}).")
        return f"{shown} {_fmt(old)} -> {_fmt(new)}"

    def slot(self, values: Any, sets: Sequence[str], codes: Sequence[int]) -> tuple[Any, str | int] | None:
        """Where in parameter ``values`` (nested dictionaries keyed by element, or lists in set
        order) the element ``codes`` has its own number; None when it has none there (it takes
        the ``default``) or cannot be found."""
        comps: list[tuple[str, int | None]] = []
        k = 0
        for s in sets:
            sd = self.lowering.sets.get(s)
            if sd is None:
                return None
            for _ in range(sd.arity):
                if k >= len(codes):
                    return None
                pos = None
                if sd.arity == 1:
                    pos = int(sd.positions([np.array([codes[k]], dtype=np.int64)])[0])
                comps.append((self.interner.label(codes[k]), pos))
                k += 1
        if k != len(codes) or not comps:
            return None
        node = values
        for depth, (label, pos) in enumerate(comps):
            at: str | int
            if isinstance(node, dict) and label in node:
                at = label
            elif isinstance(node, list) and pos is not None and 0 <= pos < len(node):
                at = pos
            else:
                return None
            if depth == len(comps) - 1:
                return (node, at) if _is_number(node[at]) else None
            node = node[at]
        return None  # pragma: no cover - the loop returns

    def constraint_data(self, cid: str) -> dict[str, Any]:
        return next(c for c in self.data["constraints"] if c["id"] == cid)

    def loops(self, for_each: str, cid: str) -> tuple[list[str], list[str]]:
        """The for_each's loop names (binding order) and the sets they run over."""
        loops = ex.parse_for_each(for_each, f"constraint {cid} (for_each)")
        return [t for lp in loops for t in lp.targets], [lp.set_name for lp in loops]

    def relax_param(
        self, cid: str, base: str, operand: ex.Node | None, sets: list[str], targets: list[str], what: str
    ) -> tuple[str, dict[str, Any], bool]:
        """The parameter that carries per-instance changes of one data side: the one an earlier
        fix put at the end of ``operand`` (then True), or a new one."""
        params: dict[str, Any] = self.data.setdefault("parameters", {})
        if (
            isinstance(operand, ex.Bin)
            and operand.op == "+"
            and isinstance(operand.right, ex.Index)
            and [a.id if isinstance(a, ex.Name) else None for a in operand.right.args] == targets
        ):
            p = params.get(operand.right.name)
            if (
                isinstance(p, dict)
                and str(p.get("description", "")).startswith(FIX_MARK)
                and p.get("index") == sets
                and isinstance(p.get("values"), dict)
                and _mentions(self.data, operand.right.name) == 1  # read here only
            ):
                return operand.right.name, p, True
        name = _fresh(base, self.taken())
        p = {
            "index": sets,
            "values": {},
            "default": 0,
            "description": f"{FIX_MARK} for constraint {cid}: the amount added to its {what}, "
            "per instance (0: unchanged).",
        }
        params[name] = p
        return name, p, False

    def apply_rows(self, cid: str, fixes: list[_RowFix]) -> None:
        c = self.constraint_data(cid)
        text: str = c["expression"]
        node = ex.parse(text, f"constraint {cid}")
        assert isinstance(node, ex.Compare)  # it lowered to rows
        variables = {v["name"] for v in self.data.get("variables", [])}
        has_vars = [bool(ex.names_in(o) & variables) for o in node.operands]
        # operand -> (what it is called, sign): how much the operand moves per unit of delta
        if len(node.ops) == 1:
            strict = node.ops[0] in ("<", ">")
            right = not has_vars[1] or has_vars[0]
            edit = (1, "right-hand side", 1.0) if right else (0, "left-hand side", -1.0)
            plan = {"lower": [edit], "upper": [edit]}
        else:
            strict = False
            lo_i, hi_i = (0, 2) if node.ops[0] in ("<=", "<") else (2, 0)
            plan = {"lower": [(lo_i, "lower end", 1.0)], "upper": [(hi_i, "upper end", 1.0)]}
        # operand -> its name and, per instance key, the amount it moves
        moves: dict[int, tuple[str, dict[Key, float]]] = {}
        notes: list[str] = []
        loop_targets = self.loops(c["for_each"], cid)[0] if c.get("for_each") else []
        for f in fixes:
            if strict and not float(f.delta).is_integer():
                raise _refuse(
                    f"{f.name!r} is a strict comparison; a change by {f.delta:g} is not a whole number",
                    f.name,
                    "write the comparison with <= or >=",
                )
            done: set[int] = set()
            for side in f.sides:
                for i, what, sign in plan[side]:
                    if i in done:
                        continue  # an equality moves its one data side once
                    done.add(i)
                    v = sign * f.delta
                    value = self.edit_value(node.operands[i], loop_targets, f.codes, v, f.name)
                    if value is not None:
                        notes.append(f"{FIX_MARK} applied: {f.name} {what} {_signed(v)} ({value}).")
                        continue
                    moves.setdefault(i, (what, {}))[1][f.key] = v
                    notes.append(f"{FIX_MARK} applied: {f.name} {what} {_signed(v)}.")
        spans = _operand_spans(text)
        edits: list[tuple[int, int, str]] = []  # (start, end, replacement)
        if not c.get("for_each"):
            for i, (_, amounts) in moves.items():
                v = amounts[()]
                start, end = spans[i]
                lit = _literal(node.operands[i])
                if lit is not None:
                    edits.append((start, end, _fmt(lit + v)))
                else:
                    edits.append((start, end, _append(text[start:end], v)))
        else:
            targets, sets = self.loops(c["for_each"], cid)
            for i, (what, amounts) in moves.items():
                base = f"relax_{cid}" if len(moves) == 1 else f"relax_{cid}_{what.split()[0]}"
                pname, param, reused = self.relax_param(cid, base, node.operands[i], sets, targets, what)
                for key, v in amounts.items():
                    was = _nested_get(param["values"], _labels(key))
                    was = was if isinstance(was, (int, float)) else param.get("default", 0)
                    _nested_set(param["values"], _labels(key), _clean(float(was) + v))
                if not reused:
                    start, end = spans[i]
                    term = f"{pname}[{', '.join(targets)}]"
                    edits.append((start, end, f"{text[start:end]} + {term}"))
        for start, end, new in sorted(edits, reverse=True):
            text = text[:start] + new + text[end:]
        c["expression"] = text
        _add_note(c, notes, f"{FIX_MARK}es applied to {len(fixes)} instance(s) of {cid}.")

    def apply_lags(self, cid: str, fixes: list[_LagFix]) -> None:
        c = self.constraint_data(cid)
        lag = c.get("lag", 0.0)
        notes: list[str] = []
        rest: list[_LagFix] = []
        loop_targets = self.loops(c["for_each"], cid)[0] if c.get("for_each") else []
        lag_node = ex.parse(lag, f"constraint {cid} (lag)") if isinstance(lag, str) else None
        for f in fixes:
            value = self.edit_value(lag_node, loop_targets, f.codes, f.delta, f.name)
            if value is not None:
                notes.append(f"{FIX_MARK} applied: {f.name} lag {_signed(f.delta)} ({value}).")
            else:
                notes.append(f"{FIX_MARK} applied: {f.name} lag {_signed(f.delta)}.")
                rest.append(f)
        if rest and not c.get("for_each"):
            v = rest[0].delta
            c["lag"] = _clean(float(lag) + v) if not isinstance(lag, str) else _append(_lag_text(lag, cid), v)
        elif rest:
            targets, sets = self.loops(c["for_each"], cid)
            pname, param, reused = self.relax_param(cid, f"relax_{cid}", lag_node, sets, targets, "lag")
            for f in rest:
                was = _nested_get(param["values"], _labels(f.key))
                was = was if isinstance(was, (int, float)) else param.get("default", 0)
                _nested_set(param["values"], _labels(f.key), _clean(float(was) + f.delta))
            if not reused:
                term = f"{pname}[{', '.join(targets)}]"
                if isinstance(lag, str):
                    c["lag"] = f"{_lag_text(lag, cid)} + {term}"
                else:
                    c["lag"] = term if float(lag) == 0 else f"{_fmt(float(lag))} + {term}"
        _add_note(c, notes, f"{FIX_MARK}es applied to {len(fixes)} instance(s) of {cid}.")

    def apply_bound(self, vname: str, side: str, fixes: list[_BoundFix]) -> None:
        v = next(x for x in self.data["variables"] if x["name"] == vname)
        var = next(x for x in self.model.variables if x.name == vname)
        bound = getattr(var, side)
        params: dict[str, Any] = self.data.setdefault("parameters", {})
        notes = [f"{FIX_MARK} applied: {f.name} {side} bound {_fmt(f.old)} -> {_fmt(f.new)}." for f in fixes]
        summary = f"{FIX_MARK}es applied to {len(fixes)} {side} bound(s) of {vname}."
        p = params.get(bound) if isinstance(bound, str) else None
        editable = p is not None and not self.shared(bound, vname, side)
        if not var.index:
            new = _clean(fixes[0].new)
            if editable and p is not None and "value" in p:
                p["value"] = new
            else:
                v[side] = new
            _add_note(v, notes, summary)
            return
        if editable and p is not None and p.get("index") and p.get("values") is not None:
            if all(self.put(p["values"], var.index, f.codes, None) for f in fixes):
                for f in fixes:
                    self.put(p["values"], var.index, f.codes, _clean(f.new))
                _add_note(v, notes, summary)
                return
        uniform: float | None = None
        if not isinstance(bound, str):
            uniform = float(bound) if bound is not None else None
        elif p is not None and "value" in p:
            uniform = float(p["value"])
        values: dict[str, Any] = {}
        if uniform is None:  # the bound parameter's values, as the lowered model has them
            block = next(b for b in self.instance.columns.blocks if b.name == vname)
            arr = self.instance.columns.lower if side == "lower" else self.instance.columns.upper
            for k in range(block.size):
                key = tuple(self.interner.value(int(c)) for c in block.keys[k])
                _nested_set(values, _labels(key), _clean(float(arr[block.offset + k])))
        for f in fixes:
            _nested_set(values, _labels(f.key), _clean(f.new))
        was = f"{_fmt(uniform)}" if uniform is not None else f"parameter {bound}"
        param: dict[str, Any] = {
            "index": list(var.index),
            "values": values,
            "description": f"{FIX_MARK}: the {side} bound of {vname} per element (was {was}).",
        }
        if uniform is not None:
            param["default"] = _clean(uniform)
        name = _fresh(f"{vname}_{side}", self.taken())
        params[name] = param
        v[side] = name
        _add_note(v, notes, summary)

    def put(self, values: Any, sets: Sequence[str], codes: Sequence[int], value: float | None) -> bool:
        """Set one element of parameter ``values`` (nested dictionaries keyed by element, or
        lists in set order) in place; with ``value`` None only say whether that can be done."""
        comps: list[tuple[str, int | None]] = []  # per index component: its label, list position
        k = 0
        for s in sets:
            sd = self.lowering.sets[s]
            for _ in range(sd.arity):
                pos = None
                if sd.arity == 1:
                    pos = int(sd.positions([np.array([codes[k]], dtype=np.int64)])[0])
                comps.append((self.interner.label(codes[k]), pos))
                k += 1
        node = values
        for depth, (label, pos) in enumerate(comps):
            last = depth == len(comps) - 1
            if isinstance(node, dict):
                if last:
                    if value is not None:
                        node[label] = value
                    return True
                nxt = node.get(label)
                if nxt is None:  # the element used the default: the rest is new dictionaries
                    if value is not None:
                        _nested_set(node, [lab for lab, _ in comps[depth:]], value)
                    return True
                node = nxt
            elif isinstance(node, list) and pos is not None and 0 <= pos < len(node):
                if last:
                    if value is not None:
                        node[pos] = value
                    return True
                node = node[pos]
            else:
                return False
        return False

    def shared(self, pname: str, vname: str, side: str) -> bool:
        """Whether anything but this bound of ``vname`` reads parameter ``pname``."""
        return _mentions(self.data, pname) > 1

    # -------------------------------------------------------------- checking the result

    def verify(self, after: Instance) -> None:
        """The new model must read ``suggested`` at every target and be unchanged elsewhere:
        the same rows (entries and bounds) in every edited constraint, the same lags, the
        same variable bounds."""
        check = _Plan(self.model, self.lowering, after, {})

        def wrong(what: str) -> ModelError:  # a bug here, not in the model
            return _refuse(f"could not apply the suggestions: {what}")

        for cid, fixes in self.rows.items():
            old = [b for b in self.instance.row_blocks if b.cid == cid and not b.aux]
            new = [b for b in after.row_blocks if b.cid == cid and not b.aux]
            targets = {f.name for f in fixes}
            if len(old) != len(new):  # pragma: no cover
                raise wrong(f"constraint {cid} has other rows")
            for b0, b1 in zip(old, new, strict=True):
                same = b0.n == b1.n and all(
                    np.array_equal(x, y)
                    for x, y in (
                        (b0.rows, b1.rows),
                        (b0.cols, b1.cols),
                        (b0.coefs, b1.coefs),
                        (b0.keys, b1.keys),
                    )
                )
                if not same:  # pragma: no cover
                    raise wrong(f"the rows of {cid} changed")
                moved = np.flatnonzero((b0.lower != b1.lower) | (b0.upper != b1.upper)).tolist()
                if any(b0.row_name(self.interner, i) not in targets for i in moved):  # pragma: no cover
                    raise wrong(f"other instances of {cid} changed")
            for f in fixes:
                got = check.row(cid, f.name)
                ok = got is not None and all(
                    _close(a, b)
                    for a, b in zip((got[0].lower[got[1]], got[0].upper[got[1]]), f.expect, strict=True)
                )
                if not ok:  # pragma: no cover
                    raise wrong(f"{f.name} does not read {f.expect}")
        for cid, lags in self.lags.items():
            before = {lc.name: float(lc.data["lag"]) for lc in self.instance.logic if lc.cid == cid}
            now = {lc.name: float(lc.data["lag"]) for lc in after.logic if lc.cid == cid}
            for g in lags:
                if g.name not in now or not _close(now[g.name], g.expect):  # pragma: no cover
                    raise wrong(f"the lag of {g.name} is not {g.expect:g}")
                now[g.name] = before.get(g.name, math.nan)
            if now != before:  # pragma: no cover
                raise wrong(f"other lags of {cid} changed")
        c0, c1 = self.instance.columns, after.columns
        lower, upper = c1.lower.copy(), c1.upper.copy()
        for (vname, side), bfixes in self.bounds.items():
            block = next(b for b in c1.blocks if b.name == vname)
            arr = lower if side == "lower" else upper
            for b in bfixes:
                k = check.column(block, b.name)
                if k is None or not _close(float(arr[block.offset + k]), b.new):  # pragma: no cover
                    raise wrong(f"the {side} bound of {b.name} is not {b.new:g}")
                arr[block.offset + k] = (c0.lower if side == "lower" else c0.upper)[block.offset + k]
        # interval columns are left out: their bounds come from the horizon, which lags move
        keep = np.ones(c0.n, dtype=np.bool_)
        for blk in c0.blocks:
            if blk.domain == "interval":
                keep[blk.offset : blk.offset + blk.size] = False
        if not (
            np.array_equal(lower[keep], c0.lower[keep]) and np.array_equal(upper[keep], c0.upper[keep])
        ):  # pragma: no cover
            raise wrong("other variable bounds changed")

    def agrees(self, ref: Instance, got: Instance) -> bool:
        """Whether ``got`` (parameter values edited) lowers to what ``ref`` (the expressions
        rewritten) does: the same columns, rows, logic and objective, exactly, but for the
        bounds of the targeted rows, the targeted lags and the interval columns (their horizon
        counts the lags), which may differ by rounding."""
        names = ref.columns.interner
        targets = {f.name for fixes in self.rows.values() for f in fixes}
        lags = {g.name for gs in self.lags.values() for g in gs}
        if len(ref.row_blocks) != len(got.row_blocks) or len(ref.logic) != len(got.logic):
            return False
        for b0, b1 in zip(ref.row_blocks, got.row_blocks, strict=True):
            head = (b0.cid, b0.template, b0.source, b0.n, b0.aux, b0.suffix)
            if head != (b1.cid, b1.template, b1.source, b1.n, b1.aux, b1.suffix):
                return False
            if not all(_same(getattr(b0, a), getattr(b1, a)) for a in ("rows", "cols", "coefs", "keys")):
                return False
            for x, y in ((b0.lower, b1.lower), (b0.upper, b1.upper)):
                for i in np.flatnonzero(x != y).tolist():
                    if b0.aux or b0.row_name(names, i) not in targets or not _close(x[i], y[i]):
                        return False
        for l0, l1 in zip(ref.logic, got.logic, strict=True):
            if (l0.cid, l0.name, l0.template, l0.source) != (l1.cid, l1.name, l1.template, l1.source):
                return False
            d0, d1 = dict(l0.data), dict(l1.data)
            if l0.template == "precedence" and l0.name in lags:
                if not _close(d0.pop("lag"), d1.pop("lag")):
                    return False
            if not _same(d0, d1):
                return False
        c0, c1 = ref.columns, got.columns
        if not (_same(c0.blocks, c1.blocks) and _same(c0.integer, c1.integer)):
            return False
        if c0.interner._strings != c1.interner._strings:
            return False
        for x, y in ((c0.lower, c1.lower), (c0.upper, c1.upper)):
            for j in np.flatnonzero(x != y).tolist():
                if not (lags and c0.block_of(j).domain == "interval" and _close(x[j], y[j])):
                    return False
        return (
            _same(ref.intervals, got.intervals)
            and _same(ref.objective, got.objective)
            and _same(ref.aux, got.aux)
            and ref.sources == got.sources
            and ref.templates == got.templates
        )


def _same(a: Any, b: Any) -> bool:
    """Exact equality of lowered data: arrays, dataclasses, lists and dictionaries of them."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and np.array_equal(a, b)
        )
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if is_dataclass(a) and not isinstance(a, type):
        return type(a) is type(b) and all(
            _same(getattr(a, f.name), getattr(b, f.name)) for f in fields(a) if not f.name.startswith("_")
        )
    return bool(type(a) is type(b) and a == b)


def _mentions(data: dict[str, Any], name: str) -> int:
    """How often the model's expressions and variable bounds name ``name`` (a word inside a
    quoted element counts too: a false alarm only makes a copy of a parameter)."""
    word = re.compile(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])")

    def strings(x: Any) -> list[str]:
        if isinstance(x, str):
            return [x]
        if isinstance(x, (list, tuple)):
            return [s for item in x for s in strings(item)]
        if isinstance(x, dict):
            return [s for item in x.values() for s in strings(item)]
        return []

    texts = strings((data.get("objective") or {}).get("expression", ""))
    for c in data.get("constraints", []):
        texts += strings({k: x for k, x in c.items() if k not in ("id", "template", "source", "description")})
    count = sum(len(word.findall(t)) for t in texts)
    for v in data.get("variables", []):
        for k in ("lower", "upper", "duration", "start", "end"):
            count += sum(1 for t in strings(v.get(k)) if t == name)
    return count


def _is_number(x: object) -> TypeGuard[int | float]:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _lag_text(lag: str, cid: str) -> str:
    node = ex.parse(lag, f"constraint {cid} (lag)")
    if isinstance(node, (ex.Compare, ex.BoolOp, ex.Gen)) or (isinstance(node, ex.Unary) and node.op == "not"):
        raise _refuse(f"the lag of {cid!r} is not an arithmetic expression", f"constraint {cid}")
    return lag
