"""cpumodel capture: sysfs trees, MRS encoding, KVM ioctl numbers, the non-arm64 error, profile output.

The live sources need arm64 Linux; everything here but the last two tests runs on any machine.
Those run tools/capture_arm64_check.sh when CPUMODEL_ARM64_SYSROOT points at a sysroot that script
prepared: an arm64 Python under qemu-aarch64-static (mrs source), and with CPUMODEL_ARM64_VM=1 a
whole arm64 Linux under qemu-system-aarch64 (kvm, sysfs and mrs sources on a real kernel).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from cpumodel import capture as cap
from cpumodel import regdb
from cpumodel.cli_capture import capture as capture_cmd
from cpumodel.errors import CpumodelError
from cpumodel.resolve import resolve

REPO = Path(__file__).resolve().parents[1]
A55 = 0x412FD050  # Arm Cortex-A55 r2p0
A76 = 0x414FD0B1  # Arm Cortex-A76 r4p1
N1 = 0x414FD0C1


def make_tree(root: Path, cpus: dict[int, dict[str, str | int]]) -> Path:
    """A fake <root>/sys/devices/system/cpu with regs/identification per CPU, as the kernel writes it."""
    base = root / "sys/devices/system/cpu"
    (base / "cpufreq").mkdir(parents=True)  # not a cpuN directory
    (base / "online").write_text("0-7\n")
    for n, files in cpus.items():
        ident = base / f"cpu{n}" / "regs" / "identification"
        ident.mkdir(parents=True)
        for fname, value in files.items():
            (ident / fname).write_text(value if isinstance(value, str) else f"0x{value:016x}\n")
    return root


def homogeneous(root: Path, n: int = 4) -> Path:
    return make_tree(root, {i: {"midr_el1": N1, "revidr_el1": 0x1, "aidr_el1": 0} for i in range(n)})


def big_little(root: Path) -> Path:
    cpus: dict[int, dict[str, str | int]] = {}
    for i in range(8):
        cpus[i] = {"midr_el1": A55 if i < 4 else A76, "revidr_el1": 0, "aidr_el1": 0}
    return make_tree(root, cpus)


# ---------------------------------------------------------------------------------------------
# MRS encoding
# ---------------------------------------------------------------------------------------------

# Words assembled by GNU as (aarch64-linux-gnu-as 2.40) from "mrs x0, <name>", cross-checked by hand
# against the A64 MRS encoding 1101 0101 0011 o0 op1 CRn CRm op2 Rt.
KNOWN_MRS = {
    "MIDR_EL1": 0xD5380000,
    "REVIDR_EL1": 0xD53800C0,
    "ID_PFR0_EL1": 0xD5380100,
    "MVFR2_EL1": 0xD5380340,
    "ID_AA64PFR0_EL1": 0xD5380400,
    "ID_AA64ISAR0_EL1": 0xD5380600,
    "CLIDR_EL1": 0xD5390020,
    "AIDR_EL1": 0xD53900E0,
    "CTR_EL0": 0xD53B0020,
    "DCZID_EL0": 0xD53B00E0,
}


@pytest.mark.parametrize("name", sorted(KNOWN_MRS))
def test_mrs_known_words(name: str) -> None:
    reg = regdb.load().registers[name]
    assert cap.mrs_insn(*reg.encoding) == KNOWN_MRS[name]


def test_mrs_matches_kernel_mrs_s_for_every_register() -> None:
    # arch/arm64/include/asm/sysreg.h: mrs_s = 0xd5200000 | sys_reg(op0, op1, crn, crm, op2) | rt,
    # sys_reg = op0 << 19 | op1 << 16 | crn << 12 | crm << 8 | op2 << 5.
    for reg in regdb.load():
        op0, op1, crn, crm, op2 = reg.encoding
        kernel = 0xD5200000 | op0 << 19 | op1 << 16 | crn << 12 | crm << 8 | op2 << 5
        assert cap.mrs_insn(*reg.encoding) == kernel, reg.name
        assert cap.mrs_insn(*reg.encoding, rt=7) == kernel | 7


def test_mrs_rejects_bad_operands() -> None:
    with pytest.raises(ValueError, match="op0"):
        cap.mrs_insn(1, 0, 0, 0, 0)
    with pytest.raises(ValueError, match="CRm"):
        cap.mrs_insn(3, 0, 0, 16, 0)
    with pytest.raises(ValueError, match="Rt"):
        cap.mrs_insn(3, 0, 0, 0, 0, rt=32)


def test_mrs_stub_is_mrs_ret_pairs_little_endian() -> None:
    code = cap.mrs_stub([(3, 0, 0, 0, 0), (3, 0, 0, 4, 0)])
    assert code == bytes.fromhex("000038d5" "c0035fd6" "000438d5" "c0035fd6")


def test_mrs_plan_follows_the_kernel_emulated_space() -> None:
    read, skip = cap.mrs_plan()
    names = {r.name for r in read}
    db = regdb.load()
    for reg in db:
        _, op1, _, crm, _ = reg.encoding
        if reg.name in ("CTR_EL0", "DCZID_EL0", "MIDR_EL1") or (op1 == 0 and 2 <= crm <= 7):
            assert reg.name in names, reg.name
        else:
            assert reg.name in skip and reg.name not in names, reg.name
    assert "SIGILL" in skip["ID_PFR0_EL1"] and "returns 0" in skip["REVIDR_EL1"]
    assert cap.mrs_emulated((3, 0, 0, 0, 5)) and not cap.mrs_emulated((3, 0, 0, 1, 0))
    assert not cap.mrs_emulated((3, 1, 0, 0, 1)) and not cap.mrs_emulated((3, 0, 0, 8, 0))


# ---------------------------------------------------------------------------------------------
# KVM ioctls
# ---------------------------------------------------------------------------------------------


def test_kvm_ioctl_numbers() -> None:
    # _IOC(dir, 0xAE, nr, size) = dir << 30 | size << 16 | 0xAE << 8 | nr; values match a C program
    # printing the <linux/kvm.h> macros built for arm64 (aarch64-linux-gnu-gcc, run under qemu-aarch64).
    assert cap.KVM_GET_API_VERSION == 0xAE00
    assert cap.KVM_CREATE_VM == 0xAE01
    assert cap.KVM_CHECK_EXTENSION == 0xAE03
    assert cap.KVM_CREATE_VCPU == 0xAE41
    assert cap.KVM_GET_ONE_REG == 0x4010AEAB  # _IOW(KVMIO, 0xab, struct kvm_one_reg)
    assert cap._iow(cap.KVMIO, 0xAC, 16) == 0x4010AEAC  # that is KVM_SET_ONE_REG, not GET
    assert cap.KVM_ARM_VCPU_INIT == 0x4020AEAE  # _IOW(KVMIO, 0xae, struct kvm_vcpu_init)
    assert cap.KVM_ARM_PREFERRED_TARGET == 0x8020AEAF  # _IOR(KVMIO, 0xaf, struct kvm_vcpu_init)


def test_kvm_struct_packing() -> None:
    assert cap.KVM_ONE_REG.size == 16 and cap.KVM_VCPU_INIT.size == 32
    midr = regdb.load().registers["MIDR_EL1"].onereg
    assert midr == 0x603000000013C000  # KVM_REG_ARM64 | U64 | SYSREG | 3 << 14
    packed = cap.pack_one_reg(midr, 0x1122334455667788)
    assert packed[:8] == midr.to_bytes(8, "little") and packed[8:] == (0x1122334455667788).to_bytes(8, "little")
    init = cap.pack_vcpu_init(5, [3, 33])  # PMU_V3 (bit 3) and a bit in features[1]
    assert len(init) == 32
    assert cap.unpack_vcpu_init(init) == (5, [1 << 3, 1 << 1, 0, 0, 0, 0, 0])


def test_kvm_missing_device_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(cap.SourceUnavailable, match="does not exist"):
        cap.kvm_read(list(regdb.load()), device=str(tmp_path / "kvm"))


# ---------------------------------------------------------------------------------------------
# sysfs
# ---------------------------------------------------------------------------------------------


def test_sysfs_homogeneous(tmp_path: Path) -> None:
    root = homogeneous(tmp_path)
    c = cap.capture(["sysfs"], root=str(root))
    assert c.values == {"MIDR_EL1": N1, "REVIDR_EL1": 1, "AIDR_EL1": 0}
    assert set(c.origin.values()) == {"sysfs"} and c.used == ["sysfs"]
    assert sorted(c.cpus) == [0, 1, 2, 3]
    assert "cpu0-3 (all alike)" in c.notes["MIDR_EL1"]
    assert "ID_AA64PFR0_EL1" in c.unread
    # auto on a saved tree means sysfs only
    assert cap.capture(None, root=str(root)).values == c.values


def test_sysfs_big_little_refuses_to_pick(tmp_path: Path) -> None:
    root = big_little(tmp_path)
    with pytest.raises(CpumodelError) as e:
        cap.capture(["sysfs"], root=str(root))
    text = str(e.value)
    assert "cpu0-3" in text and "cpu4-7" in text
    assert f"{A55:#x}" in text and f"{A76:#x}" in text
    assert "Arm part 0xd05 r2p0" in text and "Arm part 0xd0b r4p1" in text
    assert "--cpu" in text


def test_sysfs_big_little_with_cpu(tmp_path: Path) -> None:
    root = big_little(tmp_path)
    assert cap.capture(["sysfs"], root=str(root), cpu=5).values["MIDR_EL1"] == A76
    c = cap.capture(["sysfs"], root=str(root), cpu=1)
    assert c.values["MIDR_EL1"] == A55 and "cpu1" in c.notes["MIDR_EL1"]
    with pytest.raises(CpumodelError, match=r"cpu9 .*present: cpu0-7"):
        cap.capture(["sysfs"], root=str(root), cpu=9)


def test_sysfs_skips_offline_and_unread_cpus(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {0: {"midr_el1": N1, "revidr_el1": 0}, 1: {"midr_el1": "", "revidr_el1": ""}})
    (root / "sys/devices/system/cpu/cpu2").mkdir()  # offline: no regs directory
    assert cap.read_sysfs(str(root)) == {0: {"MIDR_EL1": N1, "REVIDR_EL1": 0}}  # old kernel: no aidr_el1


def test_sysfs_accepts_the_cpu_directory_itself(tmp_path: Path) -> None:
    root = homogeneous(tmp_path)
    assert cap.read_sysfs(str(root / "sys/devices/system/cpu"))[0]["MIDR_EL1"] == N1


def test_sysfs_smidr_is_a_caveat(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {0: {"midr_el1": N1, "revidr_el1": 0, "aidr_el1": 0, "smidr_el1": 0x41000000}})
    c = cap.capture(["sysfs"], root=str(root))
    assert "SMIDR_EL1" not in c.values and any("SMIDR_EL1 = 0x0000000041000000" in x for x in c.caveats)


def test_sysfs_bad_value_has_location(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {0: {"midr_el1": "garbage\n"}})
    with pytest.raises(CpumodelError) as e:
        cap.read_sysfs(str(root))
    assert e.value.location is not None and e.value.location.file.endswith("cpu0/regs/identification/midr_el1")


def test_sysfs_empty_tree(tmp_path: Path) -> None:
    with pytest.raises(CpumodelError, match="does not exist"):
        cap.capture(["sysfs"], root=str(tmp_path))
    make_tree(tmp_path, {})
    with pytest.raises(CpumodelError, match="no cpu"):
        cap.capture(None, root=str(tmp_path))


def test_helpers() -> None:
    assert cap.cpu_list([0, 1, 2, 3, 6, 8, 9]) == "cpu0-3,6,8-9"
    assert cap.describe_midr(N1) == "Arm part 0xd0c r4p1"
    assert cap.describe_midr(0x000F0510) == "implementer 0x00 part 0x051 r0p0"


# ---------------------------------------------------------------------------------------------
# Not arm64 Linux; bad combinations
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sources", [None, ["mrs"], ["kvm"], ["sysfs"]])
def test_not_arm64_linux(monkeypatch: pytest.MonkeyPatch, sources: list[str] | None) -> None:
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(platform, "system", lambda: "Linux")
    with pytest.raises(CpumodelError) as e:
        cap.capture(sources)
    msg = str(e.value)
    assert msg.startswith("capture reads the ID registers of the machine it runs on; this is x86_64 Linux")
    assert "--sysfs-root" in msg


def test_darwin_arm64_is_not_arm64_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform, "machine", lambda: "arm64")
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    with pytest.raises(CpumodelError, match="this is arm64 Darwin, not arm64 Linux"):
        cap.capture()


def test_live_sources_do_not_mix_with_a_saved_tree(tmp_path: Path) -> None:
    root = homogeneous(tmp_path)
    with pytest.raises(CpumodelError, match="cannot be combined"):
        cap.capture(["sysfs", "mrs"], root=str(root))
    with pytest.raises(CpumodelError, match="unknown capture source 'cpuid'"):
        cap.capture(["cpuid"], root=str(root))


# ---------------------------------------------------------------------------------------------
# Profile output
# ---------------------------------------------------------------------------------------------


def _round_trip(tmp_path: Path, c: cap.Captured, name: str) -> tuple[dict, object]:  # type: ignore[type-arg]
    text = cap.to_profile_yaml(c, name)
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return yaml.safe_load(text), resolve(str(path))


def test_yaml_from_sysfs_resolves(tmp_path: Path) -> None:
    c = cap.capture(["sysfs"], root=str(homogeneous(tmp_path / "tree")))
    data, model = _round_trip(tmp_path, c, "my-host")
    assert data["name"] == "my-host"
    assert "sysfs" in data["source"]
    assert set(data["sources"]) == set(c.values)
    assert model.values == c.values  # type: ignore[attr-defined]
    assert model.name == "my-host"  # type: ignore[attr-defined]


def test_yaml_says_what_mrs_and_kvm_sanitise(tmp_path: Path) -> None:
    n1 = yaml.safe_load((REPO / "profiles/neoverse-n1.yaml").read_text())["registers"]
    c = cap.Captured(host="Linux 6.12.0 aarch64")
    db = regdb.load()
    kvm_values = {k: v for k, v in n1.items() if k != "DCZID_EL0"}
    c.take(db, "kvm", kvm_values, {k: cap.NOTE["kvm"] for k in kvm_values})
    c.take(db, "mrs", {"DCZID_EL0": 4, "MIDR_EL1": 0}, {"DCZID_EL0": cap.NOTE["mrs-el0"], "MIDR_EL1": "x"})
    c.values = {r.name: c.values[r.name] for r in db if r.name in c.values}
    c.used = ["kvm", "mrs"]
    c.unread = {"AIDR_EL1": "kvm: ENOENT", "ID_AA64PFR2_EL1": "kvm: ENOENT"}
    text = cap.to_profile_yaml(c, "n1-host")
    assert "# Not captured" in text and "#  - AIDR_EL1, ID_AA64PFR2_EL1: kvm: ENOENT" in text
    assert "system-wide safe" in text and "cpu-feature-registers.rst" in text and "vcpu-features.rst" in text
    data, model = _round_trip(tmp_path, c, "n1-host")
    assert "only user-visible fields" in data["source"] and "sanitised to what KVM exposes" in data["source"]
    assert data["vcpu_features"] == []
    assert (data["role"], data["origin"]) == ("guest", "kvm-defaults")
    assert model.vcpu_features == frozenset()  # type: ignore[attr-defined]
    # KVM's view: DCZID_EL0 (read by MRS; KVM has no one-reg for it) is said, not listed
    assert model.values == {k: n1[k] for k in c.values if k != "DCZID_EL0"}  # type: ignore[attr-defined]
    assert data["sources"]["MIDR_EL1"].startswith("kvm:") and "DCZID_EL0" not in data["sources"]
    assert "DCZID_EL0 = 0x4 (mrs: " in text and "not a KVM vCPU register" in text
    assert "ID_AA64PFR0_EL1: 0x1100000010111112" in text and "MIDR_EL1: 0x414fd0c1" in text


def test_yaml_quotes_awkward_names(tmp_path: Path) -> None:
    c = cap.capture(["sysfs"], root=str(homogeneous(tmp_path / "tree")))
    data, _ = _round_trip(tmp_path, c, "yes")  # YAML would read a bare yes as a boolean
    assert data["name"] == "yes"


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def test_cli_writes_profile(tmp_path: Path) -> None:
    root = homogeneous(tmp_path / "tree")
    out = tmp_path / "host.yaml"
    r = CliRunner().invoke(capture_cmd, ["--sysfs-root", str(root), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "captured 3 registers (sysfs: 3)" in r.output and f"wrote {out}" in r.output
    assert resolve(str(out)).name == "host"
    r = CliRunner().invoke(capture_cmd, ["--sysfs-root", str(root), "--name", "x", "--source", "sysfs"])
    assert r.exit_code == 0 and 'name: "x"' in r.output


def test_cli_errors_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = CliRunner().invoke(capture_cmd, ["--sysfs-root", str(big_little(tmp_path / "bl"))])
    assert r.exit_code == 2 and r.output.startswith("cpumodel: error: the CPUs of this system differ")
    assert "Traceback" not in r.output
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    r = CliRunner().invoke(capture_cmd, [])
    assert r.exit_code == 2 and "cpumodel: error: capture reads the ID registers" in r.output
    r = CliRunner().invoke(capture_cmd, ["--source", "auto", "--source", "kvm"])
    assert r.exit_code == 2 and "cannot be combined" in r.output
    r = CliRunner().invoke(capture_cmd, ["--sysfs-root", str(tmp_path / "bl"), "-o", str(tmp_path / "no/x.yaml"),
                                         "--cpu", "0"])
    assert r.exit_code == 2 and "does not exist" in r.output


# ---------------------------------------------------------------------------------------------
# Real arm64 user space under qemu-aarch64-static (opt-in)
# ---------------------------------------------------------------------------------------------


@pytest.mark.skipif(not os.environ.get("CPUMODEL_ARM64_SYSROOT"),
                    reason="set CPUMODEL_ARM64_SYSROOT to a sysroot prepared by tools/capture_arm64_check.sh")
def test_emulated_arm64_capture(tmp_path: Path) -> None:
    if not shutil.which("qemu-aarch64-static"):
        pytest.skip("qemu-aarch64-static not installed (apt-get install qemu-user-static)")
    out = tmp_path / "emulated.yaml"
    r = subprocess.run(["bash", str(REPO / "tools/capture_arm64_check.sh"), os.environ["CPUMODEL_ARM64_SYSROOT"],
                        str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    data = yaml.safe_load(out.read_text())
    assert data["sources"]["ID_AA64ISAR0_EL1"].startswith("mrs:")
    assert "CTR_EL0" in data["registers"] and "MIDR_EL1" in data["registers"]
    assert "ID_PFR0_EL1" not in data["registers"]  # CRm=1: not in the emulated space, never executed
    model = resolve(str(out))
    assert model.values["ID_AA64PFR0_EL1"] == data["registers"]["ID_AA64PFR0_EL1"]


@pytest.mark.skipif(not (os.environ.get("CPUMODEL_ARM64_SYSROOT") and os.environ.get("CPUMODEL_ARM64_VM")),
                    reason="set CPUMODEL_ARM64_SYSROOT and CPUMODEL_ARM64_VM=1 to boot an arm64 Linux with KVM")
def test_emulated_arm64_vm_capture(tmp_path: Path) -> None:
    if not shutil.which("qemu-system-aarch64"):
        pytest.skip("qemu-system-aarch64 not installed (apt-get install qemu-system-arm)")
    out = tmp_path / "vm.yaml"
    r = subprocess.run(["bash", str(REPO / "tools/capture_arm64_check.sh"), "--vm",
                        os.environ["CPUMODEL_ARM64_SYSROOT"], str(out)], capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout + r.stderr
    for line in ("== auto cpu=None: captured 48 registers (kvm: 47, mrs: 1)",
                 "== ['kvm'] cpu=None: captured 47 registers (kvm: 47)",
                 "== ['mrs'] cpu=1: captured 37 registers (mrs: 37)"):
        assert line in r.stderr
    data = yaml.safe_load(out.read_text())
    assert data["sources"]["ID_AA64PFR0_EL1"].startswith("kvm:") and "DCZID_EL0" not in data["sources"]
    assert data["vcpu_features"] == [] and data["origin"] == "kvm-defaults"
    model = resolve(str(out))
    assert len(model.values) == 47 and model.vcpu_features == frozenset()  # DCZID_EL0 (mrs) said, not listed


# ---------------------------------------------------------------------------------------------
# What registers cannot show: unseen fields and vulnerabilities, through the CLI
# ---------------------------------------------------------------------------------------------


def _capture_emulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, core: str,
                      vulnerabilities: dict[str, str], sources: tuple[str, ...] = ("sysfs", "mrs")) -> Path:
    """``cpumodel capture --source sysfs --source mrs`` on a fake arm64 host: ``core``'s registers as
    Linux 7.3's EL0 MRS emulation shows them (FTR_VISIBLE fields as they are, the rest at their safe
    values, per the kernel's arm64_ftr_bits), its MIDR in a sysfs tree beside
    /sys/devices/system/cpu/vulnerabilities."""
    from cpumodel import kvm

    regs = yaml.safe_load((REPO / f"profiles/{core}.yaml").read_text())["registers"]
    root = make_tree(tmp_path / "tree", {0: {"midr_el1": regs["MIDR_EL1"], "revidr_el1": 0, "aidr_el1": 0}})
    vdir = root / "sys/devices/system/cpu/vulnerabilities"
    vdir.mkdir()
    for name, text in vulnerabilities.items():
        (vdir / name).write_text(text + "\n")
    krules = kvm.load_kernel("7.3")

    def emulated_mrs(to_read: list[regdb.Register], cpu: int | None = None) -> tuple[dict[str, int], dict[str, str]]:
        # cpufeature.c emulate_id_reg(): user_val | (sys_val & user_mask), hidden fields at their safe_val
        whole = set(cap.EL0_READABLE) | {"MIDR_EL1"}
        return {r.name: regs[r.name] if r.name in whole else cap.el0_view(r.name, regs[r.name], krules)
                for r in to_read if r.name in regs}, {}

    monkeypatch.setattr(cap, "_is_live", lambda root: True)  # the fake tree stands for this machine's /sys
    monkeypatch.setattr(cap, "require_arm64_linux", lambda *a: None)
    monkeypatch.setattr(cap, "hwcap", lambda: cap.HWCAP_CPUID)
    monkeypatch.setattr(cap, "mrs_read", emulated_mrs)
    monkeypatch.setattr(platform, "release", lambda: "7.3.4+deb13-arm64")
    out = tmp_path / f"{core}-captured.yaml"
    r = CliRunner().invoke(capture_cmd, ["--sysfs-root", str(root), *(a for s in sources for a in ("--source", s)),
                                         "-o", str(out)])
    assert r.exit_code == 0, r.output
    return out


def _check(*args: str) -> tuple[int, list[dict]]:  # type: ignore[type-arg]
    import json

    from cpumodel.cli import main

    r = CliRunner().invoke(main, ["check", "--format", "json", *args])
    assert r.exit_code in (0, 1), r.output
    return r.exit_code, json.loads(r.stdout)["findings"]


def _without(path: Path, key: str) -> Path:
    """The profile at ``path`` without its top-level ``key`` block."""
    lines, skip = [], False
    for line in path.read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            skip = line.startswith(f"{key}:")
        if not skip:
            lines.append(line)
    out = path.with_name(f"{path.stem}-no-{key}.yaml")
    out.write_text("\n".join(lines) + "\n")
    return out


def test_capture_records_what_mrs_hides_and_check_treats_it_unknown(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A Linux EL0 dump hides every field not FTR_VISIBLE ('not implemented'): capture lists them as
    unseen, and re-checking the captured profile does not judge those zeros (issue 9: a Graviton3
    EL0 dump read TTL/SEL2 as 0)."""
    captured = _capture_emulated(tmp_path, monkeypatch, "cortex-a72", {"spectre_v2": "Vulnerable"})
    data = yaml.safe_load(captured.read_text())
    assert data["vulnerabilities"] == {"spectre_v2": "Vulnerable"}
    assert "meltdown: not in" in captured.read_text()  # the missing file is said, and left unknown
    assert {"EL0", "EL1", "CSV2", "CSV3"} <= set(data["unseen"]["ID_AA64PFR0_EL1"])
    assert "FP" not in data["unseen"]["ID_AA64PFR0_EL1"]  # FTR_VISIBLE: the emulation shows it
    assert "MIDR_EL1" not in data["unseen"] and "CTR_EL0" not in data["unseen"]  # read whole
    assert (data["role"], data["origin"]) == ("host", "cpu")  # the CPU as its kernel shows it
    code, fs = _check(str(captured))
    assert code == 0 and not fs, fs
    # the substitutes taken at face value: P003 recognises an EL0 dump that does not say so
    code, fs = _check(str(_without(captured, "unseen")))
    assert code == 0 and [f["rule"] for f in fs] == ["P003"], fs


