"""Explanation: why a constraint fails, in words, and what field values mean.

Given the state that evaluation left (``State``: feature values, field regions, and which
constraint forced which feature), these turn a violated constraint into a ``Violation`` whose
message names the fields and values involved ("FEAT_SVE requires FEAT_FCMA: ID_AA64PFR0_EL1.SVE=1
but ID_AA64ISAR1_EL1.FCMA=0 (FEAT_FCMA needs FCMA >= 1)"), and describe which values of a
field mean which features (``field_features``, ``features_for_value``).
"""

from __future__ import annotations

from cpumodel.features.notation import operand, render
from cpumodel.features.program import Program
from cpumodel.features.types import Def, Expr, FieldKey, State, Tri, Violation


class Explanation(Program):
    # -- renderings -------------------------------------------------------------------------
    # -- explanations ---------------------------------------------------------------------
    def _fmt_field(self, k: int, st: State) -> str:
        reg, fld = self._fkeys[k]
        if k in st.values:
            v = st.values[k]
            s = f"{reg}.{fld}={v}"
            if self._signed_atoms(k) and v >= 1 << (self._fwidth[k] - 1):
                s += f" (signed {v - (1 << self._fwidth[k])})"
            return s
        return f"{reg}.{fld} (unknown)"

    def _short(self, e: Expr, qualified: bool = False) -> str:
        """Rendering without UInt(), with bare field names unless ``qualified`` (REG.FIELD)."""
        return render(e, lambda i: self._short_atom(i, qualified))

    def _short_paren(self, e: Expr, qualified: bool = False) -> str:
        return operand(e, lambda i: self._short_atom(i, qualified))

    def _short_atom(self, i: int, qualified: bool) -> str:
        k, fn, aop, val = self._atoms[i]
        name = ".".join(self._fkeys[k]) if qualified else self._fkeys[k][1]
        ref = name if fn == "UInt" else f"SInt({name})"
        if aop == "in":
            return f"{ref} in {{{', '.join(map(str, val))}}}"
        return f"{ref} {aop} {val}"

    def _kval(self, e: Expr, st: State) -> Tri:
        return self._kdom(e, st.b, st.d)

    def _def_for(self, fi: int, st: State) -> Def | None:
        """The definition that gives feature ``fi`` its current value from fields, if any."""
        val = st.b[fi]
        for d in self._defs[fi]:
            if d.kind == "iff" and (d.guard is None or self._kval(d.guard, st) is True) \
                    and self._kval(d.expr, st) is val:
                return d
        return None

    def _why(self, fi: int, st: State, keys: list[int], depth: int = 0) -> str:
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
        d = self._def_for(fi, st)
        if d is None:
            c = self._implied_by(fi, st)
            if c is not None:
                return self._why_forced(fi, c, st, keys, depth)
        else:
            ks: list[int] = []
            self._collect(d.expr, [], ks)
            ks = [k for k in dict.fromkeys(ks) if k in st.values]
            keys.extend(ks)
            ev = ", ".join(self._fmt_field(k, st) for k in ks) or self._cons[d.rule].id
            if val:
                return ev
            return f"{ev} ({name} needs {self._short(d.expr)})"
        return f"{name} is {'true' if val else 'false'}"

    def _why_forced(self, fi: int, c: int, st: State, keys: list[int], depth: int) -> str:
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

    def _implied_by(self, fi: int, st: State) -> int | None:
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

    def _facts(self, e: Expr, want: bool, st: State, keys: list[int], feats: list[int]) -> list[str]:
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

    def _names_of(self, e: Expr, want: bool, st: State) -> str:
        """Short name for the part of ``e`` that has value ``want`` (e.g. the failing conjuncts)."""
        if isinstance(e, str):
            return e if want else f"not {e}"
        if isinstance(e, tuple) and e[0] == "!":
            return self._names_of(e[1], not want, st)
        if isinstance(e, tuple) and e[0] in ("&&", "||"):
            decisive = (e[0] == "&&") != want
            kids = [x for x in e[1:] if self._kval(x, st) is want] if decisive else list(e[1:])
            if decisive:
                return " and ".join(self._names_of(x, want, st) for x in kids)
            sep = " and " if want else " or "
            return sep.join(self._names_of(x, want, st) for x in kids)
        return self._short(e) if want else f"!({self._short(e)})"

    def _violation(self, c: int, st: State) -> Violation:
        con = self._cons[c]
        e = self._cexpr[c]
        keys: list[int] = []
        feats: list[int] = []
        # peel guards that hold: G --> (rest) with G true and rest false
        while isinstance(e, tuple) and e[0] == "-->" and self._kval(e[1], st) is True \
                and isinstance(e[2], tuple) and e[2][0] in ("-->", "<->") and self._kval(e[2], st) is False:
            e = e[2]
        msg: str
        if isinstance(e, tuple) and e[0] == "-->" and self._kval(e[1], st) is True and self._kval(e[2], st) is False:
            lhs = self._names_of(e[1], True, st)
            need = e[2]
            if isinstance(need, tuple) and need[0] == "!":
                head = f"{lhs} rules out {self._names_of(need[1], True, st)}"
            elif isinstance(need, tuple) and need[0] == "||":
                head = f"{lhs} requires one of {', '.join(self._short(x, True) for x in need[1:])}"
            elif self._is_feats(need):
                head = f"{lhs} requires {self._req(need, st)}"
            else:
                head = f"{lhs} requires {self._short(need, True)}"
            have = self._facts(e[1], True, st, keys, feats)
            miss = self._facts(need, False, st, keys, feats)
            msg = f"{head}: {'; '.join(dict.fromkeys(have))} but {'; '.join(dict.fromkeys(miss))}"
        elif isinstance(e, tuple) and e[0] == "<->":
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
        if isinstance(e, tuple) and e[0] in ("&&", "!"):
            return all(self._is_feats(x) for x in e[1:])
        return False

    def _req(self, need: Expr, st: State) -> str:
        if isinstance(need, tuple) and need[0] == "&&":
            return " and ".join(self._req(x, st) for x in need[1:] if self._kval(x, st) is not True)
        if isinstance(need, tuple) and need[0] == "!":
            return f"not {self._short(need[1])}"
        return self._short(need)

    def _keys_out(self, keys: list[int]) -> tuple[FieldKey, ...]:
        return tuple(self._fkeys[k] for k in dict.fromkeys(keys) if self._fmapped[k])

    def _joint_violation(self, core: list[int], st: State) -> Violation:
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


    # -- what field values mean ----------------------------------------------------------------
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
        if isinstance(g, tuple) and g[0] == "&&":
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
        bit = self._region(k, value)
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

