"""What the web form shows, computed in plain Python: no HTTP, no templates, no browser.

From a model (the contract) this module makes the LaTeX of each part (sets, parameters,
variables with their domains and bounds, the objective, each constraint with its ``for_each``
as a quantifier), the plan rows of a result (non-zero decisions with the variable's
description and unit), the data of a chart (a Gantt chart when the model schedules interval
variables, else bars of quantities), and the problem text as escaped HTML in which every
``source`` quote of the model is a ``<mark>`` that names what it came from.

Everything a user or an LLM wrote reaches LaTeX only through :func:`tex_text` (escaped
``\\text{}``) or through the expression parser of ``solvers.expr`` (which only lets names,
numbers and quoted set elements through), and reaches HTML only through ``markupsafe.escape``.
KaTeX renders the LaTeX in the browser with ``trust: false``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup, escape

from solvers.errors import ModelError
from solvers.expr import (
    Bin,
    BoolOp,
    Call,
    Compare,
    Gen,
    Index,
    Loop,
    Name,
    Node,
    Num,
    Str,
    Tuple,
    Unary,
    parse,
    parse_for_each,
    parse_list,
)
from solvers.model import Model, Parameter, RangeSet, TableSet, Variable

__all__ = [
    "ChartData",
    "ModelView",
    "Part",
    "PlanRow",
    "chart_data",
    "constraint_fields",
    "expr_tex",
    "fmt_num",
    "highlight",
    "model_view",
    "plan_rows",
    "tex_text",
]

MAX_SET_SHOWN = 12  # elements of a set written out before "..."
MAX_VALUES_SHOWN = 8  # parameter values in the preview
MAX_BARS = 60  # more quantities than this make a bar chart unreadable

OBJECTIVE_REF = "objective"


def variable_ref(name: str) -> str:
    """The highlight key of a variable's source quote (constraint ids are identifiers: no clash)."""
    return f"variable-{name}"


# ----------------------------------------------------------------------------- LaTeX pieces

_TEXT_ESCAPES = {
    "\\": r"\textbackslash{}",
    "{": r"\{",
    "}": r"\}",
    "$": r"\$",
    "&": r"\&",
    "#": r"\#",
    "^": r"\textasciicircum{}",
    "_": r"\_",
    "%": r"\%",
    "~": r"\textasciitilde{}",
}


def _escape_tex(s: str) -> str:
    return "".join(_TEXT_ESCAPES.get(ch, ch) for ch in s if ch >= " " or ch == "\t")


def tex_text(s: str, command: str = "text") -> str:
    """``s`` as LaTeX text: every character that means something to TeX is escaped."""
    return f"\\{command}{{{_escape_tex(s)}}}"


def tex_name(name: str) -> str:
    """A symbol: one letter as math italic, a longer name upright-italic as one word."""
    if len(name) == 1 and name.isalpha():
        return name
    return f"\\mathit{{{_escape_tex(name)}}}"


def fmt_num(v: float) -> str:
    """A number as people write it: whole numbers without a point, others to 6 digits."""
    if v != v or v in (float("inf"), float("-inf")):
        return str(v)
    if abs(v - round(v)) < 1e-9 and abs(v) < 1e15:
        return str(int(round(v)))
    return f"{v:.6g}"


def _tex_num(v: float) -> str:
    s = fmt_num(v)
    if "e" in s:
        mant, _, exp = s.partition("e")
        return f"{mant} \\times 10^{{{int(exp)}}}"
    return s


_CMP = {"<=": r"\le", ">=": r"\ge", "==": "=", "<": "<", ">": ">", "!=": r"\ne", "in": r"\in"}
_CMP["not in"] = r"\notin"
_FUNCS = {"start": "start", "end": "end", "ord": "ord", "first": "first", "last": "last", "len": "len"}

# Binding strength, loosest first: or, and, not, comparison, + -, * / %, unary -, **, atoms.
_PREC = {"or": 1, "and": 2, "not": 3, "cmp": 4, "+": 5, "-": 5, "*": 6, "/": 6, "%": 6, "neg": 7, "**": 8}


