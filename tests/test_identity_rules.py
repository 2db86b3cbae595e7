"""Identity rules I001-I005 through `cpumodel check`, `diff --migratable` and `baseline`, against the
kernel's own tables (cpu_errata.c / proton-pack.c of each line, as tests/test_errata.py verifies)."""

from __future__ import annotations

import json
import re

from click.testing import CliRunner
from conftest import PROFILES

from cpumodel.cli import main

V1 = str(PROFILES / "neoverse-v1.yaml")
N1 = str(PROFILES / "neoverse-n1.yaml")
A72 = str(PROFILES / "cortex-a72.yaml")
A55 = str(PROFILES / "cortex-a55.yaml")


def run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, list(args))
    assert "Traceback" not in r.output, r.output
    return r.exit_code, r.output


def findings(path: str, *args: str) -> list[dict]:  # type: ignore[type-arg]
    code, out = run("check", path, "--format", "json", *args)
    assert code in (0, 1), out
    data = json.loads(out)
    return [f for f in data["findings"] if f["rule"].startswith("I")]  # type: ignore[no-any-return]


def test_rules_lists_identity_rules() -> None:
    code, out = run("rules", "--kind", "identity")
    assert code == 0
    for rid in ("I001", "I002", "I003", "I004", "I005"):
        assert rid in out
    code, out = run("rules", "I003")
    assert code == 0 and "proton-pack.c" in out


def test_v1_midr_with_sve_hidden_warns_naming_sve(write) -> None:  # type: ignore[no-untyped-def]
    """The issue's example: a guest keeping Neoverse V1's MIDR with SVE hidden."""
    p = write("v1nosve.yaml", "name: v1nosve\nbase: neoverse-v1\nrole: guest\nvcpu_features: [pmu, ptrauth]\n"
                              "registers:\n  ID_AA64PFR0_EL1: {SVE: 0}\n")
    fs = [f for f in findings(str(p), "--kernel", "7.3") if f["rule"] == "I001"]
    assert len(fs) == 1 and fs[0]["severity"] == "warning"
    assert "hides SVE (FEAT_SVE)" in fs[0]["message"] and "NEOVERSE_V1" in fs[0]["message"]
    assert "cpufeature.c" in fs[0]["source"] and "cputype.h:175" in fs[0]["source"]
    # inverted: SVE kept -> no I001
    q = write("v1sve.yaml", "name: v1sve\nbase: neoverse-v1\nrole: guest\nvcpu_features: [pmu, ptrauth, sve]\n")
    assert not [f for f in findings(str(q), "--kernel", "7.3") if f["rule"] == "I001"]


def test_raised_features_beyond_the_named_core(write) -> None:  # type: ignore[no-untyped-def]
    p = write("n1sha3.yaml", "name: n1sha3\nbase: neoverse-n1\nrole: guest\nvcpu_features: [pmu]\n"
                             "registers:\n  ID_AA64ISAR0_EL1: {SHA3: 1}\n")
    fs = [f for f in findings(str(p), "--no-kvm") + findings(str(p)) if f["rule"] == "I001"]
    assert fs and "raises SHA3 (FEAT_SHA3)" in fs[0]["message"]


def n1_identity_on_v1(write):  # type: ignore[no-untyped-def]
    return write("n1onv1.yaml", "name: n1onv1\nbase: neoverse-v1\nrole: guest\nvcpu_features: [pmu, ptrauth, sve]\n"
                                "registers:\n  MIDR_EL1: 0x414fd0c1\n")


def test_n1_identity_on_v1_host_is_an_error_naming_the_bhb_mitigation(write) -> None:  # type: ignore[no-untyped-def]
    """The issue's example: N1 identity on a V1 host -> error naming the Spectre-BHB mitigation, and the errata
    differences (V1's CTR_EL0 has DIC=1, so the N1 identity also selects N1 erratum 1542419)."""
    p = n1_identity_on_v1(write)
    fs = findings(str(p), "--host", V1, "--kernel", "7.3")
    i3 = [f for f in fs if f["rule"] == "I003"]
    assert len(i3) == 1 and i3[0]["severity"] == "error"
    assert "branch-history loop of 24 iterations" in i3[0]["message"] and "needs 32" in i3[0]["message"]
    assert "1542419" in i3[0]["why"]  # the errata differences
    i2 = [f for f in fs if f["rule"] == "I002"]
    assert i2 and "1542419 (ARM64_WORKAROUND_1542419)" in i2[0]["why"]
    # the same on every kernel line with the tables
    for line in ("6.12", "7.2"):
        assert [f for f in findings(str(p), "--host", V1, "--kernel", line) if f["rule"] == "I003"], line
    # inverted: the host's own identity -> no I002/I003
    q = write("v1.yaml", "name: v1g\nbase: neoverse-v1\nrole: guest\nvcpu_features: [pmu, ptrauth, sve]\n")
    assert not [f for f in findings(str(q), "--host", V1) if f["rule"] in ("I002", "I003", "I004")]
    # and a longer loop than the host needs is fine: V1 identity (32) on an N1 host (24)
    r = write("v1onn1.yaml", "name: v1onn1\nbase: neoverse-n1\nrole: guest\nvcpu_features: [pmu]\n"
                             "registers:\n  MIDR_EL1: 0x411fd402\n")
    assert not [f for f in findings(str(r), "--host", N1) if f["rule"] == "I003"]


