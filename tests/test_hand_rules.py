"""Each hand-written rule with a passing and a failing example."""

from __future__ import annotations

import pytest

from cpumodel.resolve import resolve
from cpumodel.rules import Context, hand_rules


def findings(path, rule_id: str) -> list:  # type: ignore[no-untyped-def,type-arg]
    model = resolve(str(path))
    r = hand_rules()[rule_id]
    assert r.check is not None
    return list(r.check(model, Context()))


@pytest.mark.parametrize(("rule_id", "good", "bad", "line"), [
    ("A001", "ID_AA64PFR0_EL1: {EL0: 1, EL1: 1, SVE: IMP}", "ID_AA64PFR0_EL1: {EL0: 1, EL1: 1, SVE: 7}", 2),
    ("A001", "ID_PFR0_EL1: {State1: 3}", "ID_PFR0_EL1: {State1: 4}", 2),
    ("A002", "ID_PFR0_EL1: 0x00000131", "ID_PFR0_EL1: 0x100000131", 2),
    ("A003", "CTR_EL0: 0x8444c004", "CTR_EL0: 0x0444c004", 2),
    ("A004", "ID_DFR0_EL1: {MProfDbg: 0}", "ID_DFR0_EL1: {MProfDbg: 1}", 2),
])
def test_rule_pass_and_fail(write, rule_id: str, good: str, bad: str, line: int) -> None:  # type: ignore[no-untyped-def]
    assert findings(write("good.yaml", f"registers:\n  {good}\n"), rule_id) == []
    got = findings(write("bad.yaml", f"registers:\n  {bad}\n"), rule_id)
    assert len(got) == 1
    f = got[0]
    assert f.rule == rule_id and f.severity == "error"
    assert f.location is not None and f.location.line == line
    assert f.register and f.source


def test_a001_names_allowed_values(write) -> None:  # type: ignore[no-untyped-def]
    f = findings(write("b.yaml", "registers:\n  ID_AA64PFR0_EL1: {EL0: 1, EL1: 1, SVE: 7}\n"), "A001")[0]
    assert f.field == "SVE" and f.asked == 7
    assert "0x0 NI" in (f.allowed or "") and "0x1 IMP" in (f.allowed or "")


def test_a001_points_at_field_line(write) -> None:  # type: ignore[no-untyped-def]
    p = write("b.yaml", "registers:\n  ID_AA64PFR0_EL1:\n    EL0: 1\n    EL1: 1\n    SVE: 9\n")
    f = findings(p, "A001")[0]
    assert (f.location.line, f.location.column) == (5, 10)


def test_fields_without_named_values_are_free(write) -> None:  # type: ignore[no-untyped-def]
    # MIDR_EL1.PartNum is a plain field: any value is architecturally fine.
    assert findings(write("m.yaml", "registers:\n  MIDR_EL1: 0x41ffffff\n"), "A001") == []


def test_p001_unknown_ignore(write) -> None:  # type: ignore[no-untyped-def]
    p = write("i.yaml", "ignore: [A0001, A002, 'ARCH-*']\nregisters:\n  MIDR_EL1: 0x410fd070\n")
    got = findings(p, "P001")
    assert [f.message for f in got] == ["ignore entry 'A0001' matches no rule (did you mean A001?)"]
    assert got[0].location.line == 1


def test_p001_knows_every_generated_rule_by_its_id(write) -> None:  # type: ignore[no-untyped-def]
    """P001 reads the generated rules' IDs from the program (not the rules built from the constraint
    texts): the same IDs, in the same order, so an ignore entry naming any of them is not reported."""
    from cpumodel.rules import all_rule_ids, all_rules, feature_rules

    assert feature_rules.rule_ids() == tuple(feature_rules.rules())
    assert all_rule_ids() == list(all_rules())
    ids = feature_rules.rule_ids()
    p = write("g.yaml", f"ignore: [{ids[0]}, {ids[-2]}, ARCH-FEAT_NOPE-1]\nregisters:\n  MIDR_EL1: 0x410fd070\n")
    assert [f.message for f in findings(p, "P001")] == [
        "ignore entry 'ARCH-FEAT_NOPE-1' matches no rule (did you mean ARCH-FEAT_SPE-1?)"]