def _prec(n: Node) -> int:
    if isinstance(n, BoolOp):
        return _PREC[n.op]
    if isinstance(n, Compare):
        return _PREC["cmp"]
    if isinstance(n, Bin):
        return _PREC[n.op]
    if isinstance(n, Unary):
        return _PREC["not"] if n.op == "not" else _PREC["neg"]
    if isinstance(n, Num) and n.value < 0:
        return _PREC["neg"]
    return 9


def _paren(n: Node, least: int) -> str:
    s = expr_tex(n)
    return f"\\left({s}\\right)" if _prec(n) < least else s


def _loops_tex(loops: Sequence[Loop]) -> tuple[str, list[str]]:
    parts: list[str] = []
    conds: list[str] = []
    for lp in loops:
        names = [tex_name(t) for t in lp.targets]
        target = names[0] if len(names) == 1 else "(" + ", ".join(names) + ")"
        parts.append(f"{target} \\in {tex_name(lp.set_name)}")
        conds.extend(expr_tex(c) for c in lp.conds)
    return ",\\, ".join(parts), conds


def _under(loops: Sequence[Loop]) -> str:
    """The subscript of a sum or a max over ``loops``: bindings, then conditions on a second line."""
    binds, conds = _loops_tex(loops)
    if not conds:
        return binds
    return "\\substack{" + binds + " \\\\ " + ",\\, ".join(conds) + "}"


def expr_tex(n: Node) -> str:
    """LaTeX of an expression tree of ``solvers.expr``."""
    if isinstance(n, Num):
        return _tex_num(float(n.value))
    if isinstance(n, Str):
        return tex_text(n.value)
    if isinstance(n, Name):
        return tex_name(n.id)
    if isinstance(n, Index):
        args = ",".join(expr_tex(a) for a in n.args)
        return f"{tex_name(n.name)}_{{{args}}}"
    if isinstance(n, Unary):
        if n.op == "not":
            return f"\\lnot {_paren(n.operand, _PREC['not'] + 1)}"
        return f"-{_paren(n.operand, _PREC['neg'])}"
    if isinstance(n, Bin):
        p = _PREC[n.op]
        if n.op == "/":
            return f"\\frac{{{expr_tex(n.left)}}}{{{expr_tex(n.right)}}}"
        if n.op == "**":
            return f"{_paren(n.left, p + 1)}^{{{expr_tex(n.right)}}}"
        left = _paren(n.left, p)
        # a - (b + c) needs its brackets; a + (b + c) does not
        right = _paren(n.right, p + 1 if n.op in ("-", "/", "%") else p)
        if n.op == "*":
            numeric_right = isinstance(n.right, Num) or right.startswith("-")
            return f"{left} \\cdot {right}" if numeric_right else f"{left}\\, {right}"
        if n.op == "%":
            return f"{left} \\bmod {right}"
        if n.op == "-" and right.startswith("-"):
            right = f"\\left({right}\\right)"
        return f"{left} {n.op} {right}"
    if isinstance(n, Compare):
        out = _paren(n.operands[0], _PREC["cmp"] + 1)
        for op, rhs in zip(n.ops, n.operands[1:], strict=True):
            out += f" {_CMP.get(op, op)} {_paren(rhs, _PREC['cmp'] + 1)}"
        return out
    if isinstance(n, BoolOp):
        joiner = " \\land " if n.op == "and" else " \\lor "
        return joiner.join(_paren(v, _PREC[n.op] + 1) for v in n.values)
    if isinstance(n, Tuple):
        return "(" + ", ".join(expr_tex(i) for i in n.items) + ")"
    if isinstance(n, Gen):
        return f"\\left\\{{\\, {expr_tex(n.elt)} : {_under(n.loops)} \\,\\right\\}}"
    if isinstance(n, Call):
        return _call_tex(n)
    return tex_text(repr(n), "texttt")  # pragma: no cover - every node kind is handled above


