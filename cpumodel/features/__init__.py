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
given. A constraint is reported only when no assignment of the unknowns satisfies all
constraints. One module per job:

* ``program``: the constraint program (tables and evaluators), shipped precompiled in the
  generated ``_program`` module;
* ``evaluation``: running it on a model (stage 0, propagation, search);
* ``explanation``: why a constraint fails, in words; what field values mean;
* ``checking``: the two together (``check``, ``highest_version``);
* ``editing``: turning features on or off (``force``), version floors.
"""

from __future__ import annotations

from typing import ClassVar

from cpumodel.features.editing import Editing
from cpumodel.features.types import Constraint, FeatureError, FieldChanges, Violation

__all__ = ["Constraint", "FeatureError", "FeatureModel", "FieldChanges", "Violation"]


class FeatureModel(Editing):
    """Arm's feature model: ``check`` a model's ID fields, explain, ``force`` features, floors.

    ``FeatureModel.load()`` is the shipped model (precompiled); ``FeatureModel(data)`` builds
    one from features.json data.
    """

    _instance: ClassVar[FeatureModel | None] = None

    @classmethod
    def load(cls) -> FeatureModel:
        """The model from the shipped data (loaded once, then cached)."""
        if cls._instance is None:
            cls._instance = cls.precompiled()
        return cls._instance
