"""Precompute the architecture-version floors into ``cpumodel/data/version_floors.json``.

``FeatureModel.version_floor(v)`` (the minimal ID field values a version mandates) takes about
0.1 s per version to derive from Arm's constraints; resolving a profile with ``arch:`` needs one,
so the results are shipped. tests/test_data_current.py checks they match a fresh derivation.
Usage: python -m tools.gen_floors
"""

from __future__ import annotations

import json

from cpumodel.features import FeatureModel
from cpumodel.regdb import DATA

OUT = DATA / "version_floors.json"


def build() -> dict[str, object]:
    fm = FeatureModel.load()
    fm._shipped_floors_loaded = True  # derive afresh, ignoring any shipped file
    fm._floors.clear()
    floors = {}
    for v in fm.versions():
        ch = fm.version_floor(v)
        floors[v] = [[reg, field, val, ch.reasons.get((reg, field), "")] for (reg, field), val in sorted(ch.items())]
    return {"_source": f"derived by tools/gen_floors.py from cpumodel/data/features.json ({fm.spec_version})",
            "floors": floors}


def main() -> None:
    OUT.write_text(json.dumps(build(), indent=0) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