def _call_tex(n: Call) -> str:
    f = n.func
    if f == "sum":
        g = n.args[0]
        if isinstance(g, Gen):
            return f"\\sum_{{{_under(g.loops)}}} {_paren(g.elt, _PREC['*'])}"
    if f in ("min", "max"):
        if len(n.args) == 1 and isinstance(n.args[0], Gen):
            g = n.args[0]
            return f"\\{f}_{{{_under(g.loops)}}} {_paren(g.elt, _PREC['*'])}"
        return f"\\{f}\\left(" + ", ".join(expr_tex(a) for a in n.args) + "\\right)"
    if f == "abs":
        return f"\\left|{expr_tex(n.args[0])}\\right|"
    name = _FUNCS.get(f, f)
    return f"\\operatorname{{{name}}}\\left(" + ", ".join(expr_tex(a) for a in n.args) + "\\right)"


def _raw(text: str) -> str:
    return tex_text(text, "texttt")


def expr_str_tex(text: str) -> str:
    """LaTeX of an expression string; the string itself (as code) when it does not parse."""
    try:
        return expr_tex(parse(text))
    except ModelError:
        return _raw(text)


def _value_tex(v: float | str) -> str:
    if isinstance(v, str):
        return expr_str_tex(v)
    return _tex_num(float(v))


def _list_joined(items: list[str] | str, sep: str, big: str) -> str:
    """Items joined by ``sep`` (``a \\lor b``), or ``big`` over a comprehension (``\\bigvee_{j} a_j``)."""
    if isinstance(items, str):
        try:
            g = parse_list(items)
        except ModelError:
            return _raw(items)
        return f"{big}_{{{_under(g.loops)}}} {_paren(g.elt, _PREC['*'])}"
    return f" {sep} ".join(expr_str_tex(i) for i in items)


def _list_set(items: list[str] | str) -> str:
    if isinstance(items, str):
        try:
            return expr_tex(parse_list(items))
        except ModelError:
            return _raw(items)
    return "\\left\\{" + ", ".join(expr_str_tex(i) for i in items) + "\\right\\}"


def for_each_tex(text: str) -> str:
    try:
        loops = parse_for_each(text)
    except ModelError:
        return "\\forall\\, " + _raw(text)
    binds, conds = _loops_tex(loops)
    out = f"\\forall\\, {binds}"
    if conds:
        out += " : " + ",\\, ".join(conds)
    return out


def constraint_tex(c: Any) -> str:
    """LaTeX of one constraint (any template), without its ``for_each``."""
    t = c.template
    if hasattr(c, "expression"):
        return expr_str_tex(c.expression)
    if t == "implication":
        return f"{expr_str_tex(c.if_)} \\;\\Rightarrow\\; {expr_str_tex(c.then)}"
    if t == "either_or":
        return _list_joined(c.options, "\\;\\lor\\;", "\\bigvee")
    if t in ("at_most_k", "at_least_k", "exactly_k"):
        word = {"at_most_k": "at most", "at_least_k": "at least", "exactly_k": "exactly"}[t]
        k = _value_tex(c.k)
        return f"{tex_text(word + ' ')}{k}{tex_text(' of ')}{_list_set(c.options)}{tex_text(' hold')}"
    if t == "all_different":
        return f"\\operatorname{{alldifferent}}{_list_set(c.terms)}"
    if t == "fixed_charge":
        return f"{expr_str_tex(c.variable)} \\le {_value_tex(c.upper)} \\cdot {expr_str_tex(c.indicator)}"
    if t == "semi_continuous":
        v = expr_str_tex(c.variable)
        return f"{v} = 0 \\;\\lor\\; {_value_tex(c.lower)} \\le {v} \\le {_value_tex(c.upper)}"
    if t == "no_overlap":
        return f"\\operatorname{{nooverlap}}{_list_set(c.intervals)}"
    if t == "precedence":
        lag = c.lag
        tail = "" if (not isinstance(lag, str) and float(lag) == 0) else f" + {_value_tex(lag)}"
        return (
            f"\\operatorname{{start}}\\left({expr_str_tex(c.after)}\\right) \\ge "
            f"\\operatorname{{end}}\\left({expr_str_tex(c.before)}\\right){tail}"
        )
    if t == "cumulative":
        return (
            f"\\operatorname{{cumulative}}\\left({_list_set(c.intervals)}, {_list_set(c.demands)}\\right)"
            f" \\le {_value_tex(c.capacity)}"
        )
    if t == "clause":
        return _list_joined(c.literals, "\\lor", "\\bigvee")
    return _raw(t)  # pragma: no cover - a template added to the contract later


