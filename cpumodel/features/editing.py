"""Editing: changing a model's field values to turn features on or off, and version floors.

``force`` finds the smallest field changes (a raise to turn a feature on, a lowering to turn it
off) that give a feature a value, then repairs what that breaks: turning a feature on also turns
on what it requires, turning it off also turns off what requires it. ``version_floor`` repairs
an all-zero model until an asserted architecture version holds (the shipped floors are
precomputed by tools/gen_floors.py).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping

from cpumodel.features.checking import Checker
from cpumodel.features.types import Def, FeatureError, FieldChanges, FieldKey, State


class Editing(Checker):
    #: read the floors tools/gen_floors.py shipped (it turns this off to derive them afresh)
    _use_shipped_floors = True

    def _init_runtime(self) -> None:
        super()._init_runtime()
        self._floors: dict[str, FieldChanges] = {}

    def _settable(self, fi: int, st: State) -> list[Def]:
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

    def _solve_def(self, d: Def, want: bool, st: State, values: dict[int, int]) -> dict[int, int] | None:
        """Smallest field change (raise for on, lowering for off) that gives ``d.expr`` the value ``want``.

        One field first (each in ``_candidates`` order), then two; None when neither does it.
        """
        ks: list[int] = []
        self._collect(d.expr, [], ks)
        ks = [k for k in dict.fromkeys(ks) if k in values]
        if not ks:
            return None
        if self._holds(d, want, st, {}):
            return {}
        for k in ks:
            for v in self._candidates(k, want, values):
                if v != values[k] and self._holds(d, want, st, {k: v}):
                    return {k: v}
        for i, k1 in enumerate(ks):
            for k2 in ks[i + 1:]:
                for v1 in self._candidates(k1, want, values):
                    for v2 in self._candidates(k2, want, values):
                        if self._holds(d, want, st, {k1: v1, k2: v2}):
                            return {k1: v1, k2: v2}
        return None

    def _holds(self, d: Def, want: bool, st: State, assign: dict[int, int]) -> bool:
        """Whether ``d.expr`` has the value ``want`` with the fields ``assign`` written (``st`` is left as it was)."""
        saved = {k: st.d[k] for k in assign}
        for k, v in assign.items():
            st.d[k] = self._region(k, v)
        r = self._kval(d.expr, st)
        for k, v in saved.items():
            st.d[k] = v
        return r is want

    def _candidates(self, k: int, want: bool, values: dict[int, int]) -> list[int]:
        """Values of field ``k`` worth trying, one per region edge, nearest first: raising first for on."""
        size = 1 << self._fwidth[k]
        cs = [*self._cuts[k], size]
        vals = set(cs[:-1]) | {c - 1 for c in cs[1:]}
        cur = self._order_key(k, values[k])
        up = sorted((v for v in vals if self._order_key(k, v) >= cur), key=lambda v: self._order_key(k, v))
        down = sorted((v for v in vals if self._order_key(k, v) <= cur), key=lambda v: -self._order_key(k, v))
        return (up + down) if want else (down + up)

    def _apply(self, fi: int, want: bool, st: State) -> dict[int, int]:
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
                st.d[k] = self._region(k, v)
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
        for round_ in range(500):
            progressed = False
            while todo:
                fi, want, why = todo.popleft()
                progressed |= self._reach_goal(fi, want, why, cur, at, locked, changes)
            st, pend = self._start(cur, at, ())
            violated: list[int] = []
            rest = self._propagate(st, pend, record=True, violated=violated)
            if rest:
                for core in self._search(st, rest):
                    violated.append(core[-1])
            new = [c for c in violated if self._cid_of(c) not in base]
            if not new:
                return changes
            c = new[0]
            fix = [] if goals and not progressed and round_ > 0 else self._pick_fix(c, st, locked, prefer_on)
            if not fix:
                v = self._violation(c, st) if c < len(self._cons) else None
                raise FeatureError(f"cannot make the change without breaking {self._cid_of(c)}"
                                   + (f": {v.message}" if v else ""))
            rule = f"{self._cid_of(c)} ({self._cons[c].text})" if c < len(self._cons) else self._cid_of(c)
            for fi, want in fix:
                todo.append((fi, want, f"{'required' if want else 'ruled out'} by {rule}"))
        raise FeatureError("field changes did not settle")

    def _reach_goal(self, fi: int, want: bool, why: str, cur: dict[FieldKey, int], at: list[str],
                    locked: dict[int, bool], changes: FieldChanges) -> bool:
        """Write the fields that give feature ``fi`` the value ``want`` into ``cur`` and
        ``changes``; whether a field changed."""
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
        progressed = False
        for k, v in self._apply(fi, want, st).items():
            key = self._fkeys[k]
            if cur.get(key) != v:
                progressed = True
            cur[key] = v
            changes[key] = v
            changes.reasons[key] = f"{self._names[fi]} {'on' if want else 'off'}: {why}"
        return progressed

    def _pick_fix(self, c: int, st: State, locked: dict[int, bool], prefer_on: bool) -> list[tuple[int, bool]]:
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

    def _source_of(self, v: int, st: State, locked: dict[int, bool], env: set[int],
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

    def _defs_by_rule(self) -> dict[int, list[tuple[int, Def]]]:
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
            self._load_shipped_floor(v)
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

    def _load_shipped_floor(self, v: str) -> None:
        """Version ``v``'s floor as tools/gen_floors.py precomputed it (deriving one takes ~0.1 s), from
        its module ``_floors.py``: the rows of data/version_floors.json, their reasons in one table."""
        if not self._use_shipped_floors:
            return
        from cpumodel.features._floors import FLOORS, REASONS  # data/version_floors.json, as literals

        rows = FLOORS.get(v)
        if rows is None:
            return
        ch = FieldChanges()
        for reg, field, val, why, prefixed in rows:
            ch[(reg, field)] = val
            ch.reasons[(reg, field)] = f"{v}: {REASONS[why]}" if prefixed else REASONS[why]
        self._floors[v] = ch

    def zero_model(self) -> dict[FieldKey, int]:
        """Every mapped field at 0, except AArch64 at EL0/EL1 (the base of ``version_floor``)."""
        z = {key: 0 for k, key in enumerate(self._fkeys) if self._fmapped[k]}
        z[("ID_AA64PFR0_EL1", "EL0")] = 1
        z[("ID_AA64PFR0_EL1", "EL1")] = 1
        return z

