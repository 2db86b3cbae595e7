"""The K/V rules through what ``cpumodel check`` runs: profiles written by register name, --host,
--kernel. Each rule has a case where it must fire and one where it must not, so removing or
inverting any of them fails a test. The recorded kernels' answers are replayed through the same
path in tests/oracle/test_findings_replay.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import PROFILES

from cpumodel import kvm, regdb
from cpumodel.cli import main
from cpumodel.kvm import safe_value
from cpumodel.policy import Policy, effective_ctr, sanitise
from cpumodel.rules import hand_rules

N1 = str(PROFILES / "neoverse-n1.yaml")


def findings(*args: str) -> tuple[int, list[dict[str, object]]]:
    r = CliRunner().invoke(main, ["check", "--format", "json", *args])
    assert "Traceback" not in r.output, r.output
    assert r.exit_code in (0, 1), r.output
    return r.exit_code, json.loads(r.output)["findings"]


def rules_of(fs: list[dict[str, object]]) -> dict[str, list[dict[str, object]]]:
    out: dict[str, list[dict[str, object]]] = {}
    for f in fs:
        out.setdefault(str(f["rule"]), []).append(f)
    return out


def test_each_kv_rule_is_a_documented_unit() -> None:
    rules = hand_rules()
    for rid in ("K001", "K002", "K003", "K004", "K005", "V001", "V002"):
        r = rules[rid]
        assert r.check is not None and r.doc.startswith(r.summary) and len(r.doc.splitlines()) > 3, rid
    assert rules["K004"].name == "vcpu-features-assumed"


# --------------------------------------------------------------------------- #
# K001: no register; every register of the database resolves in every kernel (9.2)
# --------------------------------------------------------------------------- #

@pytest.mark.parametrize("kernel", kvm.kernels())
def test_every_register_resolves_by_encoding(kernel: str) -> None:
    """registers.json x every kernel file: the kernel's rules know each register by its encoding
    (ID_AA64DFR2_EL1 and 6.12's ID_AA64ISAR3_EL1 are named S3_0_C0_C... there). DCZID_EL0 is the
    one the kernels really lack: it has no sys_reg_desc, so KVM_SET_ONE_REG answers ENOENT."""
    rules = kvm.load_kernel(kernel)
    missing = {r.name for r in regdb.load() if rules.lookup(r.encoding) is None}
    assert missing == {"DCZID_EL0"}


@pytest.mark.parametrize("kernel", kvm.kernels())
def test_no_ghost_k001(write: Callable[..., Path], kernel: str) -> None:
    """A profile listing every register at KVM's default gets no K001 but for DCZID_EL0."""
    from cpumodel.ops import kvm_defaults
    from cpumodel.resolve import resolve

    values, _ = kvm_defaults(resolve(N1), kernel, frozenset({"pmu"}))
    values.setdefault("ID_AA64DFR2_EL1", 0)
    values.setdefault("ID_AA64ISAR3_EL1", 0)
    text = "vcpu_features: [pmu]\nregisters:\n" + "".join(f"  {k}: {v:#x}\n" for k, v in values.items())
    p = write("all.yaml", text + "  DCZID_EL0: 0x4\n")
    _, fs = findings(str(p), "--kernel", kernel, "--host", N1)
    k001 = [f["register"] for f in fs if f["rule"] == "K001"]
    assert k001 == ["DCZID_EL0"]
    assert next(f for f in fs if f["rule"] == "K001")["errno"] == "ENOENT"


# --------------------------------------------------------------------------- #
# K002 / K003 / K004
# --------------------------------------------------------------------------- #

def test_k002_refused_and_accepted(write: Callable[..., Path]) -> None:
    bad = write("bad.yaml", "vcpu_features: [pmu]\nregisters:\n  ID_AA64ISAR0_EL1: {SHA3: 1}\n")
    code, fs = findings(str(bad), "--host", N1, "--kernel", "7.3")
    k002 = rules_of(fs)["K002"]
    assert code == 1 and [(f["register"], f["field"], f["errno"]) for f in k002] == \
        [("ID_AA64ISAR0_EL1", "SHA3", "EINVAL")]
    assert k002[0]["policy"] == "LOWER_SAFE" and k002[0]["allowed"] == "<= 0x0"
    # N1's own sanitised value is accepted: no K/V finding at all
    n1 = sanitise(regdb_values(N1), "7.3", cpu=True)["ID_AA64ISAR0_EL1"]
    good = write("good.yaml", f"vcpu_features: [pmu]\nregisters:\n  ID_AA64ISAR0_EL1: {n1:#x}\n")
    code, fs = findings(str(good), "--host", N1, "--kernel", "7.3")
    assert not [f for f in fs if str(f["rule"])[0] in "KV"], fs


def regdb_values(path: str) -> dict[str, int]:
    from cpumodel.resolve import resolve

    return resolve(path).values


def test_k003_only_without_the_host(write: Callable[..., Path]) -> None:
    p = write("p.yaml", "vcpu_features: [pmu]\nregisters:\n  ID_AA64ISAR0_EL1: {AES: 1}\n")
    _, fs = findings(str(p))
    k003 = rules_of(fs)["K003"]
    assert k003[0]["severity"] == "info" and "ID_AA64ISAR0_EL1" in str(k003[0]["message"])
    _, fs = findings(str(p), "--host", N1)
    assert "K003" not in rules_of(fs)


def test_k004_when_vcpu_features_are_assumed(write: Callable[..., Path]) -> None:
    p = write("p.yaml", "registers:\n  ID_AA64PFR0_EL1: {SVE: IMP}\n")
    _, fs = findings(str(p))
    assert "sve" in str(rules_of(fs)["K004"][0]["message"])
    _, fs = findings(str(p), "--vcpu-features", "sve")
    assert "K004" not in rules_of(fs)


# --------------------------------------------------------------------------- #
# kvm_caps and K005 (9.3)
# --------------------------------------------------------------------------- #

MIDR_A72 = "registers:\n  MIDR_EL1: 0x410fd083\nvcpu_features: [pmu]\n"


def test_writable_imp_id_regs_cap(write: Callable[..., Path]) -> None:
    plain = write("plain.yaml", MIDR_A72)
    capped = write("capped.yaml", MIDR_A72 + "kvm_caps: [writable_imp_id_regs]\n")
    # 7.3 has the cap: MIDR is writable with it, refused without it
    assert "K002" in rules_of(findings(str(plain), "--host", N1, "--kernel", "7.3")[1])
    # (KVM accepts it; the A72 identity on an N1 host is an identity error, I003, silenced here:
    # tests/test_identity_rules.py tests it)
    code, fs = findings(str(capped), "--host", N1, "--kernel", "7.3", "--ignore", "I*")
    assert code == 0 and not [f for f in fs if str(f["rule"])[0] == "K"], fs
    code, fs = findings(str(plain), "--host", N1, "--kernel", "7.3", "--kvm-caps", "writable_imp_id_regs",
                        "--ignore", "I*")
    assert code == 0
    # 6.12 has no such capability: K005, and MIDR stays refused
    code, fs = findings(str(capped), "--host", N1, "--kernel", "6.12")
    by = rules_of(fs)
    assert code == 1 and by["K005"][0]["errno"] == "EINVAL" and "K002" in by
    assert by["K005"][0]["line"] == 4


def test_bad_kvm_caps_are_refused_with_file_line(write: Callable[..., Path]) -> None:
    p = write("p.yaml", "kvm_caps: [writable_imp_id]\n")
    r = CliRunner().invoke(main, ["check", str(p)])
    assert r.exit_code == 2 and "p.yaml:1:" in r.output and "writable_imp_id_regs" in r.output
    r = CliRunner().invoke(main, ["check", str(p), "--kvm-caps", "bogus"])
    assert r.exit_code == 2


# --------------------------------------------------------------------------- #
# V001 / V002 / P002
# --------------------------------------------------------------------------- #

def test_v001_feature_enabled_but_hidden(write: Callable[..., Path]) -> None:
    p = write("p.yaml", "vcpu_features: [pmu]\nregisters:\n  ID_AA64DFR0_EL1: {PMUVer: NI, DebugVer: 6}\n")
    assert "V001" in rules_of(findings(str(p))[1])
    q = write("q.yaml", "vcpu_features: []\nregisters:\n  ID_AA64DFR0_EL1: {PMUVer: NI, DebugVer: 6}\n")
    assert "V001" not in rules_of(findings(str(q))[1])


def test_v002_needs_the_vcpu_feature_once(write: Callable[..., Path]) -> None:
    p = write("p.yaml", "vcpu_features: []\nregisters:\n  ID_AA64PFR0_EL1: 0x1101001120111112\n")
    by = rules_of(findings(str(p), "--host", str(PROFILES / "neoverse-v1.yaml"))[1])
    assert [f["field"] for f in by["V002"]] == ["SVE"]
    assert not [f for f in by.get("K002", []) if f["field"] == "SVE"]  # reported once, by V002
    by = rules_of(findings(str(p), "--vcpu-features", "sve", "--host", str(PROFILES / "neoverse-v1.yaml"))[1])
    assert "V002" not in by


def test_p002_respects_no_kvm(write: Callable[..., Path]) -> None:
    p = write("p.yaml", "base: neoverse-n1\nregisters:\n  ID_AA64ISAR0_EL1: {SHA3: 0}\n")
    assert "P002" in rules_of(findings(str(p))[1])
    assert "P002" not in rules_of(findings(str(p), "--no-kvm")[1])


# --------------------------------------------------------------------------- #
# One safe-value function with the kernel's semantics (15.2)
# --------------------------------------------------------------------------- #

# arm64_ftr_safe_value() (arch/arm64/kernel/cpufeature.c:939-963, Linux 7.3.4), case by case:
# FTR_EXACT -> ftrp->safe_val (even for equal inputs: callers never ask then); FTR_LOWER_SAFE
# -> min; FTR_HIGHER_OR_ZERO_SAFE -> 0 if either is 0, else falls through to FTR_HIGHER_SAFE -> max.
@pytest.mark.parametrize(("policy", "new", "cur", "safe_val", "expected"), [
    ("EXACT", 2, 1, 7, 7), ("EXACT", 2, 2, 7, 7), ("EXACT", 0, 1, 0, 0),
    ("LOWER_SAFE", 2, 1, 0, 1), ("LOWER_SAFE", -1, 0, 0, -1), ("LOWER_SAFE", 0, 3, 9, 0),
    ("HIGHER_SAFE", 2, 1, 0, 2), ("HIGHER_SAFE", 0, 3, 0, 3),
    ("HIGHER_OR_ZERO_SAFE", 0, 3, 5, 0), ("HIGHER_OR_ZERO_SAFE", 3, 0, 5, 0), ("HIGHER_OR_ZERO_SAFE", 4, 3, 0, 4),
])
def test_safe_value_is_the_kernels(policy: str, new: int, cur: int, safe_val: int, expected: int) -> None:
    assert safe_value(policy, new, cur, safe_val) == expected


def test_policy_folds_as_update_cpu_ftr_reg() -> None:
    # update_cpu_ftr_reg() keeps equal values and asks arm64_ftr_safe_value() otherwise (cpufeature.c:1272)
    p = Policy("R", "F", 0, 4, False, "EXACT", 7)
    assert p.safe(2, 2) == 2 and p.safe(2, 1) == 7
    assert p.allows(1, 1) and not p.allows(2, 1) and p.allows(7, 1)


# --------------------------------------------------------------------------- #
# CTR_EL0's effective IDC (9.4)
# --------------------------------------------------------------------------- #

def test_effective_ctr_idc() -> None:
    # read_cpuid_effective_cachetype(): IDC set when CLIDR_EL1.LoC == 0 or LoUIS == LoUU == 0
    assert effective_ctr(0x8444C004, 0x0A200023) == 0x8444C004  # LoUU=1, LoUIS=1, LoC=2: as is
    assert effective_ctr(0x8444C004, 0x82000023) == 0x9444C004  # LoUU=0, LoUIS=0: IDC
    assert effective_ctr(0x8444C004, 0x08200023) == 0x9444C004  # LoC=0: IDC
    assert effective_ctr(0x8444C004, None) is None
    assert effective_ctr(0x9444C004, None) == 0x9444C004


# --------------------------------------------------------------------------- #
# Provenance (9.5) and host profiles that say what they are (9.4)
# --------------------------------------------------------------------------- #

HOSTS = sorted(p.stem for p in PROFILES.glob("*.yaml") if "role: host" in p.read_text())


def _defaults(tmp: Path, core: str, kernel: str) -> Path:
    out = tmp / f"{core}-kvm{kernel}.yaml"
    r = CliRunner().invoke(main, ["defaults", str(PROFILES / f"{core}.yaml"), "--kernel", kernel, "-o", str(out)])
    assert r.exit_code == 0, r.output
    return out


def _defaults_check_emit(tmp: Path, core: str, kernel: str) -> None:
    d = _defaults(tmp, core, kernel)
    text = d.read_text()
    assert "origin: kvm-defaults" in text
    for args in (["check", str(d), "--kernel", kernel], ["check", str(d), "--kernel", kernel, "--host", str(d)],
                 ["check", str(d), "--kernel", kernel, "--host", str(PROFILES / f"{core}.yaml")],
                 ["emit", str(d), "--kernel", kernel, "--format", "kvm"]):
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 0, (args, r.output)
    # with its own host, every verdict is definite: no K003. 6.17-6.19 ask whether a GICv5 host is
    # GICv3-compatible, derived from ID_AA64PFR2_EL1.GCIE: the shipped cores predate that register,
    # which reads 0 on them (RES0; their profiles list it with Arm's note as the source)
    for host in (d, PROFILES / f"{core}.yaml"):
        _, fs = findings(str(d), "--kernel", kernel, "--host", str(host))
        assert "K003" not in rules_of(fs), (host, rules_of(fs)["K003"])


@pytest.mark.parametrize("core", HOSTS)
def test_defaults_check_emit_every_core(tmp_path: Path, core: str) -> None:
    _defaults_check_emit(tmp_path, core, kvm.kernels()[-1])


@pytest.mark.parametrize("kernel", kvm.kernels())
def test_defaults_check_emit_every_kernel(tmp_path: Path, kernel: str) -> None:
    _defaults_check_emit(tmp_path, "neoverse-n1", kernel)


@pytest.mark.exhaustive
@pytest.mark.parametrize("kernel", kvm.kernels())
@pytest.mark.parametrize("core", HOSTS)
def test_defaults_check_emit_all(tmp_path: Path, core: str, kernel: str) -> None:
    _defaults_check_emit(tmp_path, core, kernel)


def test_inherited_findings_are_warnings_and_changes_are_errors(tmp_path: Path,
                                                                write: Callable[..., Path]) -> None:
    d = _defaults(tmp_path, "neoverse-n1", "7.3")
    code, fs = findings(str(d), "--kernel", "7.3")
    ras = next(f for f in fs if f["rule"] == "ARCH-FEAT_RAS-4")
    assert code == 0 and ras["severity"] == "warning" and d.name in str(ras["message"])
    assert ras["inherited_from"] == d.name
    # --strict still fails on it
    r = CliRunner().invoke(main, ["check", str(d), "--kernel", "7.3", "--strict"])
    assert r.exit_code == 1
    # a guest on top that leaves the fields alone inherits the warning; one that sets a field involved
    # owns the error
    same = write("same.yaml", f"base: {d.stem}\nregisters:\n  ID_AA64ISAR0_EL1: {{SHA3: 0}}\n")
    code, fs = findings(str(same), "-I", str(tmp_path), "--kernel", "7.3")
    assert code == 0 and next(f for f in fs if f["rule"] == "ARCH-FEAT_RAS-4")["severity"] == "warning"
    owned = write("owned.yaml", f"base: {d.stem}\nregisters:\n  ID_PFR0_EL1: {{RAS: 0}}\n")
    code, fs = findings(str(owned), "-I", str(tmp_path), "--kernel", "7.3")
    assert code == 1 and next(f for f in fs if f["rule"] == "ARCH-FEAT_RAS-4")["severity"] == "error"


def test_silicon_deviation_on_role_host_is_a_warning(write: Callable[..., Path]) -> None:
    text = (PROFILES / "neoverse-v1.yaml").read_text()
    text = "\n".join(line for line in text.splitlines()
                     if not line.startswith(("ignore", "  - ARCH"))) + "\n"  # the documented deviations
    host = write("v1.yaml", text)
    code, fs = findings(str(host))
    assert code == 0 and fs and all(f["severity"] != "error" for f in fs), fs
    guest = write("g.yaml", text.replace("role: host", "role: guest"))
    code, fs = findings(str(guest), "--no-kvm")
    assert code == 1


def test_host_facts_make_verdicts_definite(write: Callable[..., Path]) -> None:
    """Cortex-A72: CSV2=0, so KVM's CSV2 limit depends on the host's Spectre-v2 state, which only
    /sys/devices/system/cpu/vulnerabilities says."""
    a72 = (PROFILES / "cortex-a72.yaml").read_text()
    asked = write("csv2.yaml", "vcpu_features: [pmu]\nregisters:\n  ID_AA64PFR0_EL1: 0x0100000000001111\n")
    _, fs = findings(str(asked), "--host", str(write("h.yaml", a72)), "--kernel", "7.3")
    assert "K003" in rules_of(fs) and "spectre_v2" in str(rules_of(fs)["K003"][0]["why"])
    hv = write("hv.yaml", a72 + "vulnerabilities: {spectre_v2: Vulnerable}\n")
    hn = write("hn.yaml", a72 + "vulnerabilities: {spectre_v2: Not affected}\n")
    by = rules_of(findings(str(asked), "--host", str(hv), "--kernel", "7.3")[1])
    assert "K003" not in by and [f["field"] for f in by["K002"]] == ["CSV2"]
    by = rules_of(findings(str(asked), "--host", str(hn), "--kernel", "7.3")[1])
    assert "K003" not in by and "K002" not in by