# ----------------------------------------------------------------------------- the model view


@dataclass
class Part:
    """One line of the model as the page shows it."""

    key: str  # the highlight key (constraint id, objective, variable-x); "" for none
    label: str
    tex: str
    plain: str = ""  # the same as text, shown until KaTeX runs (and to screen readers)
    source: str | None = None
    note: str = ""
    template: str = ""
    fields: dict[str, str] = field(default_factory=dict)  # editable fields of a constraint
    quantifier: str = ""  # a constraint's for_each as LaTeX (\\forall r \\in R)


@dataclass
class ModelView:
    name: str
    description: str | None
    sets: list[Part]
    parameters: list[Part]
    variables: list[Part]
    objective: Part | None
    constraints: list[Part]

    def quotes(self) -> list[tuple[str, str]]:
        """(highlight key, source quote) of every part that has one, in reading order."""
        out: list[tuple[str, str]] = []
        for p in [*self.variables, *([self.objective] if self.objective else []), *self.constraints]:
            if p.source and p.key:
                out.append((p.key, p.source))
        return out


def _elements_tex(elements: Sequence[Any]) -> str:
    def one(e: Any) -> str:
        if isinstance(e, (list, tuple)):
            return "(" + ", ".join(one(x) for x in e) + ")"
        if isinstance(e, (int, float)) and not isinstance(e, bool):
            return _tex_num(float(e))
        return tex_text(str(e))

    shown = [one(e) for e in elements[:MAX_SET_SHOWN]]
    if len(elements) > MAX_SET_SHOWN:
        shown.append(f"\\dots{tex_text(f' ({len(elements)} in all)')}")
    return "\\{" + ", ".join(shown) + "\\}"


def set_tex(name: str, d: Any) -> str:
    if isinstance(d, RangeSet):
        lo, hi = d.range
        return f"{tex_name(name)} = \\{{{lo}, \\dots, {hi}\\}}"
    if isinstance(d, TableSet):
        cols = d.column if d.column is not None else "(" + ", ".join(d.columns or []) + ")"
        return f"{tex_name(name)} = {tex_text('the rows of ')}{tex_text(f'{d.table}.{cols}', 'texttt')}"
    return f"{tex_name(name)} = {_elements_tex(list(d))}"


def _index_letters(index: Sequence[str]) -> list[str]:
    """Index letters for sets: the set's name in lower case (``P`` -> ``p``), made unique."""
    out: list[str] = []
    for s in index:
        letter = s.lower() if s.lower() != s else f"{s}_i"
        while letter in out:
            letter += "'"
        out.append(letter)
    return out


def _indexed(name: str, index: Sequence[str]) -> tuple[str, str, str]:
    """``x_{p}``, its subscript ``p`` and the quantifier ``p \\in P`` of a symbol indexed by ``index``."""
    if not index:
        return tex_name(name), "", ""
    letters = _index_letters(index)
    sub = ",".join(tex_name(x) for x in letters)
    over = ",\\, ".join(f"{tex_name(x)} \\in {tex_name(s)}" for x, s in zip(letters, index, strict=True))
    return f"{tex_name(name)}_{{{sub}}}", sub, over


