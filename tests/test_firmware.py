"""Firmware pseudo-registers through the CLI (`check`, `emit --format kvm`, `diff --migratable`), against
the kernel's own kvm_arm_set_fw_reg() tables of each line (quote-checked by tools/gen_errata.py; the
cited lines are read from the trees when present). The real kernels' answers are replayed in
tests/oracle/test_firmware_replay.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import PROFILES

from cpumodel.cli import main
from cpumodel.kvm import firmware

N1 = str(PROFILES / "neoverse-n1.yaml")
V1 = str(PROFILES / "neoverse-v1.yaml")
A55 = str(PROFILES / "cortex-a55.yaml")


def run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, list(args))
    assert "Traceback" not in r.output, r.output
    return r.exit_code, r.output


def fw_findings(path: str, *args: str) -> dict[str, dict]:  # type: ignore[type-arg]
    code, out = run("check", path, "--format", "json", *args)
    assert code in (0, 1), out
    return {re.search(r"register (\w+)=", f["message"]).group(1): f  # type: ignore[union-attr]
            for f in json.loads(out)["findings"] if f["rule"] == "F001"}


def cited(source: str) -> str:
    m = re.match(r"(\S+):(\d+).*\[Linux (\S+)\]", source)
    assert m, source
    p = Path("/work/src") / f"linux-{m.group(3)}" / m.group(1)
    if not p.exists():
        pytest.skip("no tree")
    return p.read_text(errors="replace").splitlines()[int(m.group(2)) - 1]


PROFILE = """\
name: fw
base: neoverse-v1-kvm7.3
firmware:
  PSCI_VERSION: 0x10003
  SMCCC_ARCH_WORKAROUND_1: 2
  SMCCC_ARCH_WORKAROUND_3: 2
  VENDOR_HYP_BMAP_2: 0x3
