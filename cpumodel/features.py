"""Architecture-rule engine over Arm's machine-readable feature model.

The data (``data/features.json``, made by ``tools/gen_features.py`` from Arm's AARCHMRS
``Features.json``; BSD-3-Clause, see ``data/ARM-LICENSE.txt``) holds every constraint Arm
states between architecture features (FEAT_*), architecture versions (v8Ap0..v9Ap6) and ID
register fields, each with its id (``ARCH-<owner>-<n>``), a rendering, a compact expression
and its clauses.

Variables are of two kinds:

* booleans: one per feature/version; True, False or unknown (None);
* fields: one per ID register field the constraints read. Each field's values are cut into
  *regions* that no comparison in the model tells apart, and a field's state is a bit mask
  of the regions it may still be in: one bit when its value is known, all bits when unknown.
  Fields that no model can give (external-debug, PMU, SPE and trace registers) were
  eliminated by the converter: each group of constraints over them is replaced by the
  equivalent condition on the other variables.

The engine takes an arm64 CPU for granted: FEAT_AA64EL1 holds unless ID_AA64PFR0_EL1.EL1 is
given. ``check`` works in three stages, each sound (it derives nothing that a satisfying
assignment of the unknowns could contradict), so a constraint is reported only when no
assignment of the unknowns satisfies all constraints:

1. stage 0, table-driven: the features that known fields define (``FEAT_X <-> expr`` under a
   guard that holds), chaining along two-literal clauses (bit sets of implied literals), and
   the constraints that stay open: those with a clause no known literal satisfies;
2. propagation over the open constraints in three-valued (Kleene) logic, with evaluators
   compiled on first need: a constraint that is false is a violation; one that would become
   false for one value of an unknown feature forces the other value; unknown fields lose the
   regions that would falsify it. Forcings to True come first, so that "FEAT_X needs v8Ap2,
   and v8Ap2 needs FEAT_Y" is reported at the rule whose feature is missing;
3. a small DPLL search over each group of constraints still undecided. A group with no
   solution is reported with a minimal subset of its constraints (a search that exceeds its
   budget reports nothing and counts in ``incomplete_searches``).
"""

from __future__ import annotations

import bisect
import difflib
import json
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

__all__ = ["Constraint", "FeatureError", "FeatureModel", "FieldChanges", "Violation"]

_DATA = Path(__file__).resolve().parent / "data" / "features.json"

FieldKey = tuple[str, str]
Tri = bool | None
Expr = Any  # compact expression from features.json: str | bool | list

_Eval = Callable[[list[Tri], list[int]], Tri]
_SEARCH_BUDGET = 20000  # DPLL nodes per group before giving up (then nothing is reported)


class FeatureError(ValueError):
    """A feature or version name that the model does not know or cannot act on."""


@dataclass(frozen=True)
class Constraint:
    id: str  # ARCH-<owner>-<n>, ARCH-GLOBAL-<n> or EXTRA-<feature>-<n>
    owner: str  # parameter whose constraint list holds it
    text: str  # human-readable rendering
    source: str | None = None  # set for the EXTRA-* rules that cpumodel adds


@dataclass(frozen=True)
class Violation:
    id: str  # rule id, e.g. ARCH-FEAT_SVE-2
    text: str  # the rendered constraint
    owner: str  # the feature/version whose constraint it is
    message: str  # plain-English explanation naming the fields and values
    fields: tuple[FieldKey, ...]  # (register, field) pairs involved, most relevant first

    @property
    def rule(self) -> str:
        return self.id

    @property
    def constraint(self) -> str:
        return self.text


class FieldChanges(dict[FieldKey, int]):
    """Field values to write, as returned by ``force``/``version_floor``; ``reasons`` says why."""

    def __init__(self) -> None:
        super().__init__()
        self.reasons: dict[FieldKey, str] = {}

    def copy(self) -> FieldChanges:
        out = FieldChanges()
        out.update(self)
        out.reasons.update(self.reasons)
        return out


@dataclass
class _Def:
    feature: int
    rule: int  # constraint index
    kind: str  # "iff" | "requires"
    guard: Expr | None
    expr: Expr
    field_only: bool
    fields_mapped: bool


class _State:
    """Per-check working state: feature values, field region masks and their reasons."""

    __slots__ = ("asserted", "b", "d", "reason", "values")

    def __init__(self, b: list[Tri], d: list[int], values: dict[int, int], asserted: set[int]) -> None:
        self.b = b
        self.d = d
        self.values = values  # field index -> known value
        self.asserted = asserted
        self.reason: dict[int, int] = {}  # feature index -> constraint index that forced it


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