def _values_preview(values: Any, depth: int) -> str:
    flat: list[str] = []

    def walk(v: Any, keys: list[str]) -> None:
        if len(flat) > MAX_VALUES_SHOWN:
            return
        if isinstance(v, Mapping):
            for k, sub in v.items():
                walk(sub, [*keys, str(k)])
        elif isinstance(v, list) and depth > len(keys):
            for i, sub in enumerate(v, start=1):
                walk(sub, [*keys, f"#{i}"])
        else:
            flat.append(f"{', '.join(keys)}: {fmt_num(v) if isinstance(v, (int, float)) else v}")

    walk(values, [])
    text = "; ".join(flat[:MAX_VALUES_SHOWN])
    return text + ("; ..." if len(flat) > MAX_VALUES_SHOWN else "")


def parameter_part(name: str, p: Parameter) -> Part:
    unit = f" {p.unit}" if p.unit else ""
    if p.value is not None:
        tex = f"{tex_name(name)} = {_tex_num(p.value)}"
        if p.unit:
            tex += f"\\ {tex_text(p.unit)}"
        return Part("", name, tex, f"{name} = {fmt_num(p.value)}{unit}", note=p.description or "")
    sym, _, over = _indexed(name, p.index)
    tex = f"{sym}" + (f",\\quad {over}" if over else "")
    if p.table is not None:
        note = f"from table {p.table}, column {p.column}"
    else:
        note = _values_preview(p.values, len(p.index))
    if p.unit:
        note += f" ({p.unit})"
    if p.description:
        note = f"{p.description}: {note}"
    return Part("", name, tex, f"{name}[{', '.join(p.index)}]", note=note)


_DOMAINS = {
    "continuous": "\\mathbb{R}",
    "integer": "\\mathbb{Z}",
    "binary": "\\{0, 1\\}",
    "boolean": "\\{" + tex_text("false") + ", " + tex_text("true") + "\\}",
}


def _bound_tex(b: float | str | None, letters: str) -> str:
    if isinstance(b, str):
        return f"{tex_name(b)}_{{{letters}}}" if letters else tex_name(b)
    return _tex_num(float(b)) if b is not None else ""


def variable_part(v: Variable) -> Part:
    # Each clause after the first is a group (no line break inside it: "start \in" never ends
    # a line) led by \allowbreak, so a narrow screen wraps the line between clauses.
    sym, letters, over = _indexed(v.name, v.index)
    if v.domain == "interval":
        dur = _bound_tex(v.duration, letters)
        tex = f"{sym}:\\ {tex_text('interval of length ')}{dur}"
        for label, window in (("start", v.start), ("end", v.end)):
            if window is not None:
                tex += (
                    f",\\allowbreak\\ {{\\operatorname{{{label}}} \\in "
                    f"[{_bound_tex(window[0], letters)}, {_bound_tex(window[1], letters)}]}}"
                )
    else:
        tex = f"{sym} \\in {_DOMAINS[v.domain]}"
        if v.domain not in ("binary", "boolean"):
            lo, hi = v.lower, v.upper
            if lo is not None and hi is not None:
                bounds = f"{_bound_tex(lo, letters)} \\le {sym} \\le {_bound_tex(hi, letters)}"
            elif lo is not None:
                bounds = f"{sym} \\ge {_bound_tex(lo, letters)}"
            elif hi is not None:
                bounds = f"{sym} \\le {_bound_tex(hi, letters)}"
            else:
                bounds = ""
            if bounds:
                tex += f",\\allowbreak\\ {{{bounds}}}"
    if over:
        tex += f",\\allowbreak\\quad {{{over}}}"
    note = v.description or ""
    if v.unit:
        note += f" ({v.unit})" if note else v.unit
    plain = f"{v.name}[{', '.join(v.index)}]" if v.index else v.name
    return Part(variable_ref(v.name), v.name, tex, f"{plain}: {v.domain}", source=v.source, note=note)


_SKIP_FIELDS = ("id", "template", "for_each", "source", "description")


def constraint_fields(c: Any) -> dict[str, str]:
    """The template's own fields of a constraint as editable text (lists as JSON)."""
    import json

    data = c.model_dump(by_alias=True, exclude_none=True, mode="json")
    out: dict[str, str] = {}
    for k, v in data.items():
        if k in _SKIP_FIELDS:
            continue
        out[k] = v if isinstance(v, str) else json.dumps(v)
    out["for_each"] = c.for_each or ""
    return out