def test_safe_list_identity_on_an_affected_host(write) -> None:  # type: ignore[no-untyped-def]
    p = write("a55ona72.yaml", "name: a55ona72\nbase: cortex-a72\nrole: guest\nvcpu_features: [pmu]\n"
                               "registers:\n  MIDR_EL1: 0x412fd050\n")
    fs = findings(str(p), "--host", A72, "--kernel", "7.3")
    i4 = {re.match(r"Spectre-(v\d)", f["message"]).group(1) for f in fs if f["rule"] == "I004"}  # type: ignore[union-attr]
    assert i4 == {"v2", "v4"}
    assert any(f["rule"] == "I003" and "safe list" in f["message"] for f in fs)


def test_diff_migratable_reports_the_boot_time_choice() -> None:
    code, out = run("diff", N1, V1, "--migratable", "--format", "json")
    assert code == 1
    data = json.loads(out)
    i3 = [f for f in data["identity"] if f["rule"] == "I003"]
    assert i3 and "loop of 24" in i3[0]["message"]
    code, out = run("diff", V1, N1, "--migratable", "--format", "json")
    assert not [f for f in json.loads(out)["identity"] if f["rule"] == "I003"]


def test_baseline_pool_and_target_implementations() -> None:
    """A pool of a Cortex-A55 and a Neoverse N1: the baseline leaves MIDR out (each VM sees its boot host's),
    so a guest booted on the A55 keeps no BHB mitigation when it moves to the N1; and with the
    target-implementation hypercall (7.3) the A55 on the safe list makes the guest believe the whole pool
    is unaffected (is_midr_in_range_list() answers 'any')."""
    r = CliRunner().invoke(main, ["baseline", A55, N1, "--kernel", "7.3", "--target-impl"])
    text = r.output
    assert "identity finding: I003: [booted on cortex-a55, runs on neoverse-n1]" in text
    assert "[booted on neoverse-n1, runs on cortex-a55] Spectre-BHB" not in text
    i5 = [ln for ln in text.splitlines() if "identity finding: I005" in ln]
    assert i5 and "safe list" in i5[0] and "target implementations" in i5[0]
    assert r.exit_code == 1
    assert "\nfirmware:\n  VENDOR_HYP_BMAP_2: 0x3" in text  # the baseline profile says what the VMM restores
    # without the VMM offering the calls (VENDOR_HYP_BMAP_2 reset to 0) the guest only knows its own MIDR
    r = CliRunner().invoke(main, ["baseline", A55, N1, "--kernel", "7.3"])
    assert "I005" not in r.output and "identity finding: I003" in r.output and "firmware:" not in r.output
    # 6.12 has no hypercall: no I005
    r = CliRunner().invoke(main, ["baseline", A55, N1, "--kernel", "6.12", "--target-impl"])
    assert "I005" not in r.output


def test_host_sysfs_facts(write) -> None:  # type: ignore[no-untyped-def]
    """The host's own /sys/devices/system/cpu/vulnerabilities/spectre_v2 text (profile key vulnerabilities:)
    answers the guest's firmware calls: a host kernel that leaves BHB unmitigated offers no
    SMCCC_ARCH_WORKAROUND_3, so a guest identity relying on that call is left vulnerable."""
    host = write("v1host.yaml", "name: v1host\nbase: neoverse-v1\nrole: host\n"
                                "vulnerabilities: {spectre_v2: 'Mitigation: CSV2, but not BHB'}\n")
    # an identity on no loop list (A64FX) relies on the firmware call
    g = write("fx.yaml", "name: fx\nbase: neoverse-v1\nrole: guest\nvcpu_features: [pmu, ptrauth, sve]\n"
                         "registers:\n  MIDR_EL1: 0x461f0010\n")
    fs = [f for f in findings(str(g), "--host", str(host), "--kernel", "7.3") if f["rule"] == "I003"]
    assert fs and "unmitigated" in fs[0]["message"], fs
    # with a host kernel that mitigates BHB the firmware call is there: no I003
    ok = write("v1ok.yaml", "name: v1ok\nbase: neoverse-v1\nrole: host\n"
                            "vulnerabilities: {spectre_v2: 'Mitigation: CSV2, BHB'}\n")
    assert not [f for f in findings(str(g), "--host", str(ok), "--kernel", "7.3") if f["rule"] == "I003"]
    # "Not affected" means the hardware needs nothing: an N1 identity (24) is then fine
    na = write("v1na.yaml", "name: v1na\nbase: neoverse-v1\nrole: host\nvulnerabilities: {spectre_v2: Not affected}\n")
    n1 = n1_identity_on_v1(write)
    assert not [f for f in findings(str(n1), "--host", str(na), "--kernel", "7.3") if f["rule"] == "I003"]
