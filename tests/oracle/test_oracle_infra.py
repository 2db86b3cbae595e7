"""Unit tests of the oracle's pure-Python parts (no QEMU, no network, no cross compiler)."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from cpumodel.oracle import (
    DEFAULT_FEATURE_SETS,
    UNCHANGED,
    Case,
    FieldValue,
    OracleError,
    compare_recordings,
    generate_cases,
    load_recording,
    read_cases,
    save_recording,
    write_cases,
)
from cpumodel.oracle.build import probe_source
from cpumodel.oracle.cases import (
    MaskedValue,
    MigrationSource,
    encode_case_file,
    feature_key,
    feature_mask,
    features_of_key,
    random_cases,
)
from cpumodel.oracle.console import check_complete, errno_name, parse_console
from cpumodel.oracle.cpio import chardev, directory, gzip_newc_archive, newc_archive, regular
from cpumodel.oracle.errors import BootTimeout, KernelNotFound, ProbeCrash, ToolMissing
from cpumodel.oracle.kernel import _abi_sort_key, extract_vmlinuz, match_abi, to_plain_image
from cpumodel.oracle.recording import CaseResult, FeatureSetRecord, Recording
from cpumodel.oracle.runner import fnv1a_values, run_cases
from cpumodel.oracle.sysregs import (
    ORACLE_REGISTERS,
    encoding_of,
    encoding_of_id,
    encoding_of_mask_index,
    mask_index,
    one_reg_id,
    sysreg_name,
)

RECORDINGS = Path(__file__).parent / "recordings"
PFR0 = (3, 0, 0, 4, 0)


# --- one-reg IDs and names ------------------------------------------------------------


def test_one_reg_id_matches_uapi_formula() -> None:
    # KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM64_SYSREG (0x13 << 16) | 3<<14 | 4<<3; note the
    # 0x13 coprocessor field (0x603000000000c020, without it, is not a sysreg ID). The
    # committed recordings were read from real KVM with these IDs.
    assert one_reg_id(PFR0) == 0x603000000013C020
    # ARM64_SYS_REG(op0, op1, crn, crm, op2) by hand for a few more
    for enc in [(3, 0, 0, 1, 2), (3, 3, 0, 0, 1), (3, 1, 0, 0, 1), (3, 0, 0, 7, 4)]:
        op0, op1, crn, crm, op2 = enc
        want = 0x6000000000000000 | 0x0030000000000000 | (0x13 << 16)
        want |= op0 << 14 | op1 << 11 | crn << 7 | crm << 3 | op2
        assert one_reg_id(enc) == want
        assert encoding_of_id(want) == enc
    assert one_reg_id(encoding_of("CTR_EL0")) == 0x603000000013D801


def test_names() -> None:
    assert sysreg_name(PFR0) == "ID_AA64PFR0_EL1"
    assert sysreg_name((3, 0, 0, 1, 2)) == "ID_DFR0_EL1"
    assert sysreg_name((3, 0, 0, 3, 0)) == "MVFR0_EL1"
    assert sysreg_name((3, 0, 0, 3, 3)) == "S3_0_C0_C3_3"
    assert encoding_of("S3_0_C0_C3_3") == (3, 0, 0, 3, 3)
    assert encoding_of("DCZID_EL0") == (3, 3, 0, 0, 7)
    with pytest.raises(OracleError, match="unknown register"):
        encoding_of("NOT_A_REG")
    assert len(ORACLE_REGISTERS) == 68 == len(set(ORACLE_REGISTERS))


def test_mask_index_matches_kvm_macro() -> None:
    # KVM_ARM_FEATURE_ID_RANGE_IDX: op1 3 -> 2; (op1' << 6 | crm << 3 | op2)
    assert mask_index(PFR0) == 4 * 8
    assert mask_index((3, 3, 0, 0, 1)) == 2 * 64 + 1  # CTR_EL0
    assert mask_index((3, 1, 0, 0, 1)) == 64 + 1  # CLIDR_EL1
    assert mask_index((3, 2, 0, 0, 0)) is None
    for i in range(192):
        assert mask_index(encoding_of_mask_index(i)) == i


# --- cases ------------------------------------------------------------------------------


def test_field_value_apply() -> None:
    assert FieldValue(8, 4, 3).apply(0xFFFF) == 0xF3FF
    assert FieldValue(60, 4, 0).apply(2**64 - 1) == 0x0FFFFFFFFFFFFFFF
    assert UNCHANGED.apply(0x1234) == 0x1234
    with pytest.raises(OracleError):
        FieldValue(62, 4, 0)
    with pytest.raises(OracleError):
        FieldValue(0, 4, 16)


def test_case_json_roundtrip(tmp_path: Path) -> None:
    cases = [
        Case(PFR0, FieldValue(8, 4, 3), frozenset({"pmu", "sve"})),
        Case(PFR0, 0x1234, frozenset(), after_run=True),
        Case((3, 0, 0, 1, 2), UNCHANGED, frozenset({"vgic"}), after_run=True),
    ]
    path = tmp_path / "c.jsonl"
    assert write_cases(path, cases) == 3
    first = json.loads(path.read_text().splitlines()[0])
    assert first == {
        "reg": "ID_AA64PFR0_EL1",
        "encoding": [3, 0, 0, 4, 0],
        "value": {"field_shift": 8, "field_width": 4, "field_value": 3},
        "features": ["pmu", "sve"],
        "after_run": False,
    }
    assert read_cases(path) == cases
    more = [Case(PFR0, MaskedValue(0xF0, 0x30)), Case(PFR0, 7, frozenset({"vgic"}), seq="m1")]
    write_cases(path, more)
    assert read_cases(path) == more


def test_case_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"reg": "ID_AA64PFR0_EL1", "encoding": [3,0,0,4,1], "value": "0x0"}\n')
    with pytest.raises(OracleError, match=r"bad.jsonl:1: .*ID_AA64PFR1_EL1"):
        read_cases(bad)
    bad.write_text('# comment\n\n{"reg": "ID_AA64PFR0_EL1", "value": "0x0", "features": ["avx"]}\n')
    with pytest.raises(OracleError, match=r":3: unknown vCPU feature"):
        read_cases(bad)
    bad.write_text("{not json\n")
    with pytest.raises(OracleError, match="not JSON"):
        read_cases(bad)
    with pytest.raises(OracleError, match="64-bit"):
        Case.from_json({"reg": "MIDR_EL1", "value": hex(2**64)})
    with pytest.raises(OracleError, match="cannot read"):
        read_cases(tmp_path / "missing.jsonl")


def test_feature_keys() -> None:
    assert feature_key([]) == "none"
    assert feature_key({"sve", "pmu"}) == "pmu+sve"
    assert features_of_key("pmu+sve") == frozenset({"pmu", "sve"})
    assert feature_mask({"pmu", "el1_32bit"}) == 0b1001
    assert feature_mask({"vgic"}) == 16


def test_generate_cases_counts() -> None:
    cases = generate_cases()
    per_set = 68 * (16 * 16 + 2) + 68 * 6 + 68 * 17  # sweep + 0/~0, random, after run
    imp_id = 3 * 8  # MIDR/REVIDR/AIDR extra values in the writable_imp_id set
    assert len(cases) == per_set * len(DEFAULT_FEATURE_SETS) + imp_id
    assert generate_cases() == cases  # deterministic (seeded)
    one = generate_cases([frozenset()], [PFR0])
    values = {c.value for c in one if not c.after_run}
    assert FieldValue(8, 4, 3) in values and 0 in values and 2**64 - 1 in values
    after = [c for c in one if c.after_run]
    assert UNCHANGED in {c.value for c in after} and len(after) == 17


def test_random_cases_shapes() -> None:
    one = random_cases([frozenset()], [PFR0])
    masked = [c.value for c in one if isinstance(c.value, MaskedValue)]
    absolute = [c.value for c in one if isinstance(c.value, int)]
    assert len(masked) == 4 and len(absolute) == 2
    assert any(m.bits == 0 and bin(m.mask).count("1") >= 8 for m in masked)  # several fields cleared
    assert any(m.bits for m in masked)  # several fields given values
    assert MaskedValue(0xF0F, 0x102).apply(0xFFFF) == 0xF1F2
    with pytest.raises(OracleError, match="outside mask"):
        MaskedValue(0xF, 0x10)
    imp = random_cases([frozenset({"vgic", "writable_imp_id"})], [(3, 0, 0, 0, 0)])
    assert len(imp) == 6 + 8 and any(isinstance(c.value, int) and c.value < 2**32 for c in imp)


def test_migration_cases_are_sequences() -> None:
    vgic = frozenset({"vgic"})
    src = MigrationSource("7.3.4/max", vgic, {PFR0: 0x11, (3, 0, 0, 1, 2): 0x22})
    cases = generate_cases([frozenset(), vgic], [PFR0, (3, 0, 0, 1, 2)], migrations=[src])
    seq = [c for c in cases if c.seq is not None]
    assert [(c.reg, c.value, c.seq) for c in seq] == [
        ("ID_AA64PFR0_EL1", 0x11, "migrate 7.3.4/max [vgic]"),
        ("ID_DFR0_EL1", 0x22, "migrate 7.3.4/max [vgic]"),
    ]
    cf = encode_case_file(cases, [frozenset(), vgic], registers=[PFR0])
    lines = cf.text.splitlines()
    s = lines.index("S 10")  # a fresh VM after the feature-set blocks
    assert lines[s + 1 : s + 4] == ["W 603000000013c020 11", "W 603000000013c00a 22", "E"]
    assert cf.blocks[-1] == (vgic, "migrate 7.3.4/max [vgic]")
    # a feature set the target does not record: no sequence
    assert not [c for c in generate_cases([frozenset()], [PFR0], migrations=[src]) if c.seq]


def test_encode_case_file_orders_blocks_and_run() -> None:
    none, pmu = frozenset(), frozenset({"pmu"})
    cases = [
        Case(PFR0, 5, pmu),
        Case(PFR0, FieldValue(4, 4, 1), none, after_run=True),
        Case(PFR0, FieldValue(0, 4, 2), none),
    ]
    cf = encode_case_file(cases, [none, pmu], registers=[PFR0], watchdog_seconds=60)
    lines = cf.text.splitlines()
    assert lines == [
        "T 60",
        "G 603000000013c020",
        "B 0",
        "M 603000000013c020 0 4 2",
        "X",
        "M 603000000013c020 4 4 1",
        "E",
        "B 1",
        "W 603000000013c020 5",
        "E",
    ]
    assert cf.order == [2, 1, 0]
    with pytest.raises(OracleError, match="not among the requested"):
        encode_case_file(cases, [none])


# --- cpio -------------------------------------------------------------------------------


def test_cpio_newc_layout() -> None:
    data = newc_archive([regular("init", b"abc", 0o755)])
    assert data.startswith(b"070701")
    assert len(data) % 4 == 0
    assert b"TRAILER!!!\0" in data
    # header field 7 (filesize) is at 6 + 6*8
    assert int(data[6 + 6 * 8 : 6 + 7 * 8], 16) == 3


@pytest.mark.skipif(shutil.which("cpio") is None, reason="cpio not installed")
def test_cpio_lists_what_we_wrote(tmp_path: Path) -> None:
    entries = [
        directory("dev"),
        chardev("dev/console", 5, 1),
        regular("init", b"\x7fELF" + b"x" * 1001, 0o755),
        regular("cases.txt", b"T 5\n"),
    ]
    archive = gzip.decompress(gzip_newc_archive(entries))
    listed = subprocess.run(["cpio", "-t", "--quiet"], input=archive, capture_output=True, check=True)
    assert listed.stdout.decode().split() == ["dev", "dev/console", "init", "cases.txt"]
    verbose = subprocess.run(["cpio", "-tv", "--quiet"], input=archive, capture_output=True, check=True)
    text = verbose.stdout.decode()
    assert "crw-------" in text and "-rwxr-xr-x" in text and "1005" in text
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["cpio", "-id", "--quiet", "init", "cases.txt"], input=archive, cwd=out, check=True)
    assert (out / "cases.txt").read_bytes() == b"T 5\n"
    assert (out / "init").stat().st_size == 1005


# --- console parsing --------------------------------------------------------------------


def _probe_lines(*msgs: dict[str, object]) -> list[str]:
    return [f"@@ORACLE {json.dumps({'n': i, **m})}" for i, m in enumerate(msgs)]


def test_parse_console_with_noise() -> None:
    lines = _probe_lines(
        {"t": "hello", "release": "6.12"}, {"t": "res", "i": 0, "e": [0, 22]}, {"t": "done", "lines": 3}
    )
    console = "\r\n".join(
        [
            "[    0.000000] Booting Linux on physical CPU 0x0000000000 [0x000f0510]",
            "garbage \x00\x1b[0m before",
            lines[0],
            "[    2.1] random: crng init done" + lines[1],  # noise glued in front of a marker
            "@@ORACLE {broken json",
            lines[2],
            "[    3.0] reboot: Power down",
        ]
    )
    out = parse_console(console)
    assert [m["t"] for m in out.messages] == ["hello", "res", "done"]
    assert out.garbage == ["@@ORACLE {broken json"]
    assert out.noise_lines == 3
    assert check_complete(out, console)["lines"] == 3


def test_check_complete_errors() -> None:
    lines = _probe_lines({"t": "hello"}, {"t": "res"}, {"t": "done", "lines": 3})
    with pytest.raises(ProbeCrash, match="missing line numbers \\[1\\]"):
        text = "\n".join([lines[0], lines[2]])
        check_complete(parse_console(text), text)
    with pytest.raises(ProbeCrash, match="before the probe finished"):
        check_complete(parse_console(lines[0]), lines[0])
    panic = "Kernel panic - not syncing: Attempted to kill init!"
    with pytest.raises(ProbeCrash, match="never started") as exc:
        check_complete(parse_console(panic), panic)
    assert "Attempted to kill init" in str(exc.value)
    fatal = '@@ORACLE {"n": 1, "t": "fatal", "what": "open /dev/kvm", "errno": 2}'
    with pytest.raises(ProbeCrash, match="open /dev/kvm \\(errno ENOENT\\)"):
        check_complete(parse_console(lines[0] + "\n" + fatal), fatal)


def test_errno_names() -> None:
    assert errno_name(0) == 0
    assert errno_name(22) == "EINVAL"
    assert errno_name(16) == "EBUSY"
    assert errno_name(-1) == -1
    assert errno_name(4095) == "ERRNO4095"


def fnv1a_bytes(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & (2**64 - 1)
    return h


def test_fnv_hash_matches_probe_definition() -> None:
    # FNV-1a 64 over the little-endian bytes; empty input = offset basis
    assert fnv1a_values([]) == 0xCBF29CE484222325
    assert fnv1a_values([0x61]) == fnv1a_bytes(b"a" + bytes(7))
    assert fnv1a_values([0]) != fnv1a_values([1])


# --- kernels ----------------------------------------------------------------------------


def test_match_abi() -> None:
    abis = sorted(
        ["6.12.95+deb12-arm64", "6.12.117+deb13-arm64", "7.3.4+deb13-arm64", "7.2.13+deb14-arm64"],
        key=_abi_sort_key,
    )
    assert abis[0] == "6.12.95+deb12-arm64"
    assert match_abi("6.12", abis) == "6.12.117+deb13-arm64"
    assert match_abi("6.12.95+deb12", abis) == "6.12.95+deb12-arm64"
    assert match_abi("linux-image-7.3.4+deb13-arm64", abis) == "7.3.4+deb13-arm64"
    assert match_abi("7", abis) == "7.3.4+deb13-arm64"
    assert match_abi("5.10", abis) is None


def _fake_image(size: int = 0x100) -> bytes:
    img = bytearray(size)
    img[0x38:0x3C] = b"ARM\x64"
    return bytes(img)


def _fake_deb(path: Path, member: str, payload: bytes) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        info = tarfile.TarInfo(member)
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    data = buf.getvalue()

    def ar_member(name: str, body: bytes) -> bytes:
        hdr = f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(body):<10}`\n".encode()
        return hdr + body + (b"\n" if len(body) % 2 else b"")

    path.write_bytes(b"!<arch>\n" + ar_member("debian-binary", b"2.0\n") + ar_member("data.tar.xz", data))


@pytest.mark.parametrize(
    "member", ["./boot/vmlinuz-6.12.117+deb13-arm64", "./usr/lib/modules/7.3.4+deb13-arm64/vmlinuz"]
)
def test_extract_vmlinuz_from_both_package_layouts(tmp_path: Path, member: str) -> None:
    deb = tmp_path / "k.deb"
    _fake_deb(deb, member, gzip.compress(_fake_image()))
    out = extract_vmlinuz(deb, tmp_path / "Image")
    assert out.read_bytes() == _fake_image()


def test_extract_vmlinuz_errors(tmp_path: Path) -> None:
    deb = tmp_path / "k.deb"
    _fake_deb(deb, "./usr/share/doc/readme", b"hi")
    with pytest.raises(KernelNotFound, match="contains no kernel"):
        extract_vmlinuz(deb, tmp_path / "Image")
    (tmp_path / "x.deb").write_bytes(b"not a deb")
    with pytest.raises(OracleError, match="not a Debian package"):
        extract_vmlinuz(tmp_path / "x.deb", tmp_path / "Image")
    with pytest.raises(OracleError, match="not an arm64 Image"):
        to_plain_image(b"\0" * 0x100)


# --- errors and the runner's checks -----------------------------------------------------


def test_tool_missing_names_package() -> None:
    e = ToolMissing("qemu-system-aarch64", "qemu-system-arm")
    assert "qemu-system-aarch64 is not installed" in str(e)
    assert "apt-get install -y qemu-system-arm" in str(e)


def test_boot_timeout_shows_console_tail() -> None:
    e = BootTimeout("QEMU did not finish within 5 s", console_tail="[ 1.0] last line")
    assert "last line" in str(e) and "within 5 s" in str(e)


def test_run_cases_missing_kernel(tmp_path: Path) -> None:
    with pytest.raises(OracleError, match="does not exist"):
        run_cases(tmp_path / "nope", "max", [])


def test_run_cases_rejects_non_image(tmp_path: Path) -> None:
    bad = tmp_path / "vmlinuz"
    bad.write_bytes(b"MZ" + bytes(200))
    with pytest.raises(OracleError, match="not an arm64 kernel Image"):
        run_cases(bad, "max", [])


def test_run_cases_reports_missing_qemu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = tmp_path / "Image"
    image.write_bytes(_fake_image())
    monkeypatch.setenv("PATH", str(tmp_path))  # no qemu, no cross compiler
    with pytest.raises(ToolMissing) as exc:
        run_cases(image, "max", [Case(PFR0, 0)], cache_dir=tmp_path / "cache")
    assert exc.value.package in {"gcc-aarch64-linux-gnu", "qemu-system-arm"}


def test_probe_source_is_package_data() -> None:
    src = probe_source()
    assert "KVM_ARM_GET_REG_WRITABLE_MASKS" in src and "@@ORACLE " in src


# --- recordings -------------------------------------------------------------------------


def _tiny_recording() -> Recording:
    fs = FeatureSetRecord(
        features=frozenset(),
        init_errno=0,
        defaults={"ID_AA64PFR0_EL1": 0x11, "DCZID_EL0": None},
        get_errno={"DCZID_EL0": "ENOENT"},
        writable_masks={"ID_AA64PFR0_EL1": 0xF0},
    )
    case = CaseResult(
        "ID_AA64PFR0_EL1", PFR0, 0x01, frozenset(), False, 0, {"field_shift": 4, "field_width": 4, "field_value": 0}
    )
    return Recording(
        kernel={"release": "6.12.117+deb13-arm64", "version": "6.12"},
        qemu={"version": "7.2.22", "cpu": "max", "machine": "virt"},
        feature_sets={"none": fs},
        cases=[case],
        timing={"cases": 1},
    )


def test_recording_roundtrip(tmp_path: Path) -> None:
    rec = _tiny_recording()
    path = tmp_path / "r.json.gz"
    save_recording(rec, path)
    raw = json.loads(gzip.decompress(path.read_bytes()))
    assert raw["schema"] == "cpumodel-oracle-recording/2"
    assert raw["feature_sets"]["none"]["defaults"] == {"ID_AA64PFR0_EL1": "0x0000000000000011", "DCZID_EL0": None}
    assert raw["groups"][0]["requests"] == ["f4:4:0"] and raw["groups"][0]["errnos"] == "0"
    back = load_recording(path)
    assert back.cases == rec.cases
    assert back.feature_set(frozenset()).defaults == rec.feature_sets["none"].defaults
    assert back.cases[0].to_case() == Case(PFR0, FieldValue(4, 4, 0))
    assert compare_recordings(rec, back) == []
    changed = _tiny_recording()
    changed.cases[0] = CaseResult("ID_AA64PFR0_EL1", PFR0, 0x01, frozenset(), False, "EINVAL")
    assert any("errno 0 != EINVAL" in d for d in compare_recordings(rec, changed))


def test_recording_v2_compacts_and_reads_every_case_kind(tmp_path: Path) -> None:
    rec = _tiny_recording()
    none, vgic = frozenset(), frozenset({"vgic"})
    rec.cases = [
        *(
            CaseResult("ID_AA64PFR0_EL1", PFR0, FieldValue(sh, 4, v).apply(0x11), none, False, "EINVAL" if v else 0,
                       {"field_shift": sh, "field_width": 4, "field_value": v})
            for sh in range(0, 64, 4)
            for v in range(16)
        ),
        CaseResult("ID_AA64PFR0_EL1", PFR0, 0x11, none, True, 0, "default"),
        CaseResult(
            "ID_AA64PFR0_EL1", PFR0, 0xF1, none, False, "EBUSY", {"mask": f"{0xF0:#018x}", "bits": f"{0xF0:#018x}"}
        ),
        CaseResult("ID_AA64PFR0_EL1", PFR0, 0x1234, vgic, False, 0, None, "migrate x [vgic]"),
        # a relative case whose value the defaults do not give back: stored explicitly
        CaseResult(
            "ID_AA64PFR0_EL1", PFR0, 0x999, none, False, 0, {"field_shift": 0, "field_width": 4, "field_value": 1}
        ),
    ]
    path = tmp_path / "r.json.gz"
    save_recording(rec, path)
    raw = json.loads(gzip.decompress(path.read_bytes()))
    assert raw["groups"][0]["requests"] == ["sweep4"]
    assert "values" in raw["groups"][-1] and "values" not in raw["groups"][0]
    assert load_recording(path).cases == rec.cases
    light = load_recording(path, cases=False)
    assert light.cases == [] and light.feature_sets["none"].defaults == rec.feature_sets["none"].defaults
    assert load_recording(path, sequences_only=True).cases == [c for c in rec.cases if c.seq is not None]


def test_recording_v1_still_loads(tmp_path: Path) -> None:
    rec = _tiny_recording()
    d = rec.to_json()
    d["schema"] = "cpumodel-oracle-recording/1"
    d["cases"] = [c.to_json() for c in rec.cases]
    del d["groups"], d["errno_codes"]
    path = tmp_path / "v1.json.gz"
    path.write_bytes(gzip.compress(json.dumps(d).encode()))
    back = load_recording(path)
    assert back.cases == rec.cases and back.schema == "cpumodel-oracle-recording/1"


def test_kernel_version_of_recording() -> None:
    rec = _tiny_recording()
    rec.kernel = {"release": "6.1.0-50-arm64", "package_version": "6.1.176-1"}
    assert (rec.kernel_version, rec.kernel_line) == ("6.1.176", "6.1")
    rec.kernel = {"release": "6.17.13+deb13-arm64", "package_version": "6.17.13-1~bpo13+1"}
    assert rec.kernel_version == "6.17.13"
    rec.kernel = {"release": "7.3.4+deb13-arm64"}
    assert rec.kernel_version == "7.3.4"


def test_load_recording_errors(tmp_path: Path) -> None:
    p = tmp_path / "x.json"
    p.write_text('{"schema": "something-else"}')
    with pytest.raises(OracleError, match="not an oracle recording"):
        load_recording(p)
    p.write_text("{")
    with pytest.raises(OracleError, match="not JSON"):
        load_recording(p)


@pytest.mark.parametrize("path", sorted(RECORDINGS.glob("*.json.gz")), ids=lambda p: p.name)
def test_committed_recordings_load(path: Path) -> None:
    rec = load_recording(path)
    assert rec.cases, "a recording without cases"
    assert rec.feature_sets["none"].accepted
    assert rec.feature_sets["none"].defaults["ID_AA64PFR0_EL1"] is not None
    # after_run: changing a register that has not changed under KVM (vgic sets) is EBUSY
    vgic = rec.feature_sets["vgic"]
    if rec.kernel_line == "6.1":  # no writable masks before 6.7: the ioctl is not attempted
        assert vgic.masks_errno is None and not vgic.writable_masks
    for c in rec.cases:
        if c.after_run and c.features == frozenset({"vgic"}) and c.reg == "ID_AA64ISAR0_EL1":
            default = vgic.defaults[c.reg]
            # before 6.7 (6.1) an ID register only ever accepts its current value: EINVAL
            change = "EINVAL" if rec.kernel_line == "6.1" else "EBUSY"
            assert c.errno == (0 if c.value == default else change)


# --- capture live check (tools/oracle/capture_live.py) ----------------------------------


def test_capture_compare_with_probe() -> None:
    from tools.oracle.capture_live import compare, parse_values

    rec = _tiny_recording()
    rec.feature_sets["none"].defaults.update({"MIDR_EL1": 0x414FD0C1, "REVIDR_EL1": 0})
    console = "\n".join([
        "noise",
        '=== VALUES kvm {"values":{"MIDR_EL1":"0x414fd0c1","REVIDR_EL1":"0x0","ID_AA64PFR0_EL1":"0x11"},'
        '"unread":{"DCZID_EL0":"KVM_GET_ONE_REG: ENOENT"}}',
        '=== VALUES sysfs {"values":{"MIDR_EL1":"0x414fd0c1","REVIDR_EL1":"0x0"},"unread":{}}',
        '=== VALUES mrs {"values":{"MIDR_EL1":"0x414fd0c1"},"unread":{}}',
    ])
    diffs, agreed = compare(parse_values(console), rec)
    assert diffs == [] and "kvm: 3 registers equal to the probe's KVM defaults" in agreed
    bad = console.replace('"ID_AA64PFR0_EL1":"0x11"', '"ID_AA64PFR0_EL1":"0x12"').replace(
        '=== VALUES mrs {"values":{"MIDR_EL1":"0x414fd0c1"},"unread":{}}', '=== VALUES mrs {"error":"no HWCAP_CPUID"}'
    )
    diffs, _ = compare(parse_values(bad), rec)
    assert any("ID_AA64PFR0_EL1: capture 0x0000000000000012, probe 0x0000000000000011" in d for d in diffs)
    assert any(d.startswith("mrs: capture read nothing (no HWCAP_CPUID)") for d in diffs)