def test_captured_vulnerabilities_make_host_verdicts_definite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cortex-A72 (CSV2=0): KVM's CSV2 limit depends on the host's Spectre-v2 state, which only
    /sys/devices/system/cpu/vulnerabilities says. A capture of the CPU (sysfs + EL0 MRS, origin: cpu)
    records it, so --host captured.yaml gives the kernel's verdict instead of 'depends on the host'
    (K003 naming what is missing). A capture from /dev/kvm is KVM's view (origin: kvm-defaults),
    whose CSV2 already is KVM's answer: definite with or without the vulnerability files."""
    from cpumodel.oracle.recording import load_recording

    rec = load_recording(REPO / "tests/oracle/recordings/7.3.4_cortex-a72.json.gz", cases=False)
    db = regdb.load()
    kvm_view = {k: v for k, v in rec.feature_sets["none"].defaults.items() if v is not None and k in db.registers}
    monkeypatch.setattr(cap, "kvm_read", lambda regs, device="/dev/kvm": (kvm_view, {}, "a scratch VM (test)"))
    assert not (kvm_view["ID_AA64PFR0_EL1"] >> 56) & 0xF  # the recorded kernel gives this A72 no CSV2
    guest = tmp_path / "csv2.yaml"  # KVM's own view of ID_AA64PFR0_EL1 on this host, with CSV2=1
    guest.write_text(f"registers:\n  ID_AA64PFR0_EL1: {kvm_view['ID_AA64PFR0_EL1'] | 1 << 56:#x}\n")
    no_gic = tmp_path / "csv2-no-gic.yaml"  # the same for the shipped A72, whose GIC field QEMU leaves 0
    no_gic.write_text(f"registers:\n  ID_AA64PFR0_EL1: {(kvm_view['ID_AA64PFR0_EL1'] | 1 << 56) & ~(0xF << 24):#x}\n")
    for state, rules in (("Vulnerable", {"K002"}), ("Not affected", set())):
        d = tmp_path / state.replace(" ", "-")
        d.mkdir()
        captured = _capture_emulated(d, monkeypatch, "cortex-a72", {"spectre_v2": state, "meltdown": "Not affected"})
        facts = yaml.safe_load(captured.read_text())["vulnerabilities"]
        assert facts["spectre_v2"] == state
        # the EL0 capture hides the fields KVM's limits start from (CSV2, EL2, ...): --host needs them
        _, fs = _check(str(guest), "--host", str(captured), "--kernel", "7.3")
        assert [f["rule"] for f in fs if f["rule"][0] == "K"] == ["K003"], fs
        assert "ID_AA64PFR0_EL1.EL2" in str(fs[0]["why"]) and "spectre" not in str(fs[0]["why"]), fs
        # the shipped A72 (the CPU's registers) with the captured host facts: definite
        host = d / "a72-host.yaml"
        host.write_text("base: cortex-a72\nrole: host\n" + yaml.safe_dump({"vulnerabilities": facts}))
        _, fs = _check(str(no_gic), "--host", str(host), "--kernel", "7.3")
        assert {f["rule"] for f in fs if f["rule"][0] == "K"} == rules, fs
        assert all(f["field"] == "CSV2" for f in fs if f["rule"] == "K002"), fs
        _, fs = _check(str(no_gic), "--host", str(_without(host, "vulnerabilities")), "--kernel", "7.3")
        k003 = [f for f in fs if f["rule"] == "K003"]
        assert k003 and "host.spectre_v2_unaffected" in str(k003[0]["why"]), fs
    d = tmp_path / "kvm"
    d.mkdir()
    captured = _capture_emulated(d, monkeypatch, "cortex-a72", {"spectre_v2": "Vulnerable"}, ("kvm", "sysfs", "mrs"))
    assert yaml.safe_load(captured.read_text())["origin"] == "kvm-defaults"
    for host in (captured, _without(captured, "vulnerabilities")):
        _, fs = _check(str(guest), "--host", str(host), "--kernel", "7.3")
        assert {(f["rule"], f["field"]) for f in fs if f["rule"][0] == "K"} == {("K002", "CSV2")}, fs


