"""Evaluation: running the constraint program on one model, in three sound stages.

1. ``_start`` (stage 0, table-driven): the regions of the known fields, the features that known
   fields define, chaining along two-literal clauses (bit sets of implied literals), and the
   constraints that stay open: those with a clause no known literal satisfies;
2. ``_propagate``: over the open constraints in three-valued (Kleene) logic. A constraint that
   is false is a violation; one that would become false for one value of an unknown feature
   forces the other value; unknown fields lose the regions that would falsify it. Forcings to
   True come first, so that "FEAT_X needs v8Ap2, and v8Ap2 needs FEAT_Y" is reported at the rule
   whose feature is missing;
3. ``_search``: a small DPLL search over each group of constraints still undecided. A group with
   no solution is reported with a minimal subset of its constraints (a search that exceeds its
   budget reports nothing and counts in ``incomplete_searches``: rule ARCH-INCOMPLETE says so).

Each stage derives nothing that a satisfying assignment of the unknowns could contradict.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from cpumodel.features.program import Program
from cpumodel.features.types import FeatureError, FieldKey, State, Tri

_SEARCH_BUDGET = 20000  # DPLL nodes per group before giving up (then nothing is reported)
_STEP_CACHE_MAX = 1 << 15  # propagation steps memoised (a few thousand cover a fleet's models; cleared when full)


class Budget(Exception):
    """A search went over its budget."""


class Evaluation(Program):
    # -- stage 0 ----------------------------------------------------------------------------
    def _start(self, fields: Mapping[FieldKey, int], assert_true: Iterable[str],
               assert_false: Iterable[str]) -> tuple[State, list[int]]:
        """Stage 0: field regions, defined features, implication chaining, and the constraints
        that the known values do not yet satisfy (clause by clause, with bit sets)."""
        d = list(self._full)
        values: dict[int, int] = {}
        sat = self._known_fields(fields, d, values)
        b: list[Tri] = [None] * len(self._names)
        asserted = self._asserted(b, assert_true, assert_false)
        # an arm64 CPU: AArch64 at EL1 unless ID_AA64PFR0_EL1.EL1 is known and says otherwise
        aa64 = self._aa64el1
        if aa64 >= 0 and b[aa64] is None and self._pfr0_el1 not in values:
            b[aa64] = True
        self._define(b, d)
        sat |= self._chain(b)
        st = State(b, d, values, asserted)
        return st, self._pending(sat)

    def _known_fields(self, fields: Mapping[FieldKey, int], d: list[int], values: dict[int, int]) -> int:
        """Narrow ``d`` to the known fields' regions; the clauses those satisfy."""
        kidx, lut, field_occ, width = self._kidx, self._lut, self._field_occ, self._fwidth
        sat = 0
        for key, v in fields.items():
            k = kidx.get(key)
            if k is None:
                continue
            tbl = lut[k]
            if tbl and 0 <= v < len(tbl):
                r = tbl[v]
            elif 0 <= v < 1 << width[k] and not tbl:
                r = self._region(k, v).bit_length() - 1
            else:
                raise ValueError(f"{key[0]}.{key[1]} = {v:#x} does not fit in {width[k]} bits")
            values[k] = v
            d[k] = 1 << r
            sat |= field_occ[k][r]
        return sat

    def _asserted(self, b: list[Tri], assert_true: Iterable[str], assert_false: Iterable[str]) -> set[int]:
        asserted: set[int] = set()
        for names, val in ((assert_true, True), (assert_false, False)):
            for n in names:
                i = self._feature_index(n)
                if b[i] is not None and b[i] != val:
                    raise FeatureError(f"{self._names[i]} asserted both true and false")
                b[i] = val
                asserted.add(i)
        return asserted

    def _define(self, b: list[Tri], d: list[int]) -> None:
        """The features that known fields define (in dependency order)."""
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

    def _chain(self, b: list[Tri]) -> int:
        """Chain along two-literal clauses; the clauses the known literals satisfy. A literal
        reached together with its negation (the model is inconsistent there) is left for
        propagation to sort out."""
        closure, occ = self._closure, self._occ
        sat = known = reach = 0
        for li, val in enumerate(b):
            if val is not None:
                li = 2 * li + (val is False)
                known |= 1 << li
                reach |= closure[li]
                sat |= occ[li]
        both = reach | known
        clash = both & self._even & (both >> 1)
        new = reach & ~known
        while clash:  # what follows from either side of a contradiction is not trusted here
            low = clash & -clash
            li = low.bit_length() - 1
            new &= ~(closure[li] | closure[li + 1] | low | low << 1)
            clash ^= low
        while new:
            low = new & -new
            li = low.bit_length() - 1
            b[li >> 1] = not li & 1
            sat |= occ[li]
            new ^= low
        return sat

    def _pending(self, sat: int) -> list[int]:
        """Constraints with a clause that no known literal satisfies (and those without clauses)."""
        open_ = self._all_clauses & ~sat
        owner = self._clause_owner
        pend = set(self._always)
        while open_:
            low = open_ & -open_
            pend.add(owner[low.bit_length() - 1])
            open_ ^= low
        return sorted(pend)

    # -- propagation ------------------------------------------------------------------------
    def _propagate(self, st: State, pend: Iterable[int], record: bool,
                   violated: list[int] | None) -> list[int] | None:
        """Propagate over ``pend``: violated constraints, forced features, narrowed fields.

        Forcings to True are applied before anything else (a constraint that could force a
        feature False or narrow a field waits in a second queue until the first is empty).
        Returns the constraints still undecided, or None on a conflict when ``violated`` is
        None (search mode); otherwise conflicts are appended to ``violated``.
        """
        active = set(pend)
        watch_f, watch_d = self._watches(st, active)
        queue = deque(sorted(active))
        queued = set(queue)
        later: deque[int] = deque()
        in_later: set[int] = set()
        b, d, local, memo = st.b, st.d, self._local, self._step_cache
        while queue or later:
            if queue:
                c = queue.popleft()
                queued.discard(c)
                full = False
            else:
                c = later.popleft()
                in_later.discard(c)
                full = True
            if c not in active:
                continue
            getf, getd = local[c] or self._getters(c)
            key = (c, full, getf(b), getd(d))
            step = memo.get(key)
            if step is None:
                step = self._step(c, st, full, record, watch_f, watch_d)
                if len(memo) >= _STEP_CACHE_MAX:
                    memo.clear()
                memo[key] = step[:5]
                wake = step[5]
            elif step[0] is None:  # undecided: most such steps (3 in 4 over the benchmark's set) change nothing
                wake = self._replay(c, st, step, record, watch_f, watch_d) if step[3] or step[4] else ()
            r, dead, defer = step[0], step[1], step[2]
            if r is None and not dead:
                if defer and c not in in_later:
                    later.append(c)
                    in_later.add(c)
                for w in wake:
                    if w in active and w not in queued:
                        queue.append(w)
                        queued.add(w)
                continue
            active.discard(c)
            if r is not True:  # false, or no value of an unknown satisfies it
                if violated is None:
                    return None
                violated.append(c)
        return sorted(active)

    def _step(self, c: int, st: State, full: bool, record: bool, watch_f: dict[int, list[int]],
              watch_d: dict[int, list[int]]) -> tuple[Any, ...]:
        """One propagation step on ``c``: (value, dead, deferred, features forced as (index, value),
        fields narrowed as (index, regions), constraints to wake). All but the last depend only on
        ``full`` and the values of ``c``'s own variables, so ``_propagate`` memoises them and
        ``_replay`` redoes the changes on another model where those values are the same."""
        b, d = st.b, st.d
        r = (self._evals[c] or self._eval(c))(b, d)
        if r is not None:
            return r, False, False, (), (), []
        fs, ks = self._cfeats[c], self._cfields[c]
        before_b, before_d = [b[v] for v in fs], [d[k] for k in ks]
        wake, dead, defer = self._narrow(c, st, full, record, watch_f, watch_d)
        forced = tuple((v, b[v]) for v, old in zip(fs, before_b, strict=True) if b[v] is not old)
        narrowed = tuple((k, d[k]) for k, old in zip(ks, before_d, strict=True) if d[k] != old)
        return None, dead, defer, forced, narrowed, wake

    @staticmethod
    def _replay(c: int, st: State, step: tuple[Any, ...], record: bool, watch_f: dict[int, list[int]],
                watch_d: dict[int, list[int]]) -> list[int]:
        """Apply a memoised step's forcings and narrowings (as ``_narrow`` made them); the constraints to wake."""
        wake: list[int] = []
        b, d = st.b, st.d
        for v, val in step[3]:
            b[v] = val
            if record:
                st.reason[v] = c
            wake.extend(watch_f.get(v, ()))
        for k, keep in step[4]:
            d[k] = keep
            wake.extend(watch_d.get(k, ()))
        return wake

    def _watches(self, st: State, active: set[int]) -> tuple[dict[int, Any], dict[int, Any]]:
        """The constraints to wake when a feature is forced or a field narrowed: every constraint
        reading it, in order (``Program._build_readers``). ``_propagate`` wakes only those still
        active; a feature is forced, and a field narrowed, only while unknown, so these are exactly
        the active constraints that read an unknown feature or a field not yet narrowed to one region."""
        return self._readers_f, self._readers_d

    def _narrow(self, c: int, st: State, full: bool, record: bool, watch_f: dict[int, list[int]],
                watch_d: dict[int, list[int]]) -> tuple[list[int], bool, bool]:
        """Force the unknown features and narrow the fields of undecided constraint ``c``.

        Returns the constraints to wake, whether ``c`` is dead (no value of some unknown
        satisfies it) and whether a forcing to False or a narrowing waits (``full`` unset)."""
        wake: list[int] = []
        dead, defer = self._force_features(c, st, full, record, watch_f, wake)
        if not dead:
            dead, defer_d = self._narrow_fields(c, st, full, watch_d, wake)
            defer |= defer_d
        return wake, dead, defer

    def _force_features(self, c: int, st: State, full: bool, record: bool, watch_f: dict[int, list[int]],
                        wake: list[int]) -> tuple[bool, bool]:
        """Give each unknown feature of ``c`` the value that ``c`` forces; (dead, deferred)."""
        ev = self._evals[c] or self._eval(c)
        b, d = st.b, st.d
        defer = False
        for v in self._cfeats[c]:
            if b[v] is not None:
                continue
            b[v] = True
            t = ev(b, d)
            b[v] = False
            f = ev(b, d)
            b[v] = None
            if t is False:
                if f is False:
                    return True, defer
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
        return False, defer

    def _narrow_fields(self, c: int, st: State, full: bool, watch_d: dict[int, list[int]],
                       wake: list[int]) -> tuple[bool, bool]:
        """Drop the regions of ``c``'s unknown fields in which ``c`` is false; (dead, deferred)."""
        ev = self._evals[c] or self._eval(c)
        b, d = st.b, st.d
        defer = False
        for k in self._cfields[c]:
            dk = d[k]
            if not dk & (dk - 1):
                continue
            keep = 0
            bit = 1
            while bit <= dk:
                if dk & bit:
                    d[k] = bit
                    if ev(b, d) is not False:
                        keep |= bit
                bit <<= 1
            d[k] = dk
            if keep == dk:
                continue
            if keep == 0:
                return True, defer
            if not full:
                defer = True
                continue
            d[k] = keep
            wake.extend(watch_d.get(k, ()))
        return False, defer

    # -- search -----------------------------------------------------------------------------
    def _groups(self, st: State, cs: list[int]) -> list[list[int]]:
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

    def _sat(self, st: State, cs: list[int], budget: list[int]) -> bool:
        """DPLL: whether some assignment of the unknowns satisfies ``cs`` (``budget``: nodes left)."""
        budget[0] -= 1
        if budget[0] < 0:
            raise Budget
        work = State(list(st.b), list(st.d), st.values, st.asserted)
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

    def _group_sat(self, st: State, g: list[int]) -> bool:
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

    def _core(self, st: State, cs: list[int]) -> list[int]:
        """A minimal unsatisfiable subset of ``cs`` (derived constraints replaced by their originals)."""
        orig: list[int] = []
        for c in cs:
            orig.extend(self._derived_of.get(c, [c]))
        orig = sorted(set(orig))
        core = list(orig)
        for c in orig:
            trial = [x for x in core if x != c]
            if trial and not self._sat(st, trial, [_SEARCH_BUDGET]):
                core = trial
        return core

    def _search(self, st: State, rest: list[int]) -> list[list[int]]:
        """Groups of undecided constraints that no assignment satisfies, each reduced to a minimal set."""
        bad: list[list[int]] = []
        for g in self._groups(st, rest):
            try:
                if not self._group_sat(st, g):
                    bad.append(self._core(st, g))
            except Budget:
                self.incomplete_searches += 1
        return bad

    # -- what the known fields imply ----------------------------------------------------------
    def features_of(self, fields: Mapping[FieldKey, int], assert_true: Iterable[str] = (),
                    assert_false: Iterable[str] = ()) -> dict[str, Tri]:
        """Every FEAT_* with the value the known fields imply (None: not determined)."""
        st, pend = self._start(fields, assert_true, assert_false)
        self._propagate(st, pend, record=False, violated=[])
        return {n: st.b[i] for i, n in enumerate(self._names) if n.startswith("FEAT_")}
