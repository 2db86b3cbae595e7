"""diff, migration verdicts and baselines on the shipped real cores."""

from __future__ import annotations

import itertools

import pytest
from conftest import PROFILES

from cpumodel.ops import baseline, diff, migratable
from cpumodel.policy import Policy, available_kernels, policies
from cpumodel.resolve import Model, resolve

CORES = ["cortex-a53", "cortex-a57", "cortex-a72", "cortex-a76", "neoverse-n1", "neoverse-n2", "neoverse-v1"]
IDENTIFICATION = {"MIDR_EL1", "REVIDR_EL1", "AIDR_EL1", "CLIDR_EL1", "CTR_EL0", "DCZID_EL0"}


def core(name: str, aa64_only: bool = True) -> Model:
    m = resolve(str(PROFILES / f"{name}.yaml"))
    if aa64_only:  # the AArch64 feature registers: what a migration pool is made of
        m.values = {k: v for k, v in m.values.items() if k.startswith("ID_AA64")}
    return m


def test_diff_self_is_equal() -> None:
    for name in CORES:
        m = core(name, aa64_only=False)
        assert diff(m, m).equal


def test_diff_names_fields_and_features() -> None:
    d = diff(core("cortex-a57"), core("neoverse-n1"))
    atomic = next(f for f in d.fields if f.register == "ID_AA64ISAR0_EL1" and f.field.upper() == "ATOMIC")
    assert (atomic.a, atomic.b) == (0, 2)
    assert "FEAT_LSE" in d.gained and "FEAT_DotProd" in d.gained
    # Cortex-A57 runs AArch32 at EL1-EL3; Neoverse N1 only at EL0 (ID_AA64PFR0_EL1.EL1..EL3 = 2 vs 1)
    assert d.lost == ["FEAT_AA32EL1", "FEAT_AA32EL2", "FEAT_AA32EL3"]


@pytest.mark.parametrize(("kind", "new", "cur", "safe"), [
    # arm64_ftr_safe_value() semantics, arch/arm64/kernel/cpufeature.c
    ("LOWER_SAFE", 2, 1, 1), ("LOWER_SAFE", 0, 3, 0),
    ("HIGHER_SAFE", 2, 1, 2), ("HIGHER_SAFE", 0, 3, 3),
    ("HIGHER_OR_ZERO_SAFE", 0, 3, 0), ("HIGHER_OR_ZERO_SAFE", 4, 3, 4), ("HIGHER_OR_ZERO_SAFE", 2, 0, 0),
    ("EXACT", 2, 1, 7), ("EXACT", 2, 2, 2),
])
def test_safe_value(kind: str, new: int, cur: int, safe: int) -> None:
    assert Policy("R", "F", 0, 4, False, kind, 7).safe(new, cur) == safe


def test_signed_fields_compare_signed() -> None:
    pols = {p.field: p for p in policies()["ID_AA64PFR0_EL1"]}
    fp = pols["FP"]
    assert fp.signed and fp.value(0xF << 16) == -1
    # FP "not implemented" (-1) is lower than "implemented" (0): the safe lower choice
    assert fp.safe(-1, 0) == -1


def test_migration_to_a_richer_host() -> None:
    a57, n1 = core("cortex-a57"), core("neoverse-n1")
    assert all(v.ok for v in migratable(a57, n1) if v.register.startswith("ID_AA64ISAR0"))
    bad = [v for v in migratable(n1, a57) if not v.ok]
    assert any(v.register == "ID_AA64ISAR0_EL1" and v.field.upper() == "ATOMIC" for v in bad)
    assert all(v.reason for v in bad)


def test_identification_registers_must_match() -> None:
    a = core("neoverse-n1", aa64_only=False)
    b = core("cortex-a76", aa64_only=False)
    bad = [v for v in migratable(a, b) if not v.ok and v.register == "MIDR_EL1"]
    assert bad and "KVM_CAP_ARM_WRITABLE_IMP_ID_REGS" in bad[0].reason  # KVM 7.3: invariant without the cap


@pytest.mark.parametrize("kernel", available_kernels())
@pytest.mark.parametrize("pool", list(itertools.combinations(["cortex-a76", "neoverse-n1", "neoverse-v1",
                                                                "neoverse-n2", "cortex-a72"], 3)))
def test_baseline_runs_on_every_host(pool: tuple[str, ...], kernel: str) -> None:
    """The KVM baseline is accepted on every host, except exactly the fields it reports as conflicts
    (fields KVM will not let a VMM change, where the hosts disagree)."""
    hosts = [core(n) for n in pool]
    b = baseline(hosts, kernel)
    guest = Model(name="baseline", path="<b>", values=b.values, vcpu_features=b.features)
    conflicted = {c.split(":")[0] for c in b.conflicts}
    for h in hosts:
        blocking = {f"{v.register}.{v.field or '*'}" for v in migratable(guest, h, kernel) if not v.ok}
        assert blocking <= conflicted, (h.name, blocking - conflicted)
    for c in conflicted:  # every conflict is a field where the hosts' KVM views differ
        reg = c.split(".")[0]
        assert len({h.values.get(reg) for h in hosts}) > 1


def test_baseline_of_same_generation_is_clean() -> None:
    hosts = [core("neoverse-n1"), core("cortex-a76")]
    b = baseline(hosts, "7.3")
    assert not [c for c in b.conflicts if "ID_AA64ISAR" in c], b.conflicts


def test_baseline_of_one_is_itself() -> None:
    for name in CORES:
        m = core(name)
        assert baseline([m, m], kvm=False).values == m.values


def test_baseline_says_who_limited() -> None:
    b = baseline([core("neoverse-n1"), core("cortex-a57")], kvm=False)
    assert b.limited_by[("ID_AA64ISAR0_EL1", next(f for r, f in b.limited_by if f.upper() == "ATOMIC"))] \
        == "cortex-a57"


@pytest.mark.parametrize("state, blocked", [("Vulnerable", True), ("Not affected", False)])
def test_migratable_asks_check_host_question(tmp_path, state: str, blocked: bool) -> None:
    """`diff --migratable A B` prepares B as `check --host B` does (rules.kvm_writes.host_view): B's sysfs
    Spectre-v2/Meltdown state decides whether KVM accepts A's CSV2/CSV3=1 on a Cortex-A72 (the kernel
    sets them for a VM on a host that is not affected: sys_regs.c sanitise_id_aa64pfr0_el1)."""
    import json

    from click.testing import CliRunner

    from cpumodel.cli import main

    (tmp_path / "b.yaml").write_text(
        f"name: b\nbase: cortex-a72\nrole: host\n"
        f"vulnerabilities: {{spectre_v2: '{state}', meltdown: '{state}'}}\n")
    (tmp_path / "a.yaml").write_text(
        "name: a\nbase: cortex-a72\nregisters:\n  ID_AA64PFR0_EL1: {CSV2: 1, CSV3: 1}\n")
    r = CliRunner().invoke(main, ["diff", str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml"),
                                  "--migratable", "--kernel", "7.3", "--format", "json"])
    assert r.exit_code in (0, 1), r.output
    out = json.loads(r.output)
    rows = out["fields"] if isinstance(out, dict) and "fields" in out else out
    csv = {row["field"] for row in rows if row["register"] == "ID_AA64PFR0_EL1" and not row["ok"]}
    assert (csv == {"CSV2", "CSV3"}) is blocked, rows