"""


def test_restore_rules_per_line_and_host(write) -> None:  # type: ignore[no-untyped-def]
    p = str(write("fw.yaml", PROFILE))
    # 7.3 on a V1 host: V1 is CSV2 (v2 NOT_REQUIRED = 2 accepted) but needs the BHB loop (WA3 AVAIL = 1 < 2)
    got = fw_findings(p, "--host", V1, "--kernel", "7.3")
    assert set(got) == {"SMCCC_ARCH_WORKAROUND_3"}
    assert got["SMCCC_ARCH_WORKAROUND_3"]["errno"] == "EINVAL"
    assert "< val" in cited(got["SMCCC_ARCH_WORKAROUND_3"]["source"])
    # 6.12: no PSCI 1.3 and no VENDOR_HYP_BMAP_2
    got = fw_findings(p, "--host", V1, "--kernel", "6.12")
    assert got["PSCI_VERSION"]["errno"] == "EINVAL" and got["VENDOR_HYP_BMAP_2"]["errno"] == "ENOENT"
    # without a host the workaround levels depend on it (F002), nothing refused but the line's own limits
    _code, out = run("check", p, "--format", "json", "--kernel", "7.3")
    rules = [f["rule"] for f in json.loads(out)["findings"]]
    assert "F002" in rules and "F001" not in rules


def test_bad_firmware_key(write) -> None:  # type: ignore[no-untyped-def]
    p = write("bad.yaml", "name: bad\nfirmware:\n  PSCI_VERSON: 1\n")
    code, out = run("check", str(p))
    assert code == 2 and "bad.yaml:3:3" in out and "PSCI_VERSION" in out
    p = write("bad2.yaml", "name: bad\nfirmware:\n  STD_BMAP: yes\n")
    code, out = run("check", str(p))
    assert code == 2 and "bad2.yaml:3:13" in out


def test_emit_kvm_writes_them(write) -> None:  # type: ignore[no-untyped-def]
    p = write("ok.yaml", "name: ok\nbase: neoverse-v1-kvm7.3\nfirmware:\n  PSCI_VERSION: 0x10001\n"
                         "  SMCCC_ARCH_WORKAROUND_3: 1\n")
    code, out = run("emit", str(p), "--format", "kvm", "--kernel", "7.3", "--host", V1)
    assert code == 0, out
    assert "0x6030000000140000 0x0000000000010001  # KVM_REG_ARM_PSCI_VERSION" in out
    assert "0x6030000000140003 0x0000000000000001  # KVM_REG_ARM_SMCCC_ARCH_WORKAROUND_3" in out


def test_migratable_restores_firmware_registers() -> None:
    """A VM on an A55 host (Spectre-BHB not affected: WORKAROUND_3 NOT_REQUIRED) cannot be restored on an
    N1 host (AVAIL): KVM refuses the level; the other way round it can ("We can deal with NOT_AVAIL on
    NOT_REQUIRED, but not the other way around")."""
    code, out = run("diff", A55, N1, "--migratable", "--format", "json")
    fs = {f["register"]: f for f in json.loads(out)["identity"] if f["rule"] == "F001"}
    assert "KVM_REG_ARM_SMCCC_ARCH_WORKAROUND_3" in fs and code == 1
    code, out = run("diff", N1, A55, "--migratable", "--format", "json")
    assert not [f for f in json.loads(out)["identity"] if f["rule"] == "F001"
                and f["register"] == "KVM_REG_ARM_SMCCC_ARCH_WORKAROUND_3"]


@pytest.mark.parametrize("line", ["6.1", "6.12", "6.17", "7.1", "7.3"])
def test_line_tables(line: str) -> None:
    regs = firmware.registers(line)
    assert {"PSCI_VERSION", "SMCCC_ARCH_WORKAROUND_1", "STD_BMAP"} <= set(regs)
    assert ("VENDOR_HYP_BMAP_2" in regs) == (line not in ("6.1", "6.12"))
    # WA2: ENABLED only with AVAIL; UNKNOWN maps to NOT_AVAIL
    lv = regs["SMCCC_ARCH_WORKAROUND_2"]["levels"]
    assert firmware.check(line, "SMCCC_ARCH_WORKAROUND_2", lv["ENABLED"] | lv["NOT_REQUIRED"], None).errno == "EINVAL"
    levels = {"SMCCC_ARCH_WORKAROUND_1": 1, "SMCCC_ARCH_WORKAROUND_2": lv["NOT_AVAIL"], "SMCCC_ARCH_WORKAROUND_3": 1}
    assert firmware.check(line, "SMCCC_ARCH_WORKAROUND_2", lv["UNKNOWN"], levels).accepted
    assert firmware.check(line, "SMCCC_ARCH_WORKAROUND_2", lv["AVAIL"], levels).errno == "EINVAL"
    assert firmware.check(line, "SMCCC_ARCH_WORKAROUND_1", 0x10, levels).errno == "EINVAL"
    assert firmware.check(line, "PSCI_VERSION", 1, levels).errno == "EINVAL"  # 0.1 with the PSCI_0_2 feature
    assert firmware.check(line, "PSCI_VERSION", 1, levels, psci_0_2=False).accepted
    # without the host, a workaround level is the host's call: the one verdict type says so
    v = firmware.check(line, "SMCCC_ARCH_WORKAROUND_1", 1, None)
    assert (v.status, v.errno, v.reg, v.value) == ("depends_on_host", None, "SMCCC_ARCH_WORKAROUND_1", 1)


@pytest.mark.parametrize(("line", "values", "enabled", "why"), [
    ("6.12", {"VENDOR_HYP_BMAP_2": 3}, False, "no KVM_REG_ARM_VENDOR_HYP_BMAP_2"),
    ("7.3", {}, False, "lacks DISCOVER_IMPL"),  # reset value 0
    ("7.3", {"VENDOR_HYP_BMAP_2": 1}, False, "lacks DISCOVER_IMPL"),  # the guest needs both calls
    ("7.3", {"VENDOR_HYP_BMAP_2": 3, "VENDOR_HYP_BMAP": 2}, False, "FUNC_FEAT"),
    ("6.17", {"VENDOR_HYP_BMAP_2": 3}, True, "KVM_SMCCC_FILTER_FWD_TO_USER"),
    ("7.3", {"VENDOR_HYP_BMAP_2": 3, "VENDOR_HYP_BMAP": 3}, True, "KVM_EXIT_HYPERCALL"),
])
def test_target_impl_offered(line: str, values: dict[str, int], enabled: bool, why: str) -> None:
    ti = firmware.target_impl(line, values)
    assert ti.enabled is enabled and why in ti.why, ti


def test_target_impl_through_check(write) -> None:  # type: ignore[no-untyped-def]
    """F001 ENOENT for the bitmap on a line without it (the kernel's answer, recorded on 6.12.117); F003
    says what the VMM must still do where the line has it."""
    p = str(write("ti.yaml", "name: ti\nbase: neoverse-v1-kvm7.3\nfirmware:\n  VENDOR_HYP_BMAP_2: 0x3\n"))
    got = fw_findings(p, "--kernel", "6.12")
    assert got["VENDOR_HYP_BMAP_2"]["errno"] == "ENOENT"
    _code, out = run("check", p, "--format", "json", "--kernel", "7.3")
    f3 = [f for f in json.loads(out)["findings"] if f["rule"] == "F003"]
    assert len(f3) == 1 and "offered" in f3[0]["message"] and "KVM_ARM_VM_SMCCC_FILTER" in f3[0]["message"]
    p = str(write("ti2.yaml", "name: ti2\nbase: neoverse-v1-kvm7.3\nfirmware:\n  VENDOR_HYP_BMAP_2: 0x3\n"
                              "  VENDOR_HYP_BMAP: 0x2\n"))
    _code, out = run("check", p, "--format", "json", "--kernel", "7.3")
    f3 = [f for f in json.loads(out)["findings"] if f["rule"] == "F003"]
    assert len(f3) == 1 and "not reachable" in f3[0]["message"]


def test_host_sysfs_states_decide_the_levels(write) -> None:  # type: ignore[no-untyped-def]
    """The host kernel's sysfs text decides its workaround levels, as the recordings of QEMU's cortex-a72
    (no firmware mitigations: spectre_v2 and spec_store_bypass "Vulnerable") showed on every line:
    WORKAROUND_2 NOT_AVAIL (cpu_show_spec_store_bypass()) and WORKAROUND_3 NOT_AVAIL, although A72 is
    on a BHB loop list (spectre_bhb_enable_mitigation(): no point mitigating Spectre-BHB alone)."""
    a72 = str(PROFILES / "cortex-a72.yaml")
    vuln = write("a72v.yaml", "name: a72v\nbase: cortex-a72\nrole: host\n"
                              "vulnerabilities: {spectre_v2: Vulnerable, spec_store_bypass: Vulnerable}\n")
    p = str(write("wa.yaml", "name: wa\nbase: neoverse-v1-kvm7.3\nfirmware:\n  SMCCC_ARCH_WORKAROUND_2: 3\n"
                             "  SMCCC_ARCH_WORKAROUND_3: 1\n"))
    for line in ("6.12", "7.3"):
        got = fw_findings(p, "--host", str(vuln), "--kernel", line)
        assert set(got) == {"SMCCC_ARCH_WORKAROUND_2", "SMCCC_ARCH_WORKAROUND_3"}, got
        assert {f["errno"] for f in got.values()} == {"EINVAL"}
        # the bare A72 profile (firmware mitigations assumed) takes the BHB level; WORKAROUND_2 stays refused
        # there for another reason: the guest has SSBS (V1's ID_AA64PFR1_EL1.SSBS), so KVM offers no
        # firmware call (get_kernel_wa_level(): "pretend we don't have any FW mitigation if SSBS is there")
        assert set(fw_findings(p, "--host", a72, "--kernel", line)) == {"SMCCC_ARCH_WORKAROUND_2"}