def test_capture_says_what_it_captured_role_and_origin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sysfs and the EL0 MRS emulation show the CPU as its kernel sanitises it (role: host, origin: cpu);
    /dev/kvm shows KVM's view of a new VM on the host (role: guest, origin: kvm-defaults, as
    'cpumodel defaults' writes). Each captured file re-checks without errors and works as --host."""
    from cpumodel.oracle.recording import load_recording

    root = homogeneous(tmp_path / "tree")
    sysfs = tmp_path / "sysfs.yaml"
    r = CliRunner().invoke(capture_cmd, ["--sysfs-root", str(root), "-o", str(sysfs)])
    assert r.exit_code == 0, r.output
    data = yaml.safe_load(sysfs.read_text())
    assert (data["role"], data["origin"]) == ("host", "cpu")
    assert resolve(str(sysfs)).value_origin == "cpu"  # type: ignore[attr-defined]
    code, fs = _check(str(sysfs))
    assert code == 0 and not fs, fs

    d = tmp_path / "v1"
    d.mkdir()
    el0 = _capture_emulated(d, monkeypatch, "neoverse-v1", {"spectre_v2": "Not affected", "meltdown": "Not affected"})
    data = yaml.safe_load(el0.read_text())
    assert (data["role"], data["origin"]) == ("host", "cpu")
    assert "TLB" in data["unseen"]["ID_AA64ISAR0_EL1"] and "TTL" in data["unseen"]["ID_AA64MMFR2_EL1"]
    assert "SEL2" in data["unseen"]["ID_AA64PFR0_EL1"]
    code, fs = _check(str(el0))  # issue 9: no TLBIOS/TLBIRANGE/TTL/SEL2 finding from what the kernel hid
    assert code == 0 and not fs, fs
    code, fs = _check(str(REPO / "profiles/neoverse-v1-kvm7.3.yaml"), "--host", str(el0), "--kernel", "7.3")
    assert code == 0 and not [f for f in fs if f["severity"] == "error"], fs

    rec = load_recording(REPO / "tests/oracle/recordings/7.3.4_neoverse-n1.json.gz", cases=False)
    db = regdb.load()
    kvm_view = {k: v for k, v in rec.feature_sets["none"].defaults.items() if v is not None and k in db.registers}
    monkeypatch.setattr(cap, "kvm_read", lambda regs, device="/dev/kvm": (kvm_view, {}, "a scratch VM (test)"))
    d = tmp_path / "n1"
    d.mkdir()
    kvm = _capture_emulated(d, monkeypatch, "neoverse-n1", {"spectre_v2": "Mitigation: CSV2, BHB",
                                                            "meltdown": "Not affected"}, ("kvm", "sysfs", "mrs"))
    data = yaml.safe_load(kvm.read_text())
    assert (data["role"], data["origin"]) == ("guest", "kvm-defaults") and data["vcpu_features"] == []
    assert "unseen" not in data  # every ID register came from KVM, none from the MRS emulation
    code, fs = _check(str(kvm), "--host", str(kvm), "--kernel", "7.3")
    # KVM takes back its own view; what stays open is the raw host fields KVM rewrites (host_registers:,
    # which 'cpumodel defaults' writes and no capture source can read), said by name
    assert code == 0 and [f["rule"] for f in fs if f["rule"][0] in "KV"] == ["K003"], fs
    assert "does not give: host ID_AA64PFR1_EL1." in next(f["why"] for f in fs if f["rule"] == "K003"), fs
    code, fs = _check(str(kvm), "--kernel", "7.3")
    assert code == 0 and not [f for f in fs if f["severity"] == "error"], fs