def model_view(model: Model) -> ModelView:
    """The model's parts as LaTeX, each with its source quote and highlight key."""
    objective = None
    if model.objective is not None:
        o = model.objective
        sense = "\\max" if o.sense == "maximize" else "\\min"
        objective = Part(
            OBJECTIVE_REF,
            o.sense,
            f"{sense}\\; {expr_str_tex(o.expression)}",
            f"{o.sense} {o.expression}",
            source=o.source,
            note=o.description or "",
        )
    constraints = []
    for c in model.constraints:
        tex = constraint_tex(c)
        plain = getattr(c, "expression", None) or c.template
        quantifier = for_each_tex(c.for_each) if c.for_each else ""
        if c.for_each:
            plain += f"   for each {c.for_each}"
        constraints.append(
            Part(
                c.id,
                c.id,
                tex,
                plain,
                source=c.source,
                note=c.description or "",
                template=c.template,
                fields=constraint_fields(c),
                quantifier=quantifier,
            )
        )
    return ModelView(
        name=model.name,
        description=model.description,
        sets=[Part("", n, set_tex(n, d), n) for n, d in model.sets.items()],
        parameters=[parameter_part(n, p) for n, p in model.parameters.items()],
        variables=[variable_part(v) for v in model.variables],
        objective=objective,
        constraints=constraints,
    )


# ----------------------------------------------------------------------------- the plan


@dataclass
class PlanRow:
    label: str  # x[chair]
    variable: str
    index: str
    value: str  # formatted
    number: float
    unit: str = ""
    description: str = ""
    start: float | None = None  # interval variables
    end: float | None = None


_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\[(.*)\])?(?:\.(start|end|present))?$")


def plan_rows(model: Model, values: Mapping[str, float], tol: float = 1e-9) -> list[PlanRow]:
    """The decisions of a plan: non-zero values of the model's variables (every interval)."""
    variables = {v.name: v for v in model.variables}
    rows: list[PlanRow] = []
    intervals: dict[str, PlanRow] = {}
    for key, raw in values.items():
        m = _KEY.match(key)
        if m is None or m.group(1) not in variables:
            continue  # auxiliary columns of the backend
        v = variables[m.group(1)]
        number = float(raw)
        index = m.group(2) or ""
        label = f"{v.name}[{index}]" if m.group(2) is not None else v.name
        unit, description = v.unit or "", v.description or ""
        if v.domain == "interval":
            row = intervals.get(label)
            if row is None:
                row = intervals[label] = PlanRow(label, v.name, index, "", 0.0, unit, description)
                rows.append(row)
            if m.group(3) == "start":
                row.start = number
            elif m.group(3) == "end":
                row.end = number
            continue
        if m.group(3) is not None or abs(number) <= tol:
            continue
        rows.append(PlanRow(label, v.name, index, fmt_num(number), number, unit, description))
    for row in intervals.values():
        if row.start is not None and row.end is not None:
            row.value = f"{fmt_num(row.start)} \u2192 {fmt_num(row.end)}"
            row.number = row.end - row.start
    return rows


@dataclass
class ChartData:
    kind: str  # "gantt" | "bars"
    title: str
    items: list[dict[str, Any]]
    axis: str = ""  # the value axis's title: what the values measure, "" when unknown

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "title": self.title, "items": self.items, "axis": self.axis}


def chart_data(rows: Sequence[PlanRow]) -> ChartData | None:
    """A Gantt chart of the intervals when the plan has any, else bars of the quantities
    (when there are two to sixty of them: one bar says nothing a table does not)."""
    tasks = [r for r in rows if r.start is not None and r.end is not None]
    if tasks:
        items = [{"label": r.label, "group": r.variable, "start": r.start, "end": r.end} for r in tasks]
        units = {r.unit for r in tasks if r.unit}
        unit = units.pop() if len(units) == 1 else ""
        title = "Schedule" + (f" ({unit})" if unit else "")
        return ChartData("gantt", title, items, f"time ({unit})" if unit else "time")
    bars = [r for r in rows if r.start is None]
    if not 2 <= len(bars) <= MAX_BARS:
        return None
    axis = shared_measure(bars)
    return ChartData(
        "bars",
        f"Decisions: {axis}" if axis else "Decisions",
        [{"label": r.label, "group": r.variable, "value": r.number} for r in bars],
        axis,
    )


