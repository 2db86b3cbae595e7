"""The README's facts are the code's: counts, and the outputs of its examples.

Each number the README states about the data (constraints, rules, shipped cores) is computed here
from the code; the `cpumodel explain` and `cpumodel list` examples are run and every table row the
README shows must be a row of the real output (the README trims borders and long tables).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import PROFILES, REPO

README = (REPO / "README.md").read_text(encoding="utf-8")


def _num(text: str) -> int:
    return int(text.replace(",", ""))


def _rules() -> dict[str, object]:
    from cpumodel.rules import all_rules

    return all_rules()


def test_constraint_counts() -> None:
    import json

    rules = _rules()
    constraints = json.loads((REPO / "cpumodel" / "data" / "features.json").read_text())["constraints"]
    arch = sum(1 for c in constraints if c["id"].startswith("ARCH-"))
    extra = sum(1 for c in constraints if c["id"].startswith("EXTRA-"))
    # every constraint is a rule of its own ID (ARCH-INCOMPLETE is a rule, not a constraint)
    assert all(c["id"] in rules for c in constraints)
    m = re.search(r"and the ([\d,]+)\s+feature constraints of Arm's machine-readable specification", README)
    assert m and _num(m[1]) == arch, (m and m[1], arch)
    m = re.search(r"([\d,]+) generated\s+`ARCH-\*` constraints and ([\d,]+) `EXTRA-\*` ones", README)
    assert m and (_num(m[1]), _num(m[2])) == (arch, extra), (m and m.groups(), arch, extra)
    m = re.search(r"`cpumodel/data/features.json`: ([\d,]+) Arm constraints \(\+(\d+) cpumodel additions\)", README)
    assert m and (_num(m[1]), _num(m[2])) == (arch, extra), (m and m.groups(), arch, extra)
    m = re.search(r"\((\d+) hand-written architecture rules `A001`-`A(\d+)`", README)
    hand = sorted(r for r in rules if re.fullmatch(r"A\d{3}", r))
    assert m and int(m[1]) == len(hand) and f"A{m[2]}" == hand[-1], (m and m.groups(), hand)


def test_rule_id_ranges_exist() -> None:
    rules = _rules()
    section = README[README.index("- `cpumodel rules` lists every rule"):]
    section = section[:section.index("\n\n")]
    for lo, hi in re.findall(r"`([A-Z]\d{3})`-`([A-Z]\d{3})`", section):
        ids = sorted(r for r in rules if re.fullmatch(rf"{lo[0]}\d{{3}}", r))
        assert ids and ids[0] == lo and ids[-1] == hi, (lo, hi, ids)


def test_shipped_core_count() -> None:
    m = re.search(r"`profiles/` ships (\d+) real cores \(([^)]*)", README)
    hosts = [p for p in PROFILES.glob("*.yaml") if re.search(r"^role: host$", p.read_text(), re.M)]
    assert m and int(m[1]) == len(hosts), (m and m[1], [p.name for p in hosts])


def _example_rows(command: str) -> list[str]:
    """The table rows the README shows under ``$ cpumodel COMMAND``."""
    start = README.index(f"$ cpumodel {command}\n")
    block = README[start:README.index("```", start)]
    return [line.rstrip() for line in block.splitlines()[1:] if line.startswith(("│", "┃"))]


@pytest.mark.parametrize("command", ["explain ID_AA64ISAR0_EL1=0x0000100010211120", "list"])
def test_example_output(command: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "CPUMODEL_PATH")}
    env.update(PYTHONPATH=str(REPO), NO_COLOR="1")
    out = subprocess.run([sys.executable, "-m", "cpumodel", *command.split()], capture_output=True, text=True,
                         cwd=REPO, env=env, timeout=120, check=True).stdout
    lines = [line.rstrip() for line in out.splitlines()]
    rows = _example_rows(command)
    assert rows
    for row in rows:
        assert any(line.startswith(row) for line in lines), f"README row not in the output: {row!r}"
    title = README[README.index(f"$ cpumodel {command}\n"):].splitlines()[1]
    if not title.startswith(("┃", "│")):
        assert title.rstrip() in lines, title
