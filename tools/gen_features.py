"""Regenerate ``cpumodel/data/features.json`` from Arm's machine-readable feature model.

Usage: python -m tools.gen_features /path/to/arm-aarchmrs/Features.json [-o cpumodel/data/features.json]
       python -m tools.gen_features --program     # only cpumodel/features/_program.py, from the shipped data

Arm's A-profile AARCHMRS ``Features.json`` lists every architecture parameter (FEAT_* and
versions such as ``v8Ap2``) with its constraints, written in a small AST. This converter:

* renames Arm's register/field references onto ``cpumodel/data/registers.json`` (Linux's
  names): case-insensitive, AArch32 registers matched with and without an ``_EL1``/``_EL0``
  suffix. References that match nothing (external-debug views, PMU/SPE/trace registers outside
  the ID space, ...) stay Arm's names and are listed under ``unmapped``; at run time they are
  always unknown;
* compacts every constraint into a JSON expression (see ``cpumodel/features.py``) and gives it
  a stable id ``ARCH-<owner parameter>-<1-based index>`` (``ARCH-GLOBAL-<n>`` for the model's
  top-level constraints) and a human-readable rendering;
* records, per feature, its *definitions*: constraints ``FEAT_X <-> expr`` (optionally under a
  guard such as ``FEAT_AA64EL1 --> ...``) and one-way requirements ``FEAT_X --> field test``;
* adds a few rules of its own (ids ``EXTRA-...``) that Features.json leaves implicit: which
  Exception levels and execution states exist, read from ID_AA64PFR0_EL1.EL0..EL3. Without them
  nothing would tell the engine that a model with AArch64 ID registers has AArch64 EL1.

Arm's BSD-3-Clause notice is copied next to the output as ``ARM-LICENSE.txt``. Then the
engine's precompiled constraint program (``cpumodel/features/_program.py``) is rewritten from
the new data (``tools/feature_program.py``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
from pathlib import Path
from typing import Any

from cpumodel.features.notation import render
from tools import feature_program

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "cpumodel" / "data"
OUT = DATA / "features.json"
REGISTERS = DATA / "registers.json"

Expr = Any  # compact expression: str | bool | list

_CMP_OPS = {">=", ">", "<=", "<", "==", "!="}
_VERSION_RE = re.compile(r"^v(\d+)Ap(\d+)$")

# Rules that Features.json does not state but that the Arm ARM's description of
# ID_AA64PFR0_EL1.EL0/EL1/EL2/EL3 does: 0b0000 not implemented, 0b0001 AArch64 only,
# 0b0010 AArch64 and AArch32. (feature, field, minimum value)
_EXTRA_EL_RULES = (
    ("FEAT_AA64EL0", "EL0", 1),
    ("FEAT_AA32EL0", "EL0", 2),
    ("FEAT_AA64EL1", "EL1", 1),
    ("FEAT_AA32EL1", "EL1", 2),
    ("FEAT_EL2", "EL2", 1),
    ("FEAT_AA64EL2", "EL2", 1),
    ("FEAT_AA32EL2", "EL2", 2),
    ("FEAT_EL3", "EL3", 1),
    ("FEAT_AA64EL3", "EL3", 1),
    ("FEAT_AA32EL3", "EL3", 2),
)
# Constraints whose Features.json form contradicts the Arm ARM's own register description
# (and shipped Arm cores): id -> (feature added to the guard, reason). The amended rule keeps
# its id and records Arm's original rendering.
_AMENDMENTS = {
    cid: ("FEAT_AA32EL2",
          "Arm ARM, ID_MMFR4_EL1.EVT: 'If EL2 is not implemented or does not support AArch32, the only "
          "permitted value is 0b0000', so this AArch32 view reflects FEAT_EVT only when EL2 supports "
          "AArch32 (Neoverse N2/V1 report ID_AA64MMFR2_EL1.EVT=2 with ID_MMFR4_EL1.EVT=0)")
    for cid in ("ARCH-FEAT_EVT-4", "ARCH-FEAT_EVT-5")
}

_EXTRA_SOURCE = ("Arm ARM, ID_AA64PFR0_EL1.EL0/EL1/EL2/EL3 field descriptions: 0b0000 not implemented, "
                 "0b0001 AArch64 only, 0b0010 AArch64 and AArch32 (cpumodel addition, not in Features.json)")


class Converter:
    def __init__(self, features: dict[str, Any], registers: dict[str, Any]) -> None:
        self.src = features
        self.regs = registers["registers"]
        self.reg_by_upper = {name.upper(): name for name in self.regs}
        self.fields: list[dict[str, Any]] = []
        self.field_index: dict[tuple[str, str], int] = {}
        self.atoms: list[list[Any]] = []
        self.atom_index: dict[str, int] = {}
        self.unmapped: dict[str, set[str]] = {}
        self.params = [p["name"] for p in features["parameters"]]
        self.param_set = set(self.params)
        self.undeclared: list[str] = []

    # -- field references -------------------------------------------------------------
    def _map_register(self, name: str, state: str) -> str | None:
        if state == "AArch64":
            cands = [name]
        elif state == "AArch32":
            cands = [name, name + "_EL1", name + "_EL0"]
        else:  # "ext": memory-mapped external-debug views are other registers
            return None
        for c in cands:
            hit = self.reg_by_upper.get(c.upper())
            if hit is not None:
                return hit
        return None

    def _field_var(self, reg: str, field: str, state: str) -> int:
        """Index of the integer variable for an Arm field reference (mapped or not)."""
        mapped = self._map_register(reg, state)
        spec = None
        if mapped is not None:
            spec = next((f for f in self.regs[mapped]["fields"]
                         if f.get("name", "").upper() == field.upper()), None)
        if spec is not None:
            assert mapped is not None
            key = (mapped, spec["name"])
            if key not in self.field_index:
                self.field_index[key] = len(self.fields)
                self.fields.append({"reg": mapped, "field": spec["name"], "width": spec["msb"] - spec["lsb"] + 1,
                                    "mapped": True, "order": spec.get("order", "none"), "lsb": spec["lsb"]})
            return self.field_index[key]
        rname = ("ext:" + reg) if state == "ext" else reg
        self.unmapped.setdefault(f"{rname}.{field}", set()).add(state)
        key = (rname, field)
        if key not in self.field_index:
            self.field_index[key] = len(self.fields)
            self.fields.append({"reg": rname, "field": field, "width": 4, "mapped": False,
                                "arm": {"name": reg, "state": state}})
        return self.field_index[key]

    def _field_of(self, node: dict[str, Any]) -> int:
        t = node["_type"]
        if t == "Types.Field":
            v = node["value"]
            if v.get("slices") or v.get("instance"):
                raise ValueError(f"field reference with slices/instance not supported: {v}")
            return self._field_var(v["name"], v["field"], v["state"])
        if t == "AST.DotAtom":  # PMU.PMDEVID.EXTPMN: external PMU/AMU register block
            parts = [x["value"] for x in node["values"]]
            return self._field_var(".".join(parts[:-1]), parts[-1], "ext")
        raise ValueError(f"not a field reference: {t}")

    def _atom(self, fidx: int, fn: str, op: str, value: int | list[int]) -> list[Any]:
        key = json.dumps([fidx, fn, op, value])
        if key not in self.atom_index:
            self.atom_index[key] = len(self.atoms)
            self.atoms.append([fidx, fn, op, value])
            need = max(value) if isinstance(value, list) else value
            f = self.fields[fidx]
            if not f["mapped"] and need >= 0:
                f["width"] = max(f["width"], need.bit_length())
        return ["a", self.atom_index[key]]

    # -- expressions ------------------------------------------------------------------
    def expr(self, n: dict[str, Any]) -> Expr:
        t = n["_type"]
        if t == "AST.Identifier":
            name = n["value"]
            if name not in self.param_set and name not in self.undeclared:
                # Referenced but not declared as a parameter (FEAT_RASSA in build 445):
                # kept as a free boolean that no field determines.
                if not name.startswith("FEAT_"):
                    raise ValueError(f"unknown identifier {name}")
                self.undeclared.append(name)
            return name
        if t == "AST.Bool":
            return bool(n["value"])
        if t == "AST.UnaryOp":
            if n["op"] != "!":
                raise ValueError(f"unary op {n['op']}")
            return ["!", self.expr(n["expr"])]
        if t == "AST.BinaryOp":
            op = n["op"]
            if op in ("&&", "||"):
                out: list[Any] = [op]
                for side in (n["left"], n["right"]):
                    e = self.expr(side)
                    if isinstance(e, list) and e[0] == op:
                        out.extend(e[1:])
                    else:
                        out.append(e)
                return out
            if op in ("-->", "<->"):
                return [op, self.expr(n["left"]), self.expr(n["right"])]
            if op in _CMP_OPS:
                return self._compare(n["left"], op, n["right"])
            if op == "IN":
                left = n["left"]
                fn = "UInt"
                if left["_type"] == "AST.Function":
                    fn = left["name"]
                    left = left["arguments"][0]
                vals = sorted(int(v["value"].strip("'"), 2) for v in n["right"]["values"])
                return self._atom(self._field_of(left), fn, "in", vals)
            raise ValueError(f"binary op {op}")
        raise ValueError(f"node type {t}")

    def _compare(self, left: dict[str, Any], op: str, right: dict[str, Any]) -> Expr:
        flip = {">=": "<=", ">": "<", "<=": ">=", "<": ">", "==": "==", "!=": "!="}
        if left["_type"] == "AST.Integer" and right["_type"] == "AST.Function":
            left, right, op = right, left, flip[op]
        if left["_type"] != "AST.Function" or right["_type"] != "AST.Integer":
            raise ValueError(f"comparison shape {left['_type']} {op} {right['_type']}")
        fn = left["name"]
        if fn not in ("UInt", "SInt") or len(left["arguments"]) != 1:
            raise ValueError(f"function {fn}")
        return self._atom(self._field_of(left["arguments"][0]), fn, op, int(right["value"]))

    # -- rendering --------------------------------------------------------------------
    def render(self, e: Expr) -> str:
        return render(e, self._render_atom)

    def _render_atom(self, i: int) -> str:
        fidx, fn, aop, value = self.atoms[i]
        f = self.fields[fidx]
        ref = f"{fn}({f['reg']}.{f['field']})"
        if aop == "in":
            return f"{ref} IN {{{', '.join(str(v) for v in value)}}}"
        return f"{ref} {aop} {value}"


def _features_in(e: Expr, out: set[str]) -> set[str]:
    if isinstance(e, str):
        out.add(e)
    elif isinstance(e, list) and e[0] != "a":
        for x in e[1:]:
            _features_in(x, out)
    return out


def _atoms_in(e: Expr, out: list[int]) -> list[int]:
    if isinstance(e, list):
        if e[0] == "a":
            out.append(e[1])
        else:
            for x in e[1:]:
                _atoms_in(x, out)
    return out


def _and(parts: list[Expr]) -> Expr | None:
    parts = [p for p in parts if p is not True]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else ["&&", *parts]


def _definition(e: Expr, guards: list[Expr]) -> dict[str, Any] | None:
    """Recognise ``guard --> (FEAT_X <-> expr)`` / ``guard --> (FEAT_X --> field test)``."""
    if not isinstance(e, list):
        return None
    if e[0] == "-->":
        left, right = e[1], e[2]
        if isinstance(left, str) and _atoms_in(right, []) and not _features_in(right, set()):
            return {"feature": left, "kind": "requires", "guard": _and(guards), "expr": right}
        if _atoms_in(left, []) or not isinstance(right, list):
            return None
        return _definition(right, [*guards, left])
    if e[0] == "<->":
        left, right = e[1], e[2]
        if _features_in(right, set()) and not _atoms_in(right, []):
            return None
        if not _atoms_in(right, []):
            return None
        if isinstance(left, str):
            if left in _features_in(right, set()):
                return None
            return {"feature": left, "kind": "iff", "guard": _and(guards), "expr": right}
        # (FEAT_X && FEAT_Y) <-> expr: when FEAT_Y holds, FEAT_X <-> expr.
        if isinstance(left, list) and left[0] == "&&" and all(isinstance(x, str) for x in left[1:]):
            target, *others = left[1:]
            if target in _features_in(right, set()):
                return None
            return {"feature": target, "kind": "iff", "guard": _and([*guards, *others]), "expr": right,
                    "note": "conditional: from a constraint on " + " && ".join(left[1:])}
    return None



# -- eliminating fields that are never known ------------------------------------------------
# A field the registers database does not have (external-debug views, PMU/SPE/trace ID
# registers) is unknown in every model. For each group of constraints linked through such
# fields, "some value of these fields satisfies the group" is a formula over the other
# variables alone: the disjunction, over every combination of the fields' value regions, of
# the group with those regions substituted. The engine checks that formula instead of the
# group (it is equivalent for satisfiability) and keeps the originals to explain a failure.


def _sint(v: int, width: int) -> int:
    return v - (1 << width) if v >= 1 << (width - 1) else v


def atom_holds(atom: list[Any], width: int, v: int) -> bool:
    _, fn, op, val = atom
    x = _sint(v, width) if fn == "SInt" else v
    if op == "in":
        return x in val
    return {">=": x >= val, ">": x > val, "<=": x <= val, "<": x < val, "==": x == val, "!=": x != val}[op]


def region_starts(atoms: list[list[Any]], k: int, width: int) -> list[int]:
    """Lowest value of each region of field ``k``: values that no atom on it tells apart."""
    size = 1 << width
    cuts = {0}
    for a in atoms:
        if a[0] != k:
            continue
        for c in a[3] if isinstance(a[3], list) else [a[3]]:
            pts = {c, c + 1}
            if a[1] == "SInt":
                pts = {p % size for p in pts} | {size >> 1}
            cuts.update(p for p in pts if 0 < p < size)
    return sorted(cuts)


def _fold(e: Expr, fixed: dict[int, bool]) -> Expr:
    """Substitute atoms in ``fixed`` and simplify constants away."""
    if isinstance(e, (bool, str)):
        return e
    op = e[0]
    if op == "a":
        return fixed.get(e[1], e)
    if op == "!":
        x = _fold(e[1], fixed)
        return (not x) if isinstance(x, bool) else ["!", x]
    if op in ("&&", "||"):
        unit, zero = (True, False) if op == "&&" else (False, True)
        out: list[Any] = []
        for x in (_fold(y, fixed) for y in e[1:]):
            if x is zero:
                return zero
            if x is not unit and x not in out:
                out.append(x)
        return unit if not out else (out[0] if len(out) == 1 else [op, *out])
    a, b = _fold(e[1], fixed), _fold(e[2], fixed)
    if op == "-->":
        if a is False or b is True:
            return True
        if a is True:
            return b
        if b is False:
            return _fold(["!", a], {})
        return ["-->", a, b]
    if isinstance(a, bool) and isinstance(b, bool):
        return a == b
    if isinstance(a, bool):
        a, b = b, a
    if isinstance(b, bool):
        return a if b else _fold(["!", a], {})
    return ["<->", a, b]


def _eval_bool(e: Expr, env: dict[str, bool]) -> bool:
    if isinstance(e, bool):
        return e
    if isinstance(e, str):
        return env[e]
    op = e[0]
    if op == "!":
        return not _eval_bool(e[1], env)
    if op == "&&":
        return all(_eval_bool(x, env) for x in e[1:])
    if op == "||":
        return any(_eval_bool(x, env) for x in e[1:])
    a, b = _eval_bool(e[1], env), _eval_bool(e[2], env)
    return (not a or b) if op == "-->" else a == b


def _tautology(e: Expr) -> bool:
    """True when ``e`` (features only, at most 16 of them) holds for every assignment."""
    if _atoms_in(e, []):
        return False
    names = sorted(_features_in(e, set()))
    if len(names) > 16:
        return False
    envs = ({n: bool(bits >> i & 1) for i, n in enumerate(names)} for bits in range(1 << len(names)))
    return all(_eval_bool(e, env) for env in envs)


def eliminate(constraints: list[dict[str, Any]], atoms: list[list[Any]],
              fields: list[dict[str, Any]]) -> list[dict[str, Any]]:
    unmapped = {k for k, f in enumerate(fields) if not f["mapped"]}
    uses: dict[int, set[int]] = {}
    for ci, c in enumerate(constraints):
        ks = {atoms[a][0] for a in _atoms_in(c["expr"], [])} & unmapped
        if ks:
            uses[ci] = ks
    parent = {k: k for k in unmapped}

    def find(x: int) -> int:
        while parent[x] != x:
            x = parent[x]
        return x

    for ks in uses.values():
        first, *rest = sorted(ks)
        for k in rest:
            parent[find(k)] = find(first)
    groups: dict[int, list[int]] = {}
    for ci, ks in uses.items():
        groups.setdefault(find(min(ks)), []).append(ci)
    out = []
    for cis in sorted(groups.values()):
        ks = sorted({k for ci in cis for k in uses[ci]})
        starts = [region_starts(atoms, k, fields[k]["width"]) for k in ks]
        combos: list[list[int]] = [[]]
        for st in starts:
            combos = [[*c, v] for c in combos for v in st]
        disjuncts: list[Expr] = []
        result: Expr = False
        for combo in combos:
            val = dict(zip(ks, combo, strict=True))
            fixed = {i: atom_holds(a, fields[a[0]]["width"], val[a[0]]) for i, a in enumerate(atoms) if a[0] in val}
            part = _fold(["&&", *(constraints[ci]["expr"] for ci in cis)], fixed)
            if part is True:
                result = True
                break
            if part is not False and part not in disjuncts:
                disjuncts.append(part)
        if result is not True and disjuncts:
            result = disjuncts[0] if len(disjuncts) == 1 else ["||", *disjuncts]
            if _tautology(result):
                result = True
        names = [f"{fields[k]['reg']}.{fields[k]['field']}" for k in ks]
        out.append({"of": [constraints[ci]["id"] for ci in sorted(cis)], "fields": names, "expr": result})
    return out


# -- clause form ------------------------------------------------------------------------------
# Each constraint is also given as clauses (CNF) over signed variable numbers, DIMACS style:
# variable i+1 is the i-th boolean (parameters, then undeclared identifiers), variable
# n_bool+j+1 is atom j. The engine uses the clauses to drop, in bulk, the constraints that the
# known values already satisfy, and the two-literal clauses to chain implications.
_MAX_CLAUSES = 48


def _nnf(e: Expr, neg: bool) -> Expr:
    if isinstance(e, bool):
        return e != neg
    if isinstance(e, str) or e[0] == "a":
        return ["!", e] if neg else e
    op = e[0]
    if op == "!":
        return _nnf(e[1], not neg)
    if op in ("&&", "||"):
        flip = {"&&": "||", "||": "&&"}[op] if neg else op
        return [flip, *(_nnf(x, neg) for x in e[1:])]
    a, b = e[1], e[2]
    if op == "-->":
        return _nnf(["||", ["!", a], b], neg)
    # a <-> b  ==  (a --> b) && (b --> a)
    return _nnf(["&&", ["-->", a, b], ["-->", b, a]], neg)


def _cnf_by_table(e: Expr, lit: Any) -> list[frozenset[int]] | None:
    """Short clauses (up to 3 literals) implied by ``e``, when together they are equivalent
    to it: for the derived formulas over a few features, whose distribution would explode."""
    if _atoms_in(e, []):
        return None
    names = sorted(_features_in(e, set()))
    if len(names) > 10:
        return None
    envs = [{n: bool(bits >> i & 1) for i, n in enumerate(names)} for bits in range(1 << len(names))]
    models = [env for env in envs if _eval_bool(e, env)]
    clauses: list[list[tuple[str, bool]]] = []
    for size in (1, 2, 3):
        for combo in itertools.combinations(names, size):
            for pols in itertools.product((True, False), repeat=size):
                c = list(zip(combo, pols, strict=True))
                if any(set(k) <= set(c) for k in clauses):
                    continue
                if all(any(env[n] == p for n, p in c) for env in models):
                    clauses.append(c)
    for env in envs:
        if all(any(env[n] == p for n, p in c) for c in clauses) != _eval_bool(e, env):
            return None
    return [frozenset(lit(n) if p else lit(["!", n]) for n, p in c) for c in clauses]


def cnf(e: Expr, var: dict[str, int], n_bool: int) -> list[list[int]] | None:
    """Clauses for ``e`` (None when there would be more than _MAX_CLAUSES)."""

    def lit(x: Expr) -> int:
        neg = isinstance(x, list) and x[0] == "!"
        base = x[1] if neg else x
        v = var[base] if isinstance(base, str) else n_bool + base[1] + 1
        return -v if neg else v

    def go(x: Expr) -> list[frozenset[int]] | None:
        if x is True:
            return []
        if x is False:
            return [frozenset()]
        if isinstance(x, str) or x[0] in ("a", "!"):
            return [frozenset([lit(x)])]
        parts = [go(y) for y in x[1:]]
        if any(p is None for p in parts):
            return None
        if x[0] == "&&":
            out = [c for p in parts for c in p]  # type: ignore[union-attr]
        else:
            out = [frozenset()]
            for p in parts:
                out = [a | b for a in out for b in p]  # type: ignore[union-attr]
                if len(out) > _MAX_CLAUSES:
                    return None
        out = [c for c in out if not any(-v in c for v in c)]
        return out if len(out) <= _MAX_CLAUSES else None

    res = go(_nnf(e, False))
    if res is None:
        res = _cnf_by_table(e, lit)
    if res is None:
        return None
    uniq = sorted({tuple(sorted(c, key=abs)) for c in res})
    return [list(c) for c in uniq]


class _Survey:
    """Counts of the AST node types and operators met in Features.json (recorded in ``_source``)."""

    def __init__(self) -> None:
        self.types: dict[str, int] = {}
        self.ops: dict[str, int] = {}

    def visit(self, n: Any) -> None:
        if isinstance(n, dict):
            t = n.get("_type")
            if t:
                self.types[t] = self.types.get(t, 0) + 1
            if t in ("AST.BinaryOp", "AST.UnaryOp"):
                self.ops[n["op"]] = self.ops.get(n["op"], 0) + 1
            for v in n.values():
                self.visit(v)
        elif isinstance(n, list):
            for v in n:
                self.visit(v)


def _constraint(conv: Converter, cid: str, owner: str, e: Expr) -> dict[str, Any]:
    """One constraint record; an ``_AMENDMENTS`` entry guards it (Arm's text kept beside)."""
    c: dict[str, Any] = {"id": cid, "owner": owner, "text": conv.render(e), "expr": e}
    if cid in _AMENDMENTS:
        guard, why = _AMENDMENTS[cid]
        c["amended"] = {"arm_text": c["text"], "why": why}
        if e[0] == "-->":  # G --> body  becomes  (G && guard) --> body
            g = e[1][1:] if isinstance(e[1], list) and e[1][0] == "&&" else [e[1]]
            e = ["-->", ["&&", *g, guard], e[2]]
        else:
            e = ["-->", guard, e]
        c["expr"], c["text"] = e, conv.render(e)
    return c


def _arch_constraints(features: dict[str, Any], conv: Converter, survey: _Survey) -> list[dict[str, Any]]:
    """Every constraint of Features.json: per parameter (ARCH-<name>-<n>), then global (ARCH-GLOBAL-<n>)."""
    listed: list[tuple[str, str, dict[str, Any]]] = []
    for p in features["parameters"]:
        if p["_type"] != "Parameters.Boolean" or p.get("values") != [True, False]:
            raise ValueError(f"{p['name']}: only boolean parameters are supported")
        listed += [(f"ARCH-{p['name']}-{i}", p["name"], node) for i, node in enumerate(p["constraints"], 1)]
    listed += [(f"ARCH-GLOBAL-{i}", "GLOBAL", node) for i, node in enumerate(features.get("constraints", []), 1)]
    constraints = []
    for cid, owner, node in listed:
        survey.visit(node)
        constraints.append(_constraint(conv, cid, owner, conv.expr(node)))
    return constraints


def _extra_constraints(conv: Converter) -> list[dict[str, Any]]:
    """The EXTRA-<feature>-1 rules: Exception levels and states from ID_AA64PFR0_EL1 (``_EXTRA_EL_RULES``)."""
    out = []
    for feat, fld, minimum in _EXTRA_EL_RULES:
        fidx = conv._field_var("ID_AA64PFR0_EL1", fld, "AArch64")
        atom = conv._atom(fidx, "UInt", ">=", minimum)
        e = ["<->", feat, atom]
        out.append({"id": f"EXTRA-{feat}-1", "owner": feat, "text": conv.render(e), "expr": e,
                    "source": _EXTRA_SOURCE})
    return out


def _definitions(constraints: list[dict[str, Any]], conv: Converter) -> dict[str, list[dict[str, Any]]]:
    """Per feature, the constraints that define it (see ``_definition``), with the fields they read."""
    definitions: dict[str, list[dict[str, Any]]] = {}
    for c in constraints:
        d = _definition(c["expr"], [])
        if d is None or d["feature"] != c["owner"]:
            continue
        d["rule"] = c["id"]
        fidxs = {conv.atoms[a][0] for a in _atoms_in(d["expr"], [])}
        d["fields_mapped"] = all(conv.fields[i]["mapped"] for i in fidxs)
        d["field_only"] = not _features_in(d["expr"], set())
        definitions.setdefault(d.pop("feature"), []).append(d)
    return definitions


def _source(features: dict[str, Any], registers: dict[str, Any], conv: Converter,
            survey: _Survey) -> dict[str, Any]:
    """The ``_source`` record: Arm's version and licence, the register names used, the AST survey."""
    signed_mismatch = sorted({f"{conv.fields[a[0]]['reg']}.{conv.fields[a[0]]['field']}"
                              for a in conv.atoms if a[1] == "SInt" and conv.fields[a[0]]["mapped"]
                              and conv.fields[a[0]]["order"] != "signed"})
    meta = features["_meta"]
    return {
        "file": "Features.json (Arm A-profile Architecture Machine Readable Specification, feature model)",
        "architecture": meta["version"]["architecture"],
        "build": meta["version"]["build"],
        "ref": meta["version"]["ref"],
        "schema": meta["version"]["schema"],
        "timestamp": meta["version"]["timestamp"],
        "copyright": meta["license"]["copyright"],
        "license": meta["license"]["info"] + " See ARM-LICENSE.txt.",
        "registers": "field names mapped onto registers.json (Linux "
                     + registers["_source"].get("kernel", "?") + " sysreg names)",
        "generator": "tools/gen_features.py",
        "ast_survey": {"node_types": dict(sorted(survey.types.items())), "ops": dict(sorted(survey.ops.items()))},
        "sint_on_fields_linux_calls_unsigned": signed_mismatch,
    }


def build(features: dict[str, Any], registers: dict[str, Any]) -> dict[str, Any]:
    conv = Converter(features, registers)
    survey = _Survey()
    constraints = _arch_constraints(features, conv, survey) + _extra_constraints(conv)
    definitions = _definitions(constraints, conv)
    eliminated = eliminate(constraints, conv.atoms, conv.fields)
    for e in eliminated:
        e["text"] = conv.render(e["expr"])
    names = conv.params + conv.undeclared
    var = {n: i + 1 for i, n in enumerate(names)}
    for rec in (*constraints, *eliminated):
        rec["cnf"] = cnf(rec["expr"], var, len(names))
    versions = sorted((p for p in conv.params if _VERSION_RE.match(p)),
                      key=lambda v: tuple(int(x) for x in _VERSION_RE.match(v).groups()))  # type: ignore[union-attr]
    return {
        "_source": _source(features, registers, conv, survey),
        "parameters": conv.params,
        "undeclared": conv.undeclared,
        "versions": versions,
        # [register, field, width, mapped, lsb (mapped fields only)]
        "fields": [[f["reg"], f["field"], f["width"], f["mapped"], f.get("lsb")] for f in conv.fields],
        "atoms": conv.atoms,
        "constraints": constraints,
        "definitions": definitions,
        "eliminated": eliminated,
        "unmapped": sorted(f"{k} ({'/'.join(sorted(v))})" for k, v in conv.unmapped.items()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("features", type=Path, nargs="?", help="path to AARCHMRS Features.json")
    ap.add_argument("-o", "--output", type=Path, default=OUT)
    ap.add_argument("--registers", type=Path, default=REGISTERS)
    ap.add_argument("--program", action="store_true",
                    help="only rewrite the precompiled program (cpumodel/features/_program.py) from the shipped data")
    args = ap.parse_args()
    if args.program or args.features is None:
        if not args.program:
            ap.error("the path to Features.json is required (or --program)")
        feature_program.write()
        return
    data = build(json.loads(args.features.read_text()), json.loads(args.registers.read_text()))
    text = json.dumps(data, separators=(",", ":"))
    args.output.write_text(text + "\n")
    lic = args.features.parent / "LICENSE.txt"
    if lic.exists():
        src = data["_source"]
        head = (f"cpumodel/data/features.json is derived from Arm's A-profile Architecture Machine Readable\n"
                f"Specification, Features.json ({src['architecture']}, build {src['build']}, {src['timestamp']}).\n"
                f"{src['copyright']}\n{src['license'].replace(' See ARM-LICENSE.txt.', '')}\n"
                "Arm's notice, as distributed with that file:\n\n")
        (args.output.parent / "ARM-LICENSE.txt").write_text(head + lic.read_text())
    print(f"wrote {args.output} ({len(text)} bytes): {len(data['parameters'])} parameters, "
          f"{len(data['constraints'])} constraints, {len(data['fields'])} fields "
          f"({len(data['unmapped'])} unmapped), {len(data['definitions'])} defined features")
    if args.output == OUT:
        feature_program.write()


if __name__ == "__main__":
    main()