class FeatureModel:
    _instance: ClassVar[FeatureModel | None] = None

    # -- loading ----------------------------------------------------------------------
    @classmethod
    def load(cls) -> FeatureModel:
        """The model from the shipped data (parsed once, then cached)."""
        if cls._instance is None:
            cls._instance = cls(json.loads(_DATA.read_bytes()))
        return cls._instance

    def __init__(self, data: dict[str, Any]) -> None:
        t0 = time.perf_counter()
        src = data["_source"]
        self.spec_version = f"{src['architecture']} build {src['build']}"
        self.source: dict[str, Any] = src
        self.unmapped: list[str] = list(data["unmapped"])
        self._names: list[str] = list(data["parameters"]) + list(data.get("undeclared", []))
        self._fidx = {n: i for i, n in enumerate(self._names)}
        self._versions: list[str] = list(data["versions"])
        nf = len(self._names)

        # fields and their regions
        self._fkeys: list[FieldKey] = []
        self._fwidth: list[int] = []
        self._fmapped: list[bool] = []
        self._flsb: list[int | None] = []
        for reg, fld, width, mapped, lsb in data["fields"]:
            self._fkeys.append((reg, fld))
            self._fwidth.append(width)
            self._fmapped.append(mapped)
            self._flsb.append(lsb)
        self._kidx = {k: i for i, k in enumerate(self._fkeys)}
        self._aa64el1 = self._fidx.get("FEAT_AA64EL1", -1)
        self._pfr0_el1 = self._kidx.get(("ID_AA64PFR0_EL1", "EL1"), -1)
        self._atoms: list[tuple[int, str, str, Any]] = [(a[0], a[1], a[2], a[3]) for a in data["atoms"]]
        cuts: list[set[int]] = [{0} for _ in self._fkeys]
        for k, fn, _op, val in self._atoms:
            w = self._fwidth[k]
            size = 1 << w
            consts = val if isinstance(val, list) else [val]
            for c in consts:
                pts = {c, c + 1}
                if fn == "SInt":
                    pts = {p % size for p in pts} | {size >> 1}
                cuts[k].update(p for p in pts if 0 < p < size)
        self._cuts: list[list[int]] = [sorted(c) for c in cuts]
        self._full: list[int] = [(1 << len(c)) - 1 for c in self._cuts]
        self._signed = {a[0] for a in self._atoms if a[1] == "SInt"}
        self._amask: list[int] = []
        for k, fn, op, val in self._atoms:
            m = 0
            for r, lo in enumerate(self._cuts[k]):
                if self._atom_value(k, fn, op, val, lo):
                    m |= 1 << r
            self._amask.append(m)

        # constraints: Arm's (and the EXTRA-* ones), then one derived constraint per group of
        # constraints linked by fields that are never known, which replaces that group
        self._cons: list[Constraint] = []
        self._cexpr: list[Expr] = []
        self._ccnf: list[list[list[int]] | None] = []
        for c in data["constraints"]:
            self._cons.append(Constraint(c["id"], c["owner"], c["text"], c.get("source")))
            self._cexpr.append(c["expr"])
            self._ccnf.append(c["cnf"])
        self._cid = {c.id: i for i, c in enumerate(self._cons)}
        self._derived_of: dict[int, list[int]] = {}
        gone: set[int] = set()
        for e in data["eliminated"]:
            of = [self._cid[x] for x in e["of"]]
            gone.update(of)
            if e["expr"] is not True:
                self._derived_of[len(self._cexpr)] = of
                self._cexpr.append(e["expr"])
                self._ccnf.append(e["cnf"])
        self._live = [i for i in range(len(self._cexpr)) if i not in gone]
        self._cfeats: list[tuple[int, ...]] = []
        self._cfields: list[tuple[int, ...]] = []
        for e in self._cexpr:
            fs: list[int] = []
            ks: list[int] = []
            self._collect(e, fs, ks)
            self._cfeats.append(tuple(dict.fromkeys(fs)))
            self._cfields.append(tuple(dict.fromkeys(ks)))

        # definitions
        self._defs: list[list[_Def]] = [[] for _ in range(nf)]
        for name, defs in data["definitions"].items():
            fi = self._fidx[name]
            for d in defs:
                self._defs[fi].append(_Def(fi, self._cid[d["rule"]], d["kind"], d["guard"], d["expr"],
                                           d["field_only"], d["fields_mapped"]))
        self._sat_cache: dict[tuple[Any, ...], bool] = {}
        self._evals: list[_Eval | None] = [None] * len(self._cexpr)
        self._prepared = False
        self._by_rule: dict[int, list[tuple[int, _Def]]] | None = None
        self._floors: dict[str, FieldChanges] = {}
        self.load_seconds = time.perf_counter() - t0
        self.compile_seconds = 0.0  # spent compiling evaluators so far (lazily, as needed)
        self.prepare_seconds = 0.0  # spent building the stage-0 tables (first check)

    def _collect(self, e: Expr, fs: list[int], ks: list[int]) -> None:
        if isinstance(e, str):
            fs.append(self._fidx[e])
        elif isinstance(e, list):
            if e[0] == "a":
                ks.append(self._atoms[e[1]][0])
            else:
                for x in e[1:]:
                    self._collect(x, fs, ks)

    def _atom_value(self, k: int, fn: str, op: str, val: Any, v: int) -> bool:
        if fn == "SInt":
            w = self._fwidth[k]
            if v >= 1 << (w - 1):
                v -= 1 << w
        if op == "in":
            return v in val
        if op == ">=":
            return v >= val
        if op == ">":
            return v > val
        if op == "<=":
            return v <= val
        if op == "<":
            return v < val
        if op == "==":
            return v == val
        if op == "!=":
            return v != val
        raise ValueError(op)

    # -- code generation (lazy: first use) --------------------------------------------
    def _dt(self, e: Expr, pos: bool, fv: Callable[[int], str], dv: Callable[[int], str]) -> str:
        """Python source that is True only when ``e`` is definitely ``pos``."""
        if isinstance(e, bool):
            return "True" if e == pos else "False"
        if isinstance(e, str):
            return f"{fv(self._fidx[e])} is {pos}"
        op = e[0]
        if op == "a":
            k = self._atoms[e[1]][0]
            m = self._amask[e[1]]
            if not pos:
                m = self._full[k] & ~m
            other = self._full[k] & ~m
            return "True" if other == 0 else ("False" if m == 0 else f"not ({dv(k)} & {other})")
        if op == "!":
            return self._dt(e[1], not pos, fv, dv)
        if op in ("&&", "||"):
            joiner = " and " if (op == "&&") == pos else " or "
            return "(" + joiner.join(self._dt(x, pos, fv, dv) for x in e[1:]) + ")"
        a, b = e[1], e[2]
        if op == "-->":
            if pos:
                return f"({self._dt(a, False, fv, dv)} or {self._dt(b, True, fv, dv)})"
            return f"({self._dt(a, True, fv, dv)} and {self._dt(b, False, fv, dv)})"
        if op == "<->":
            ta, fa = self._dt(a, True, fv, dv), self._dt(a, False, fv, dv)
            tb, fb = self._dt(b, True, fv, dv), self._dt(b, False, fv, dv)
            if pos:
                return f"(({ta} and {tb}) or ({fa} and {fb}))"
            return f"(({ta} and {fb}) or ({fa} and {tb}))"
        raise ValueError(f"bad expression {e!r}")

    def _def_order(self) -> list[_Def]:
        """Definitions with usable shape, each after the definitions of the features it reads."""
        order: list[_Def] = []
        state: dict[int, int] = {}  # 1 visiting, 2 done

        def visit(fi: int) -> None:
            if state.get(fi):
                return
            state[fi] = 1
            for d in self._defs[fi]:
                if d.kind != "iff":
                    continue
                deps: list[int] = []
                self._collect(d.guard, deps, [])
                self._collect(d.expr, deps, [])
                for x in deps:
                    visit(x)
            state[fi] = 2
            order.extend(d for d in self._defs[fi] if d.kind == "iff")

        for fi in range(len(self._names)):
            visit(fi)
        return order

    def _evals_source(self, cis: list[int]) -> str:
        def lf(i: int) -> str:
            return f"b[{i}]"

        def ld(k: int) -> str:
            return f"d[{k}]"

        lines = ["EVALS = ("]
        for ci in cis:
            e = self._cexpr[ci]
            lines.append(f"    lambda b, d: True if {self._dt(e, True, lf, ld)} else "
                         f"(False if {self._dt(e, False, lf, ld)} else None),")
        lines.append(")")
        return "\n".join(lines)

    def _need_evals(self, cis: Iterable[int]) -> None:
        """Compile the three-valued evaluators of these constraints (once each, on first need)."""
        ev = self._evals
        missing = [c for c in dict.fromkeys(cis) if ev[c] is None]
        if missing:
            t0 = time.perf_counter()
            ns: dict[str, Any] = {}
            exec(compile(self._evals_source(missing), "<cpumodel.features generated>", "exec"), ns)
            for ci, f in zip(missing, ns["EVALS"], strict=True):
                ev[ci] = f
            self.compile_seconds += time.perf_counter() - t0

    def _prepare(self) -> None:
        """Build the stage-0 tables (on first use, so that ``load`` stays cheap)."""
        t0 = time.perf_counter()
        nf = len(self._names)
        # definitions, in dependency order; the common shape (guard: plain features, body:
        # one field comparison) runs from a table, the rest through evaluators
        steps: list[tuple[Any, ...]] = []
        for d in self._def_order():
            if not d.fields_mapped:
                continue
            groups = self._guard_groups(d.guard)
            fs: list[int] = []
            ks: list[int] = []
            self._collect(d.expr, fs, ks)
            if groups is not None and not fs and len(set(ks)) == 1:
                k = ks[0]
                m = 0
                for r in range(len(self._cuts[k])):
                    if self._eval_fixed(d.expr, {k: 1 << r}):
                        m |= 1 << r
                steps.append((0, d.feature, groups, k, m, self._full[k] & ~m))
            else:
                steps.append((1, d.feature, d.guard, d.expr))
        # the other shapes get a compiled three-valued evaluator of "guard and then body"
        odd = [i for i, st in enumerate(steps) if st[0] == 1]
        if odd:
            def lf(i: int) -> str:
                return f"b[{i}]"

            def ld(k: int) -> str:
                return f"d[{k}]"

            src = ["STEPS = ("]
            for i in odd:
                _, _, g, e = steps[i]
                gt = "True" if g is None else self._dt(g, True, lf, ld)
                src.append(f"    lambda b, d: (True if {self._dt(e, True, lf, ld)} else (False if "
                           f"{self._dt(e, False, lf, ld)} else None)) if {gt} else None,")
            src.append(")")
            ns: dict[str, Any] = {}
            exec(compile("\n".join(src), "<cpumodel.features generated>", "exec"), ns)
            for i, fn in zip(odd, ns["STEPS"], strict=True):
                steps[i] = (1, steps[i][1], fn)
        self._def_steps = steps
        # clauses of the live constraints: bit j of OCC[lit] says clause j holds when lit does
        nlit = 2 * (nf + len(self._atoms))
        occ = [0] * nlit
        owner: list[int] = []
        always: list[int] = []
        binary: list[tuple[int, int]] = []
        for ci in self._live:
            clauses = self._ccnf[ci]
            if clauses is None:
                always.append(ci)
                continue
            if not clauses:
                continue
            for cl in clauses:
                bit = 1 << len(owner)
                owner.append(ci)
                lits = [2 * (abs(x) - 1) + (x < 0) for x in cl]
                for li in lits:
                    occ[li] |= bit
                if len(lits) == 2 and all(li < 2 * nf for li in lits):
                    binary.append((lits[0], lits[1]))
        self._occ = occ
        self._clause_owner = owner
        self._all_clauses = (1 << len(owner)) - 1
        self._always = always
        # per field and region: the clauses that the field's atoms satisfy there
        field_occ: list[list[int]] = [[0] * len(c) for c in self._cuts]
        for ai, (k, _fn, _op, _val) in enumerate(self._atoms):
            pos, neg = occ[2 * (nf + ai)], occ[2 * (nf + ai) + 1]
            for r in range(len(self._cuts[k])):
                field_occ[k][r] |= pos if self._amask[ai] >> r & 1 else neg
        self._field_occ = field_occ
        # region of each value, for fields up to 8 bits wide
        self._lut = [[bisect.bisect_right(c, v) - 1 for v in range(1 << w)] if w <= 8 else []
                     for c, w in zip(self._cuts, self._fwidth, strict=True)]
        # two-literal clauses over features: implication closure of every literal
        succ: list[list[int]] = [[] for _ in range(2 * nf)]
        for x, y in binary:
            succ[x ^ 1].append(y)  # not x --> y
            succ[y ^ 1].append(x)
        self._closure = self._close(succ)
        self._even = int("01" * nf, 2) if nf else 0  # bits 0, 2, 4, ...: positive literals
        self.prepare_seconds = time.perf_counter() - t0

    def _guard_groups(self, g: Expr | None) -> tuple[tuple[int, ...], ...] | None:
        """A guard that is a conjunction of (disjunctions of) plain features, as index groups."""
        if g is None:
            return ()
        parts = g[1:] if isinstance(g, list) and g[0] == "&&" else [g]
        out = []
        for x in parts:
            if isinstance(x, str):
                out.append((self._fidx[x],))
            elif isinstance(x, list) and x[0] == "||" and all(isinstance(y, str) for y in x[1:]):
                out.append(tuple(self._fidx[y] for y in x[1:]))
            else:
                return None
        return tuple(out)

    @staticmethod
    def _close(succ: list[list[int]]) -> list[int]:
        """Bit set of literals reachable from each literal (itself included); Tarjan SCCs."""
        n = len(succ)
        index = [-1] * n
        low = [0] * n
        on = [False] * n
        stack: list[int] = []
        comp = [-1] * n
        comps: list[list[int]] = []
        counter = 0
        for root in range(n):
            if index[root] >= 0:
                continue
            work = [(root, 0)]
            while work:
                v, i = work.pop()
                if i == 0:
                    index[v] = low[v] = counter
                    counter += 1
                    stack.append(v)
                    on[v] = True
                recurse = False
                for j in range(i, len(succ[v])):
                    w = succ[v][j]
                    if index[w] < 0:
                        work.append((v, j + 1))
                        work.append((w, 0))
                        recurse = True
                        break
                    if on[w]:
                        low[v] = min(low[v], index[w])
                if recurse:
                    continue
                if low[v] == index[v]:
                    members = []
                    while True:
                        w = stack.pop()
                        on[w] = False
                        comp[w] = len(comps)
                        members.append(w)
                        if w == v:
                            break
                    comps.append(members)
                if work:
                    u = work[-1][0]
                    low[u] = min(low[u], low[v])
        # Tarjan emits components in reverse topological order: successors first
        cmask = [0] * len(comps)
        for ci, members in enumerate(comps):
            m = 0
            for v in members:
                m |= 1 << v
            for v in members:
                for w in succ[v]:
                    if comp[w] != ci:
                        m |= cmask[comp[w]]
            cmask[ci] = m
        return [cmask[comp[v]] for v in range(n)]

    # -- public helpers -----------------------------------------------------------------
    def constraints(self) -> list[Constraint]:
        return list(self._cons)

    def features(self) -> list[str]:
        """All FEAT_* names the model knows."""
        return [n for n in self._names if n.startswith("FEAT_")]

    def versions(self) -> list[str]:
        """Architecture versions in Arm's naming, v8Ap0..v8Ap9 then v9Ap0..v9Ap6."""
        return list(self._versions)

    def version_name(self, text: str) -> str:
        """Arm's name for a version given as ``v8Ap2``, ``armv8.2-a``, ``ARMv8.2``, ``v9.1``, ``armv9-a``..."""
        t = text.strip()
        if t in self._versions:
            return t
        m = re.fullmatch(r"(?:arm)?v?(\d+)(?:\.(\d+)|ap(\d+))?(?:-?a)?", t.lower())
        if m:
            minor = m.group(2) or m.group(3) or "0"
            name = f"v{int(m.group(1))}Ap{int(minor)}"
            if name in self._versions:
                return name
        raise FeatureError(self._unknown("architecture version", text, self._versions))

    def _unknown(self, what: str, name: str, pool: Iterable[str]) -> str:
        pool = list(pool)
        by_norm = {_norm(p): p for p in pool}
        close = difflib.get_close_matches(_norm(name), list(by_norm), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(by_norm[c] for c in close)}?" if close else ""
        return f"unknown {what} {name!r}{hint}"

    def _feature_index(self, name: str) -> int:
        if name in self._fidx:
            return self._fidx[name]
        try:
            return self._fidx[self.version_name(name)]
        except FeatureError:
            pass
        for cand in (name.upper(), "FEAT_" + name):
            for n, i in self._fidx.items():
                if n.upper() == cand.upper():
                    return i
        raise FeatureError(self._unknown("feature", name, self._names))

    # -- the core: stage 0 + propagation ------------------------------------------------
    def _start(self, fields: Mapping[FieldKey, int], assert_true: Iterable[str],
               assert_false: Iterable[str]) -> tuple[_State, list[int]]:
        """Stage 0: field regions, defined features, implication chaining, and the constraints
        that the known values do not yet satisfy (clause by clause, with bit sets)."""
        if not self._prepared:
            self._prepare()
            self._prepared = True
        nf = len(self._names)
        d = list(self._full)
        values: dict[int, int] = {}
        kidx = self._kidx
        cuts = self._cuts
        lut = self._lut
        field_occ = self._field_occ
        sat = 0
        for key, v in fields.items():
            k = kidx.get(key)
            if k is None:
                continue
            tbl = lut[k]
            if tbl and 0 <= v < len(tbl):
                r = tbl[v]
            elif 0 <= v < 1 << self._fwidth[k] and not tbl:
                r = bisect.bisect_right(cuts[k], v) - 1
            else:
                raise ValueError(f"{key[0]}.{key[1]} = {v:#x} does not fit in {self._fwidth[k]} bits")
            values[k] = v
            d[k] = 1 << r
            sat |= field_occ[k][r]
        b: list[Tri] = [None] * nf
        asserted: set[int] = set()
        for names, val in ((assert_true, True), (assert_false, False)):
            for n in names:
                i = self._feature_index(n)
                if b[i] is not None and b[i] != val:
                    raise FeatureError(f"{self._names[i]} asserted both true and false")
                b[i] = val
                asserted.add(i)
        # an arm64 CPU: AArch64 at EL1 unless ID_AA64PFR0_EL1.EL1 is known and says otherwise
        aa64 = self._aa64el1
        if aa64 >= 0 and b[aa64] is None and self._pfr0_el1 not in values:
            b[aa64] = True
        # features that known fields define
        for step in self._def_steps:
            fi = step[1]
            if b[fi] is not None:
                continue
            if step[0] == 0:
                _, _, guard, k, m, nm = step
                for group in guard:
                    for g in group:
                        if b[g] is True:
                            break
                    else:
                        break
                else:
                    dk = d[k]
                    if not dk & nm:
                        b[fi] = True
                    elif not dk & m:
                        b[fi] = False
            else:
                b[fi] = step[2](b, d)
        # chaining along two-literal clauses; a literal reached together with its negation
        # (the model is inconsistent there) is left for propagation to sort out
        closure = self._closure
        occ = self._occ
        known = 0
        reach = 0
        for li, val in enumerate(b):
            if val is not None:
                li = 2 * li + (val is False)
                known |= 1 << li
                reach |= closure[li]
                sat |= occ[li]
        both = reach | known
        clash = both & self._even & (both >> 1)
        new = reach & ~known
        if clash:
            # what follows from either side of a contradiction is not trusted here
            x = clash
            while x:
                low = x & -x
                li = low.bit_length() - 1
                new &= ~(closure[li] | closure[li + 1] | low | low << 1)
                x ^= low
        # constraints with a clause that no known literal satisfies stay pending
        while new:
            low = new & -new
            li = low.bit_length() - 1
            b[li >> 1] = not li & 1
            sat |= occ[li]
            new ^= low
        open_ = self._all_clauses & ~sat
        owner = self._clause_owner
        pend = set(self._always)
        while open_:
            low = open_ & -open_
            pend.add(owner[low.bit_length() - 1])
            open_ ^= low
        st = _State(b, d, values, asserted)
        out = sorted(pend)
        self._need_evals(out)
        return st, out

    def _kdom(self, e: Expr, b: list[Tri], d: list[int]) -> Tri:
        """Three-valued value of ``e`` from feature values ``b`` and field regions ``d``."""
        if isinstance(e, bool):
            return e
        if isinstance(e, str):
            return b[self._fidx[e]]
        op = e[0]
        if op == "a":
            k = self._atoms[e[1]][0]
            m = self._amask[e[1]]
            dk = d[k]
            return True if not dk & ~m else (False if not dk & m else None)
        if op == "!":
            v = self._kdom(e[1], b, d)
            return None if v is None else not v
        vals = [self._kdom(x, b, d) for x in e[1:]]
        if op == "&&":
            return False if False in vals else (None if None in vals else True)
        if op == "||":
            return True if True in vals else (None if None in vals else False)
        p, q = vals
        if op == "-->":
            return True if (p is False or q is True) else (False if (p is True and q is False) else None)
        return None if (p is None or q is None) else p == q

    def _propagate(self, st: _State, pend: Iterable[int], record: bool,
                   violated: list[int] | None) -> list[int] | None:
        """Propagate over ``pend``: violated constraints, forced features, narrowed fields.

        Forcings to True are applied before anything else (a constraint that could force a
        feature False or narrow a field waits in a second queue until the first is empty).
        Returns the constraints still undecided, or None on a conflict when ``violated`` is
        None (search mode); otherwise conflicts are appended to ``violated``.
        """
        ev = cast(list[_Eval], self._evals)
        cfeats, cfields = self._cfeats, self._cfields
        b, d = st.b, st.d
        active = set(pend)
        watch_f: dict[int, list[int]] = {}
        watch_d: dict[int, list[int]] = {}
        for c in sorted(active):
            for v in cfeats[c]:
                if b[v] is None:
                    watch_f.setdefault(v, []).append(c)
            for k in cfields[c]:
                if d[k] & (d[k] - 1):
                    watch_d.setdefault(k, []).append(c)
        queue = deque(sorted(active))
        queued = set(queue)
        later: deque[int] = deque()
        in_later: set[int] = set()
        while True:
            if queue:
                c = queue.popleft()
                queued.discard(c)
                full = False
            elif later:
                c = later.popleft()
                in_later.discard(c)
                full = True
            else:
                break
            if c not in active:
                continue
            r = ev[c](b, d)
            if r is not None:
                active.discard(c)
                if r is False:
                    if violated is None:
                        return None
                    violated.append(c)
                continue
            wake: list[int] = []
            dead = False
            defer = False
            for v in cfeats[c]:
                if b[v] is not None:
                    continue
                b[v] = True
                t = ev[c](b, d)
                b[v] = False
                f = ev[c](b, d)
                b[v] = None
                if t is False:
                    if f is False:
                        dead = True
                        break
                    if not full:
                        defer = True
                        continue
                    b[v] = False
                elif f is False:
                    b[v] = True
                else:
                    continue
                if record:
                    st.reason[v] = c
                wake.extend(watch_f.get(v, ()))
            if not dead:
                for k in cfields[c]:
                    dk = d[k]
                    if not dk & (dk - 1):
                        continue
                    keep = 0
                    bit = 1
                    while bit <= dk:
                        if dk & bit:
                            d[k] = bit
                            if ev[c](b, d) is not False:
                                keep |= bit
                        bit <<= 1
                    d[k] = dk
                    if keep == dk:
                        continue
                    if keep == 0:
                        dead = True
                        break
                    if not full:
                        defer = True
                        continue
                    d[k] = keep
                    wake.extend(watch_d.get(k, ()))
            if dead:
                if violated is None:
                    return None
                violated.append(c)
                active.discard(c)
                continue
            if defer and c not in in_later:
                later.append(c)
                in_later.add(c)
            for w in wake:
                if w in active and w not in queued:
                    queue.append(w)
                    queued.add(w)
        return sorted(active)

    # -- search -------------------------------------------------------------------------
    def _groups(self, st: _State, cs: list[int]) -> list[list[int]]:
        """Split undecided constraints into groups that share no unknown variable."""
        parent: dict[Any, Any] = {}

        def find(x: Any) -> Any:
            while parent.setdefault(x, x) != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for c in cs:
            root = find(("c", c))
            for v in self._cfeats[c]:
                if st.b[v] is None:
                    parent[find(("f", v))] = root
            for k in self._cfields[c]:
                if st.d[k] & (st.d[k] - 1):
                    parent[find(("d", k))] = root
        groups: dict[Any, list[int]] = {}
        for c in cs:
            groups.setdefault(find(("c", c)), []).append(c)
        return sorted(groups.values(), key=lambda g: g[0])

    def _sat(self, st: _State, cs: list[int], budget: list[int]) -> bool:
        budget[0] -= 1
        if budget[0] < 0:
            raise _Budget
        work = _State(list(st.b), list(st.d), st.values, st.asserted)
        rest = self._propagate(work, cs, record=False, violated=None)
        if rest is None:
            return False
        if not rest:
            return True
        c = rest[0]
        for v in self._cfeats[c]:
            if work.b[v] is None:
                for val in (False, True):
                    work.b[v] = val
                    if self._sat(work, rest, budget):
                        return True
                work.b[v] = None
                return False
        for k in self._cfields[c]:
            dk = work.d[k]
            if dk & (dk - 1):
                bit = 1
                while bit <= dk:
                    if dk & bit:
                        work.d[k] = bit
                        if self._sat(work, rest, budget):
                            return True
                    bit <<= 1
                work.d[k] = dk
                return False
        return True  # undecided yet nothing unknown: cannot happen with Kleene-complete atoms

    def _group_sat(self, st: _State, g: list[int]) -> bool:
        """Whether some assignment of the unknowns satisfies group ``g`` (memoised: the answer
        depends only on the group and the current values of the variables it mentions)."""
        fs = sorted({v for c in g for v in self._cfeats[c]})
        ks = sorted({k for c in g for k in self._cfields[c]})
        key = (tuple(g), tuple(st.b[v] for v in fs), tuple(st.d[k] for k in ks))
        hit = self._sat_cache.get(key)
        if hit is None:
            hit = self._sat(st, g, [_SEARCH_BUDGET])
            if len(self._sat_cache) > 8192:
                self._sat_cache.clear()
            self._sat_cache[key] = hit
        return hit

    def _core(self, st: _State, cs: list[int]) -> list[int]:
        """A minimal unsatisfiable subset of ``cs`` (derived constraints replaced by their originals)."""
        orig: list[int] = []
        for c in cs:
            orig.extend(self._derived_of.get(c, [c]))
        orig = sorted(set(orig))
        self._need_evals(orig)
        core = list(orig)
        for c in orig:
            trial = [x for x in core if x != c]
            if trial and not self._sat(st, trial, [_SEARCH_BUDGET]):
                core = trial
        return core

    def _search(self, st: _State, rest: list[int]) -> list[list[int]]:
        """Groups of undecided constraints that no assignment satisfies, each reduced to a minimal set."""
        bad: list[list[int]] = []
        for g in self._groups(st, rest):
            try:
                if not self._group_sat(st, g):
                    bad.append(self._core(st, g))
            except _Budget:
                self.incomplete_searches += 1
        return bad

    incomplete_searches = 0  # groups abandoned at the search budget (never reported)

    # -- public: check --------------------------------------------------------------------
    def check(self, fields: Mapping[FieldKey, int], assert_true: Iterable[str] = (),
              assert_false: Iterable[str] = ()) -> list[Violation]:
        """Violations of Arm's constraints by the known field values (and asserted features).

        ``fields`` maps (register, field) to the unsigned field value for every known field;
        absent fields are unknown. Features or versions in ``assert_true``/``assert_false`` are
        taken as given (e.g. the profile's ``arch:``).
        """
        st, pend = self._start(fields, assert_true, assert_false)
        violated: list[int] = []
        rest = self._propagate(st, pend, record=True, violated=violated)
        out: list[Violation] = []
        for c in violated:
            if c in self._derived_of:
                try:
                    out.append(self._joint_violation(self._core(st, [c]), st))
                except _Budget:
                    out.append(self._joint_violation(self._derived_of[c], st))
            else:
                out.append(self._violation(c, st))
        if rest:
            for core in self._search(st, rest):
                out.append(self._joint_violation(core, st))
        return out

    def features_of(self, fields: Mapping[FieldKey, int], assert_true: Iterable[str] = (),
                    assert_false: Iterable[str] = ()) -> dict[str, Tri]:
        """Every FEAT_* with the value the known fields imply (None: not determined)."""
        st, pend = self._start(fields, assert_true, assert_false)
        self._propagate(st, pend, record=False, violated=[])
        return {n: st.b[i] for i, n in enumerate(self._names) if n.startswith("FEAT_")}

    def highest_version(self, fields: Mapping[FieldKey, int]) -> str | None:
        """The highest version whose assertion adds no violation to those the model already has.

        v8Ap(n+1) needs v8Ap(n) and v9Ap(n+1) needs v9Ap(n), so each series is scanned upwards
        until its first failure; a passing v9 version ranks above every v8 version.
        """
        base = {v.id for v in self.check(fields)}
        best: str | None = None
        for series in ("v8", "v9"):
            for v in (x for x in self._versions if x.startswith(series + "A")):
                if {x.id for x in self.check(fields, assert_true=[v])} <= base:
                    best = v
                else:
                    break
        return best

    # -- explanations ---------------------------------------------------------------------
    def _fmt_field(self, k: int, st: _State) -> str:
        reg, fld = self._fkeys[k]
        if k in st.values:
            v = st.values[k]
            s = f"{reg}.{fld}={v}"
            if self._signed_atoms(k) and v >= 1 << (self._fwidth[k] - 1):
                s += f" (signed {v - (1 << self._fwidth[k])})"
            return s
        return f"{reg}.{fld} (unknown)"

    def _signed_atoms(self, k: int) -> bool:
        return k in self._signed

    def _short(self, e: Expr, qualified: bool = False) -> str:
        """Rendering without UInt(), with bare field names unless ``qualified`` (REG.FIELD)."""
        if isinstance(e, bool):
            return "TRUE" if e else "FALSE"
        if isinstance(e, str):
            return e
        op = e[0]
        if op == "a":
            k, fn, aop, val = self._atoms[e[1]]
            name = ".".join(self._fkeys[k]) if qualified else self._fkeys[k][1]
            ref = name if fn == "UInt" else f"SInt({name})"
            if aop == "in":
                return f"{ref} in {{{', '.join(map(str, val))}}}"
            return f"{ref} {aop} {val}"
        if op == "!":
            return "!" + self._short_paren(e[1], qualified)
        if op in ("&&", "||"):
            return f" {op} ".join(self._short_paren(x, qualified) for x in e[1:])
        return f"{self._short_paren(e[1], qualified)} {op} {self._short_paren(e[2], qualified)}"

    def _short_paren(self, e: Expr, qualified: bool = False) -> str:
        s = self._short(e, qualified)
        return f"({s})" if isinstance(e, list) and e[0] not in ("a", "!") else s

    def _kval(self, e: Expr, st: _State) -> Tri:
        return self._kdom(e, st.b, st.d)

    def _def_for(self, fi: int, st: _State) -> _Def | None:
        """The definition that gives feature ``fi`` its current value from fields, if any."""
        val = st.b[fi]
        for d in self._defs[fi]:
            if d.kind == "iff" and (d.guard is None or self._kval(d.guard, st) is True) \
                    and self._kval(d.expr, st) is val:
                return d
        return None

    def _why(self, fi: int, st: _State, keys: list[int], depth: int = 0) -> str:
        """Evidence for a feature's current value, e.g. 'ID_AA64PFR0_EL1.SVE=1'."""
        name = self._names[fi]
        val = st.b[fi]
        if fi in st.asserted:
            return f"{name} is asserted {'true' if val else 'false'}"
        if fi == self._aa64el1 and self._pfr0_el1 not in st.values:
            return f"{name} holds (an arm64 CPU; ID_AA64PFR0_EL1.EL1 not given)"
        c = st.reason.get(fi)
        if c is not None:
            return self._why_forced(fi, c, st, keys, depth)
        if c is None:
            d = self._def_for(fi, st)
            if d is None:
                c = self._implied_by(fi, st)
                if c is not None:
                    return self._why_forced(fi, c, st, keys, depth)
        d = self._def_for(fi, st)
        if d is not None:
            ks: list[int] = []
            self._collect(d.expr, [], ks)
            ks = [k for k in dict.fromkeys(ks) if k in st.values]
            keys.extend(ks)
            ev = ", ".join(self._fmt_field(k, st) for k in ks) or self._cons[d.rule].id
            if val:
                return ev
            return f"{ev} ({name} needs {self._short(d.expr)})"
        return f"{name} is {'true' if val else 'false'}"

    def _why_forced(self, fi: int, c: int, st: _State, keys: list[int], depth: int) -> str:
        val = st.b[fi]
        con = self._cons[c] if c < len(self._cons) else None
        rule = f"{con.id} ({con.text})" if con else "the derived rule " + self._short(self._cexpr[c])
        head = f"{self._names[fi]} is {'implied' if val else 'ruled out'} by {rule}"
        if depth >= 3:
            return head
        parts = []
        for v in self._cfeats[c]:
            if v != fi and st.b[v] is not None:
                parts.append(self._why(v, st, keys, depth + 1))
        for k in self._cfields[c]:
            if k in st.values:
                keys.append(k)
                parts.append(self._fmt_field(k, st))
        return head + (", where " + "; ".join(dict.fromkeys(parts)) if parts else "")

    def _implied_by(self, fi: int, st: _State) -> int | None:
        """A constraint that forces feature ``fi`` to its current value (for explanations of
        values set by stage-0 chaining, which records no reasons)."""
        val = st.b[fi]
        for c in self._live:
            if fi not in self._cfeats[c] or c in self._derived_of:
                continue
            st.b[fi] = not val
            r = self._kval(self._cexpr[c], st)
            st.b[fi] = val
            if r is False:
                return c
        return None

    def _facts(self, e: Expr, want: bool, st: _State, keys: list[int], feats: list[int]) -> list[str]:
        """Evidence that ``e`` has the (known) value ``want``, citing as little as needed."""
        if isinstance(e, bool):
            return []
        if isinstance(e, str):
            fi = self._fidx[e]
            feats.append(fi)
            return [self._why(fi, st, keys)]
        op = e[0]
        if op == "a":
            k = self._atoms[e[1]][0]
            keys.append(k)
            if k not in st.values:
                return [f"{'.'.join(self._fkeys[k])} is not given, and no value of it fits this rule and the others"]
            s = self._fmt_field(k, st)
            return [s if want else f"{s} (needs {self._short(e)})"]
        if op == "!":
            return self._facts(e[1], not want, st, keys, feats)
        kids = e[1:]
        if op in ("&&", "||"):
            decisive = (op == "&&") != want  # a False conjunct / a True disjunct decides
            if decisive:
                kids = [x for x in kids if self._kval(x, st) is want]
            out: list[str] = []
            for x in kids:
                out += self._facts(x, want, st, keys, feats)
            return out
        a, b = kids
        va, vb = self._kval(a, st), self._kval(b, st)
        out = []
        if op == "-->" and want:
            return self._facts(a, False, st, keys, feats) if va is False else self._facts(b, True, st, keys, feats)
        for x, v in ((a, va), (b, vb)):
            if v is not None:
                out += self._facts(x, v, st, keys, feats)
        return out

    def _names_of(self, e: Expr, want: bool, st: _State) -> str:
        """Short name for the part of ``e`` that has value ``want`` (e.g. the failing conjuncts)."""
        if isinstance(e, str):
            return e if want else f"not {e}"
        if isinstance(e, list) and e[0] == "!":
            return self._names_of(e[1], not want, st)
        if isinstance(e, list) and e[0] in ("&&", "||"):
            decisive = (e[0] == "&&") != want
            kids = [x for x in e[1:] if self._kval(x, st) is want] if decisive else list(e[1:])
            if decisive:
                return " and ".join(self._names_of(x, want, st) for x in kids)
            sep = " and " if want else " or "
            return sep.join(self._names_of(x, want, st) for x in kids)
        return self._short(e) if want else f"!({self._short(e)})"

    def _violation(self, c: int, st: _State) -> Violation:
        con = self._cons[c]
        e = self._cexpr[c]
        keys: list[int] = []
        feats: list[int] = []
        # peel guards that hold: G --> (rest) with G true and rest false
        while isinstance(e, list) and e[0] == "-->" and self._kval(e[1], st) is True \
                and isinstance(e[2], list) and e[2][0] in ("-->", "<->") and self._kval(e[2], st) is False:
            e = e[2]
        msg: str
        if isinstance(e, list) and e[0] == "-->" and self._kval(e[1], st) is True and self._kval(e[2], st) is False:
            lhs = self._names_of(e[1], True, st)
            need = e[2]
            if isinstance(need, list) and need[0] == "!":
                head = f"{lhs} rules out {self._names_of(need[1], True, st)}"
            elif isinstance(need, list) and need[0] == "||":
                head = f"{lhs} requires one of {', '.join(self._short(x, True) for x in need[1:])}"
            elif self._is_feats(need):
                head = f"{lhs} requires {self._req(need, st)}"
            else:
                head = f"{lhs} requires {self._short(need, True)}"
            have = self._facts(e[1], True, st, keys, feats)
            miss = self._facts(need, False, st, keys, feats)
            msg = f"{head}: {'; '.join(dict.fromkeys(have))} but {'; '.join(dict.fromkeys(miss))}"
        elif isinstance(e, list) and e[0] == "<->":
            va, vb = self._kval(e[1], st), self._kval(e[2], st)
            left = self._facts(e[1], bool(va), st, keys, feats)
            right = self._facts(e[2], bool(vb) if vb is not None else not va, st, keys, feats)
            msg = (f"{self._short(e[1], True)} must hold exactly when {self._short(e[2], True)}: "
                   f"{'; '.join(dict.fromkeys(left))} but {'; '.join(dict.fromkeys(right))}")
        else:
            facts = self._facts(e, False, st, keys, feats)
            msg = f"{con.text} does not hold: {'; '.join(dict.fromkeys(facts)) or 'contradiction'}"
        return Violation(con.id, con.text, con.owner, msg, self._keys_out(keys))

    def _is_feats(self, e: Expr) -> bool:
        if isinstance(e, str):
            return True
        if isinstance(e, list) and e[0] in ("&&", "!"):
            return all(self._is_feats(x) for x in e[1:])
        return False

    def _req(self, need: Expr, st: _State) -> str:
        if isinstance(need, list) and need[0] == "&&":
            return " and ".join(self._req(x, st) for x in need[1:] if self._kval(x, st) is not True)
        if isinstance(need, list) and need[0] == "!":
            return f"not {self._short(need[1])}"
        return self._short(need)

    def _keys_out(self, keys: list[int]) -> tuple[FieldKey, ...]:
        return tuple(self._fkeys[k] for k in dict.fromkeys(keys) if self._fmapped[k])

    def _joint_violation(self, core: list[int], st: _State) -> Violation:
        keys: list[int] = []
        unknown: list[str] = []
        known: list[str] = []
        for c in core:
            for v in self._cfeats[c]:
                if st.b[v] is None:
                    unknown.append(self._names[v])
                else:
                    known.append(self._why(v, st, keys))
            for k in self._cfields[c]:
                if k in st.values:
                    keys.append(k)
                    known.append(self._fmt_field(k, st))
                else:
                    unknown.append(".".join(self._fkeys[k]))
        last = self._cons[core[-1]]
        rules = "; ".join(f"{self._cons[c].id}: {self._cons[c].text}" for c in core)
        msg = (f"no choice of {', '.join(dict.fromkeys(unknown)) or 'the unknowns'} satisfies these together: "
               f"{rules}" + (f" (given {'; '.join(dict.fromkeys(known))})" if known else ""))
        return Violation(last.id, last.text, last.owner, msg, self._keys_out(keys))

    # -- decoding -------------------------------------------------------------------------
    def field_features(self, register: str, field: str) -> list[tuple[str, str]]:
        """(condition, feature) pairs saying which values of a field mean which features.

        E.g. ``field_features("ID_AA64ISAR0_EL1", "SHA2")`` ->
        ``[("SHA2 >= 1", "FEAT_SHA256"), ("SHA2 >= 2", "FEAT_SHA512")]``. A condition that
        applies only under other features says so (``"... (when FEAT_SME)"``); one-way
        requirements read ``"... (required)"``.
        """
        k = self._kidx.get((register, field))
        if k is None:
            return []
        out: list[tuple[str, str]] = []
        for fi, defs in enumerate(self._defs):
            for d in defs:
                ks: list[int] = []
                self._collect(d.expr, [], ks)
                if k not in ks:
                    continue
                cond = self._short(d.expr)
                g = self._guard_text(d.guard)
                if g:
                    cond += f" (when {g})"
                if d.kind == "requires":
                    cond += " (required)"
                out.append((self._first_value(d.expr, k), cond, self._names[fi]))
        out.sort(key=lambda x: (x[0], x[1], x[2]))
        return list(dict.fromkeys((c, f) for _, c, f in out))

    def _first_value(self, e: Expr, k: int) -> int:
        """Smallest value of field ``k`` (in its natural order) at which ``e`` can hold."""
        size = 1 << self._fwidth[k]
        for r in sorted(range(len(self._cuts[k])), key=lambda r: self._order_key(k, self._cuts[k][r])):
            b: list[Tri] = [None] * len(self._names)
            d = list(self._full)
            d[k] = 1 << r
            if self._kdom(e, b, d) is not False:
                return self._order_key(k, self._cuts[k][r])
        return size

    def _guard_text(self, g: Expr | None) -> str:
        if g is None or g == "FEAT_AA64EL1":
            return ""
        if isinstance(g, list) and g[0] == "&&":
            rest = [x for x in g[1:] if x != "FEAT_AA64EL1"]
            if not rest:
                return ""
            return " && ".join(self._short_paren(x) for x in rest)
        return self._short(g)

    def features_for_value(self, register: str, field: str, value: int) -> list[str]:
        """FEAT_* names that this one field value implies on its own (for register tables)."""
        k = self._kidx.get((register, field))
        if k is None or not 0 <= value < 1 << self._fwidth[k]:
            return []
        bit = 1 << (bisect.bisect_right(self._cuts[k], value) - 1)
        out: list[str] = []
        first: dict[str, int] = {}
        for fi, defs in enumerate(self._defs):
            for d in defs:
                if d.kind != "iff" or not d.field_only:
                    continue
                ks: list[int] = []
                self._collect(d.expr, [], ks)
                if set(ks) != {k}:
                    continue
                if self._eval_fixed(d.expr, {k: bit}) and self._names[fi] not in out:
                    out.append(self._names[fi])
                    first[self._names[fi]] = self._first_value(d.expr, k)
                break
        return sorted(out, key=lambda n: (first[n], n))

    def _eval_fixed(self, e: Expr, dom: dict[int, int]) -> bool:
        if isinstance(e, bool):
            return e
        op = e[0]
        if op == "a":
            return bool(dom[self._atoms[e[1]][0]] & self._amask[e[1]])
        if op == "!":
            return not self._eval_fixed(e[1], dom)
        if op == "&&":
            return all(self._eval_fixed(x, dom) for x in e[1:])
        if op == "||":
            return any(self._eval_fixed(x, dom) for x in e[1:])
        a, b = self._eval_fixed(e[1], dom), self._eval_fixed(e[2], dom)
        return (not a or b) if op == "-->" else a == b

    def definition(self, feature: str) -> list[str]:
        """Renderings of the field-based definitions of a feature (as the data records them)."""
        fi = self._feature_index(feature)
        return [self._cons[d.rule].text for d in self._defs[fi]]

    # -- changing models ------------------------------------------------------------------
    def _settable(self, fi: int, st: _State) -> list[_Def]:
        """Definitions through which feature ``fi`` can be set by writing known fields."""
        out = []
        for d in self._defs[fi]:
            if not d.fields_mapped:
                continue
            if d.guard is not None and self._kval(d.guard, st) is not True:
                continue
            ks: list[int] = []
            self._collect(d.expr, [], ks)
            if any(k in st.values for k in ks):
                out.append(d)
        return out

    def _order_key(self, k: int, v: int) -> int:
        """Position of value ``v`` in the field's natural order (signed fields: signed)."""
        if self._signed_atoms(k) and v >= 1 << (self._fwidth[k] - 1):
            return v - (1 << self._fwidth[k])
        return v

    def _solve_def(self, d: _Def, want: bool, st: _State, values: dict[int, int]) -> dict[int, int] | None:
        """Smallest field change (raise for on, lowering for off) that gives ``d.expr`` the value ``want``."""
        ks: list[int] = []
        self._collect(d.expr, [], ks)
        ks = [k for k in dict.fromkeys(ks) if k in values]
        if not ks:
            return None

        def holds(assign: dict[int, int]) -> bool:
            saved = {k: st.d[k] for k in assign}
            for k, v in assign.items():
                st.d[k] = 1 << (bisect.bisect_right(self._cuts[k], v) - 1)
            r = self._kval(d.expr, st)
            for k, v in saved.items():
                st.d[k] = v
            return r is want

        if holds({}):
            return {}

        def candidates(k: int) -> list[int]:
            size = 1 << self._fwidth[k]
            cs = self._cuts[k] + [size]
            vals = set(cs[:-1]) | {c - 1 for c in cs[1:]}
            cur = self._order_key(k, values[k])
            up = sorted((v for v in vals if self._order_key(k, v) >= cur), key=lambda v: self._order_key(k, v))
            down = sorted((v for v in vals if self._order_key(k, v) <= cur), key=lambda v: -self._order_key(k, v))
            return (up + down) if want else (down + up)

        for k in ks:
            for v in candidates(k):
                if v != values[k] and holds({k: v}):
                    return {k: v}
        if len(ks) >= 2:
            for i, k1 in enumerate(ks):
                for k2 in ks[i + 1:]:
                    for v1 in candidates(k1):
                        for v2 in candidates(k2):
                            if holds({k1: v1, k2: v2}):
                                return {k1: v1, k2: v2}
        return None

    def _cid_of(self, c: int) -> str:
        return self._cons[c].id if c < len(self._cons) else f"DERIVED-{c}"

    def _apply(self, fi: int, want: bool, st: _State) -> dict[int, int]:
        """Field values that give feature ``fi`` the value ``want`` through every definition
        that applies in ``st`` (also the one-way requirements, when turning it on)."""
        out: dict[int, int] = {}
        for d in self._settable(fi, st):
            if d.kind == "requires" and not want:
                continue
            if self._kval(d.expr, st) is want:
                continue
            sol = self._solve_def(d, want, st, st.values)
            if sol is None:
                raise FeatureError(f"no field values make {self._names[fi]} {'on' if want else 'off'} "
                                   f"({self._cons[d.rule].text})")
            for k, v in sol.items():
                st.values[k] = v
                st.d[k] = 1 << (bisect.bisect_right(self._cuts[k], v) - 1)
                out[k] = v
        return out

    def _repair(self, fields: Mapping[FieldKey, int], goals: list[tuple[int, bool, str]],
                assert_true: Iterable[str] = (), prefer_on: bool = True, strict: bool = False) -> FieldChanges:
        """Write field values until the goals hold and no new violation appears (``strict``:
        no violation at all; otherwise those the model already had are left alone).

        A new violation is repaired by writing the fields of the features it involves: a
        definition or requirement of a feature whose value is known is re-applied; otherwise
        features are flipped greedily (towards ``prefer_on`` first). The features that
        ID_AA64PFR0_EL1.EL0..EL3 define (execution states) are never flipped implicitly.
        """
        cur: dict[FieldKey, int] = dict(fields)
        at = list(assert_true)
        base = set() if strict else {v.id for v in self.check(cur)}
        changes = FieldChanges()
        locked: dict[int, bool] = {}
        todo: deque[tuple[int, bool, str]] = deque(goals)
        for _ in range(500):
            progressed = False
            while todo:
                fi, want, why = todo.popleft()
                if locked.get(fi, want) != want:
                    raise FeatureError(f"cannot turn {self._names[fi]} {'on' if want else 'off'} ({why}): "
                                       f"it must stay {'on' if locked[fi] else 'off'}")
                locked[fi] = want
                st, pend = self._start(cur, at, ())
                self._propagate(st, pend, record=False, violated=[])
                if not any(d.kind == "iff" for d in self._settable(fi, st)) and st.b[fi] is not want \
                        and not (want and any(d.kind == "requires" for d in self._settable(fi, st))):
                    raise FeatureError(f"{self._names[fi]} is not determined by the known ID register fields "
                                       f"(needed {'on' if want else 'off'}: {why})")
                for k, v in self._apply(fi, want, st).items():
                    key = self._fkeys[k]
                    if cur.get(key) != v:
                        progressed = True
                    cur[key] = v
                    changes[key] = v
                    changes.reasons[key] = f"{self._names[fi]} {'on' if want else 'off'}: {why}"
            st, pend = self._start(cur, at, ())
            violated: list[int] = []
            rest = self._propagate(st, pend, record=True, violated=violated)
            if rest:
                for core in self._search(st, rest):
                    violated.append(core[-1])
            new = [c for c in violated if self._cid_of(c) not in base]
            if not new:
                return changes
            if goals and not progressed and _ > 0:
                v = self._violation(new[0], st) if new[0] < len(self._cons) else None
                raise FeatureError(f"cannot make the change without breaking {self._cid_of(new[0])}"
                                   + (f": {v.message}" if v else ""))
            c = new[0]
            fix = self._pick_fix(c, st, locked, prefer_on)
            if not fix:
                v = self._violation(c, st) if c < len(self._cons) else None
                raise FeatureError(f"cannot make the change without breaking {self._cid_of(c)}"
                                   + (f": {v.message}" if v else ""))
            rule = f"{self._cid_of(c)} ({self._cons[c].text})" if c < len(self._cons) else self._cid_of(c)
            for fi, want in fix:
                todo.append((fi, want, f"{'required' if want else 'ruled out'} by {rule}"))
        raise FeatureError("field changes did not settle")

    def _pick_fix(self, c: int, st: _State, locked: dict[int, bool], prefer_on: bool) -> list[tuple[int, bool]]:
        """Features to set so that constraint ``c`` is no longer false."""
        # a definition or requirement of a feature whose value is known: write its fields
        for fi, defs in self._defs_by_rule().get(c, ()):
            val = st.b[fi]
            if val is not None and locked.get(fi, val) == val and (defs.kind == "iff" or val):
                return [(fi, bool(val))]
        env = self._env_features()
        cands = [v for v in self._cfeats[c] if st.b[v] is not None and v not in st.asserted and v not in locked
                 and v not in env and self._settable(v, st)]
        order = sorted(cands, key=lambda v: (st.b[v] is prefer_on,))
        flips: list[tuple[int, bool]] = []
        saved = list(st.b)
        for v in order:
            st.b[v] = not st.b[v]
            flips.append((v, bool(st.b[v])))
            if self._kval(self._cexpr[c], st) is not False:
                st.b[:] = saved
                return flips
        st.b[:] = saved
        # a feature that no field sets (a version, say) holds because something implies it:
        # undo that instead (e.g. v8Ap1 --> FEAT_CRC32 with CRC32 off: drop what needs v8Ap1)
        for v in self._cfeats[c]:
            if st.b[v] is None or v in st.asserted or v in env or self._settable(v, st):
                continue
            src = self._source_of(v, st, locked, env, set())
            if src is not None:
                return [src]
        return []

    def _source_of(self, v: int, st: _State, locked: dict[int, bool], env: set[int],
                   seen: set[int]) -> tuple[int, bool] | None:
        """A settable feature whose flip removes a reason for ``v``'s forced value."""
        if v in seen or len(seen) > 6:
            return None
        seen.add(v)
        val = st.b[v]
        for c in self._live:
            if v not in self._cfeats[c] or c in self._derived_of:
                continue
            st.b[v] = not val
            forcing = self._kval(self._cexpr[c], st) is False
            st.b[v] = val
            if not forcing:
                continue
            for u in self._cfeats[c]:
                if u == v or st.b[u] is None or u in st.asserted or u in env:
                    continue
                if u not in locked and self._settable(u, st):
                    return (u, not st.b[u])
                deeper = self._source_of(u, st, locked, env, seen)
                if deeper is not None:
                    return deeper
        return None

    def _defs_by_rule(self) -> dict[int, list[tuple[int, _Def]]]:
        if self._by_rule is None:
            self._by_rule = {}
            for fi, defs in enumerate(self._defs):
                for d in defs:
                    self._by_rule.setdefault(d.rule, []).append((fi, d))
        return self._by_rule

    def _env_features(self) -> set[int]:
        """Features defined by the EXTRA rules (Exception levels and execution states)."""
        return {fi for fi, defs in enumerate(self._defs) for d in defs if self._cons[d.rule].id.startswith("EXTRA-")}

    def force(self, feature: str, on: bool, fields: Mapping[FieldKey, int]) -> FieldChanges:
        """Field changes that turn a field-defined feature on (smallest raise) or off (smallest lowering).

        Turning a feature on also turns on what it requires; turning it off also turns off the
        features that require it (transitively). Returns {(register, field): new value}; the
        result's ``reasons`` maps each key to why it changed. Raises ``FeatureError`` for a name
        the model does not know (with suggestions) or a feature no known field determines.
        """
        fi = self._feature_index(feature)
        name = self._names[fi]
        if not name.startswith("FEAT_"):
            raise FeatureError(f"{name} is an architecture version, not a feature; use version_floor()")
        st, pend = self._start(fields, (), ())
        self._propagate(st, pend, record=False, violated=[])
        if not any(d.kind == "iff" for d in self._settable(fi, st)):
            if not any(d.fields_mapped for d in self._defs[fi]):
                raise FeatureError(f"{name} is not determined by any ID register field this tool models")
            raise FeatureError(f"{name} is not determined by the known ID register fields of this model")
        return self._repair(fields, [(fi, on, "requested")], prefer_on=on)

    def version_floor(self, version: str, base: Mapping[FieldKey, int] | None = None) -> FieldChanges:
        """Smallest field values that the version (and its predecessors) mandates.

        Starts from ``base`` or, by default, from every modelled ID field at 0 with AArch64 at
        EL0 and EL1 (ID_AA64PFR0_EL1.EL0 = EL1 = 1), and raises (or, for features a version
        forbids, lowers) fields until asserting the version yields no violation. Returns only
        the fields that differ from 0 (or from ``base``), with reasons.
        """
        v = self.version_name(version)
        if base is None and v not in self._floors:
            self._load_shipped_floors()
        if base is None and v in self._floors:
            return self._floors[v].copy()
        start: dict[FieldKey, int] = dict(base) if base is not None else self.zero_model()
        changes = self._repair(start, [], assert_true=[v], prefer_on=True, strict=True)
        out = FieldChanges()
        if base is None:
            for key in (("ID_AA64PFR0_EL1", "EL0"), ("ID_AA64PFR0_EL1", "EL1")):
                out[key] = start[key]
                out.reasons[key] = "AArch64 at EL0 and EL1 (arm64 guest)"
        for key, val in changes.items():
            if val != start.get(key, 0) or key in out:
                out[key] = val
                out.reasons[key] = f"{v}: {changes.reasons[key]}"
        if base is None:
            self._floors[v] = out.copy()
        return out

    def _load_shipped_floors(self) -> None:
        """Floors precomputed by tools/gen_floors.py (deriving one takes ~0.1 s)."""
        if getattr(self, "_shipped_floors_loaded", False):
            return
        self._shipped_floors_loaded = True
        path = Path(__file__).resolve().parent / "data" / "version_floors.json"
        if not path.exists():
            return
        for v, rows in json.loads(path.read_text())["floors"].items():
            ch = FieldChanges()
            for reg, field, val, why in rows:
                ch[(reg, field)] = val
                ch.reasons[(reg, field)] = why
            self._floors.setdefault(v, ch)

    def zero_model(self) -> dict[FieldKey, int]:
        """Every mapped field at 0, except AArch64 at EL0/EL1 (the base of ``version_floor``)."""
        z = {key: 0 for k, key in enumerate(self._fkeys) if self._fmapped[k]}
        z[("ID_AA64PFR0_EL1", "EL0")] = 1
        z[("ID_AA64PFR0_EL1", "EL1")] = 1
        return z

    def decode(self, registers: Mapping[str, int]) -> dict[FieldKey, int]:
        """Field values, for the fields the constraints read, from whole register values."""
        out: dict[FieldKey, int] = {}
        for k, (reg, fld) in enumerate(self._fkeys):
            lsb = self._flsb[k]
            if lsb is not None and reg in registers:
                out[(reg, fld)] = (registers[reg] >> lsb) & ((1 << self._fwidth[k]) - 1)
        return out

    def fields(self) -> list[FieldKey]:
        """The (register, field) pairs the constraints read that registers.json knows."""
        return [key for k, key in enumerate(self._fkeys) if self._fmapped[k]]


class _Budget(Exception):
    pass