def shared_measure(rows: Sequence[PlanRow]) -> str:
    """What every row's value measures, when they all share it: the description and unit
    (``units produced (kg)``), the one alone, or "" when the rows differ."""
    descriptions = {r.description for r in rows}
    units = {r.unit for r in rows}
    description = descriptions.pop() if len(descriptions) == 1 else ""
    unit = units.pop() if len(units) == 1 else ""
    if description and unit:
        return f"{description} ({unit})"
    return description or unit


# ----------------------------------------------------------------------------- highlighting

_TRAILING = ".,;:!?"


def _find(text: str, quote: str) -> tuple[int, int] | None:
    words = quote.split()
    if not words:
        return None
    for ws in (words, [*words[:-1], words[-1].rstrip(_TRAILING)]):
        if not ws[-1]:
            ws = ws[:-1]
        if not ws:
            continue
        pattern = r"\s+".join(re.escape(w) for w in ws)
        m = re.search(pattern, text, flags=re.IGNORECASE)
        if m is not None:
            return m.start(), m.end()
    return None


def highlight(
    text: str, quotes: Iterable[tuple[str, str]], flagged: Iterable[str] = ()
) -> tuple[Markup, set[str]]:
    """``text`` as escaped HTML, each quote found in it (whitespace and case aside) wrapped in
    ``<mark data-refs="key ...">``; marks of a ``flagged`` key get the class ``conflict``.
    Also answers the keys whose quote was found."""
    flagged_keys = set(flagged)
    spans: list[tuple[int, int, str]] = []
    found: set[str] = set()
    for key, quote in quotes:
        hit = _find(text, quote)
        if hit is not None:
            spans.append((hit[0], hit[1], key))
            found.add(key)
    cuts = sorted({0, len(text), *(s for s, _, _ in spans), *(e for _, e, _ in spans)})
    out: list[str] = []
    for a, b in zip(cuts, cuts[1:], strict=False):
        piece = escape(text[a:b])
        keys = [k for s, e, k in spans if s <= a and b <= e]
        if not keys:
            out.append(str(piece))
            continue
        refs = " ".join(dict.fromkeys(keys))
        cls = "src conflict" if flagged_keys.intersection(keys) else "src"
        out.append(f'<mark class="{cls}" data-refs="{escape(refs)}">{piece}</mark>')
    return Markup("".join(out)), found


def conflict_keys(explanation: Mapping[str, Any] | None) -> set[str]:
    """The highlight keys of the parts an infeasibility conflict names."""
    if not explanation:
        return set()
    keys: set[str] = set()
    for item in explanation.get("conflict") or []:
        kind = item.get("kind")
        ident = str(item.get("id") or "")
        if kind == "constraint":
            keys.add(ident)
        elif ident:
            keys.add(variable_ref(ident))
    return keys


@dataclass
class ConflictGroup:
    """The members of a conflict that come from one constraint (or one variable's bounds)."""

    key: str
    kind: str
    source: str | None
    names: list[str] = field(default_factory=list)


def conflict_groups(explanation: Mapping[str, Any] | None) -> list[ConflictGroup]:
    """A conflict's members grouped by what they came from: ``demand[early]``, ``demand[day]``
    are one sentence, shown once with both instances."""
    groups: dict[str, ConflictGroup] = {}
    for item in (explanation or {}).get("conflict") or []:
        kind = str(item.get("kind") or "constraint")
        ident = str(item.get("id") or "")
        key = ident if kind == "constraint" else variable_ref(ident)
        group = groups.get(key)
        if group is None:
            group = groups[key] = ConflictGroup(key, kind, item.get("source"))
        group.names.append(str(item.get("name") or ident))
    return list(groups.values())
