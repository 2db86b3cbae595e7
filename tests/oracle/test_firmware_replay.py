"""The recorded kernels' answers to firmware pseudo-register restores (tests/oracle/firmware/, made by
``python -m tools.oracle record-firmware``, format in cpumodel/oracle/firmware.py) replayed through what
``cpumodel check`` runs.

How (host profile from the ID recording + the recorded sysfs vulnerabilities, one profile per
restore with the register under ``firmware:``, ``check_model`` F001 = the kernel's verdict and errno;
after-run and no-PSCI_0_2 restores through ``cpumodel.kvm.firmware.check``, the function F001 calls):
tools/oracle/firmware_check.py, which CI's live tier also runs on a fresh boot. Every recorded
restore is judged (a few seconds).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cpumodel import identity
from cpumodel.kvm import firmware as fwmodel
from cpumodel.oracle import firmware
from tools.oracle.firmware_check import FIRMWARE, compare, line_of, replay, tables_release


def _replay(tmp: Path) -> None:
    assert FIRMWARE
    judged, total, bad = replay(FIRMWARE, tmp)
    assert judged > 0
    assert not bad, f"{len(bad)} of {judged} judged ({total} recorded) disagree:\n" + "\n".join(bad[:40])


@pytest.mark.skipif(not FIRMWARE, reason="no firmware recordings")
def test_firmware_replay(tmp_path: Path) -> None:
    _replay(tmp_path)


def test_recordings_cover_the_lines() -> None:
    """At least the kernel CI's live tier boots and a line with VENDOR_HYP_BMAP_2, each with every VM."""
    recs = {firmware.load(p).kernel_version: firmware.load(p) for p in FIRMWARE}
    assert {"6.12.117", "7.3.4"} <= set(recs)
    for rec in recs.values():
        assert set(rec.vms) == {vm for vm, *_ in firmware.VMS}
        assert all(v["init_errno"] == 0 for v in rec.vms.values())
    assert recs["6.12.117"].vms["psci_0_2"]["get_errno"]["VENDOR_HYP_BMAP_2"] == "ENOENT"
    assert recs["7.3.4"].vms["psci_0_2"]["defaults"]["VENDOR_HYP_BMAP_2"] == "0x0"
    assert identity.line_or_newest(None) in {r.kernel_line for r in recs.values()}


def test_recording_roundtrip(tmp_path: Path) -> None:
    rec = firmware.load(FIRMWARE[0])
    firmware.save(rec, tmp_path / "x.json.gz")
    assert firmware.load(tmp_path / "x.json.gz").to_json() == rec.to_json()
    assert compare(rec, firmware.load(tmp_path / "x.json.gz")) == []
    other = firmware.load(FIRMWARE[-1])
    assert compare(rec, other)  # another kernel or CPU answers differently somewhere
    text, order = firmware.case_text()
    assert len(order) == sum(1 for ln in text.splitlines() if ln[:1] in "WM")
    with pytest.raises(ValueError, match="not a"):
        (tmp_path / "bad.json").write_text('{"schema": "other"}')
        firmware.load(tmp_path / "bad.json")


@pytest.mark.skipif(not FIRMWARE, reason="no firmware recordings")
def test_target_impl_hypercalls_as_modelled() -> None:
    """What a guest's hvc got (probe.c ``H`` cases) is what cpumodel.kvm.firmware.target_impl() says a VMM
    must do: on lines with VENDOR_HYP_BMAP_2 the KVM_FEATURES call reports the bits the VMM wrote (x2),
    KVM itself answers the target-implementation calls NOT_SUPPORTED even with the bits set, and only
    the SMCCC filter's FWD_TO_USER brings them to the VMM (a KVM_EXIT_HYPERCALL), bits or not."""
    not_supported = "0xffffffffffffffff"  # SMCCC_RET_NOT_SUPPORTED (-1) in x0
    seen = 0
    for path in FIRMWARE:
        rec = firmware.load(path)
        line = line_of(rec)
        if line is None:
            continue
        seen += 1
        hc = rec.hypercalls
        has = "VENDOR_HYP_BMAP_2" in fwmodel.registers(line)
        assert fwmodel.target_impl(line, {"VENDOR_HYP_BMAP_2": 3}).enabled is has
        assert (hc["features bits"]["bmap2_errno"] == 0) is has, path.name
        feats = [x["data"] for x in hc["features bits"]["exits"]]
        assert feats == ["0x3", "0x3" if has else "0x0"], path.name  # x0 = VENDOR_HYP_BMAP, x2 = BMAP_2
        assert [x["data"] for x in hc["features"]["exits"]] == ["0x3", "0x0"], path.name
        for name in ("impl_ver bits", "impl_cpus bits"):
            assert hc[name]["exits"][0] == {"run_errno": 0, "reason": "MMIO", "data": not_supported}, path.name
        for name in ("impl_ver bits+filter", "impl_ver filter"):
            if has:
                assert hc[name]["filter_errno"] == 0
                assert hc[name]["exits"] == [{"run_errno": 0, "reason": "HYPERCALL", "nr": "0xc6000040"}], path.name
    assert seen


@pytest.mark.skipif(not FIRMWARE, reason="no firmware recordings")
def test_other_releases_answer_as_their_line() -> None:
    """A recorded release that is not the one a line's tables come from (Debian's 6.17.13, 6.19.14)
    answers every restore and hypercall as the tables' release does on the same CPU, so the model's
    verdicts hold for it too. Lines without tables (6.16, 7.0) are recorded, not judged."""
    recs = {(r.kernel_version, r.cpu): r for r in map(firmware.load, FIRMWARE)}
    compared = 0
    for (version, cpu), rec in recs.items():
        release = tables_release(rec.kernel_line)
        if release is None or release == version:
            continue
        assert compare(recs[(release, cpu)], rec) == [], f"{version} {cpu} vs {release}"
        compared += 1
    assert compared >= 8
