"""Checking: evaluation plus explanation, the answer ``cpumodel check`` reports per model."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from cpumodel.features.evaluation import Budget, Evaluation
from cpumodel.features.explanation import Explanation
from cpumodel.features.types import FieldKey, Violation


class Checker(Evaluation, Explanation):
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
                except Budget:
                    out.append(self._joint_violation(self._derived_of[c], st))
            else:
                out.append(self._violation(c, st))
        if rest:
            for core in self._search(st, rest):
                out.append(self._joint_violation(core, st))
        return out

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
