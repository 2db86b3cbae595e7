"""Real silicon checks without errors (issue 9): ID-register dumps of real machines, through the CLI.

The dumps are in tests/fixtures/real/ (each names its public source). A real CPU (``role: host``)
that deviates from an Arm mandate gets warnings, never errors: the silicon is what it is. KVM's own
view of a VM on a real host (``origin: kvm-defaults``) checks clean against itself as ``--host``.
A Linux EL0 MRS dump hides fields (it reads them as their safe values): declared ``unseen`` they are
unknown; undeclared, P003 says the dump is one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from cpumodel import el0 as cap
from cpumodel.cli import main

REPO = Path(__file__).resolve().parents[1]
REAL = REPO / "tests/fixtures/real"
DUMPS = sorted(REAL.glob("*.yaml"))
V1_MANDATES = {"ARCH-FEAT_TLBIOS-2", "ARCH-FEAT_TLBIRANGE-2", "ARCH-FEAT_TTL-2"}


def _check(*args: str) -> tuple[int, list[dict]]:  # type: ignore[type-arg]
    r = CliRunner().invoke(main, ["check", "--format", "json", *args])
    assert r.exit_code in (0, 1), r.output
    return r.exit_code, json.loads(r.stdout)["findings"]


def _errors(findings: list[dict]) -> list[dict]:  # type: ignore[type-arg]
    return [f for f in findings if f["severity"] == "error"]


def test_there_are_real_dumps_with_sources() -> None:
    assert len(DUMPS) >= 6
    for p in DUMPS:
        text = p.read_text()
        assert text.startswith("# ") and ("commit" in text.split("name:")[0] or "$Id r" in text), p.name
        data = yaml.safe_load(text)
        assert set(data["sources"]) == set(data["registers"]), p.name


@pytest.mark.parametrize("path", DUMPS, ids=[p.stem for p in DUMPS])
def test_real_dump_checks_without_errors(path: Path) -> None:
    code, fs = _check(str(path))
    assert code == 0 and not _errors(fs), _errors(fs)


@pytest.mark.parametrize("name,kernel", [("graviton3-kvm6.1", "6.1"), ("graviton4-kvm6.1", "6.1"),
                                         ("graviton3-kvm6.18", "6.18")])
def test_kvm_view_of_a_real_host_is_its_own_host(name: str, kernel: str) -> None:
    """Firecracker's KVM_GET_ONE_REG values on Graviton: written back on that host, KVM accepts them
    all (no K/V error). On 6.1 nothing depends on the host any more; 6.18's ID_AA64PFR1_EL1 limit
    needs raw host fields KVM hides (host_registers:, which a vCPU dump cannot show): K003 names them."""
    path = str(REAL / f"{name}.yaml")
    code, fs = _check(path, "--host", path, "--kernel", kernel)
    assert code == 0 and not _errors(fs), _errors(fs)
    kv = [f for f in fs if f["rule"][0] in "KV"]
    assert all(f["rule"] == "K003" and "does not give: host ID_AA64PFR1_EL1." in f["why"] for f in kv), kv
    assert bool(kv) == (kernel == "6.18"), kv


def test_graviton3_kvm_view_mandates_are_warnings(tmp_path: Path) -> None:
    """Issue 9: 'a Graviton3 (Neoverse V1) dump gets 4 errors (TLBIOS/TLBIRANGE/TTL/SEL2)'. In KVM 6.18's
    view of a real Graviton3 they are warnings naming KVM's own defaults; the same values written
    by hand (no origin) are errors."""
    mandates = (*V1_MANDATES, "ARCH-FEAT_SEL2-2")
    path = REAL / "graviton3-kvm6.18.yaml"
    _, fs = _check(str(path), "--kernel", "6.18")
    got = {f["rule"]: f for f in fs}
    assert all(got[r]["severity"] == "warning" and "KVM's own defaults" in got[r]["message"] for r in mandates), fs
    hand = tmp_path / "hand-made.yaml"
    hand.write_text(path.read_text().replace("origin: kvm-defaults\n", ""))
    _, fs = _check(str(hand), "--kernel", "6.18", "--no-kvm")
    assert set(mandates) <= {f["rule"] for f in _errors(fs)}, fs


def test_apple_m1_deviations_are_warnings_naming_the_cpu(tmp_path: Path) -> None:
    """Issue 9: 'an Apple M1 gets a RES0 and a RASv1p1 error'. M1 sets ID_AA64MMFR2_EL1 bit 44 (RES0 in
    Arm's 2023-09 SysReg XML too) and has RAS without RASv1p1 though it is v8.4+ (E0PD): real
    deviations, so warnings naming the real CPU; the same values in a guest model are errors."""
    path = REAL / "apple-m1-vbox.yaml"
    code, fs = _check(str(path))
    got = {f["rule"]: f for f in fs}
    assert {"A002", "ARCH-FEAT_RASv1p1-2"} <= set(got), fs
    assert all(got[r]["severity"] == "warning" and "a real CPU (role: host)" in got[r]["message"]
               for r in ("A002", "ARCH-FEAT_RASv1p1-2")), fs
    guest = tmp_path / "m1-as-guest.yaml"
    guest.write_text(path.read_text().replace("role: host", "role: guest"))
    code, fs = _check(str(guest), "--no-kvm")
    assert code == 1 and {"A002", "ARCH-FEAT_RASv1p1-2"} <= {f["rule"] for f in _errors(fs)}, fs


# ---------------------------------------------------------------------------------------------
# A Linux EL0 MRS dump of a Neoverse V1 (Graviton3): the shape issue 9 names
# ---------------------------------------------------------------------------------------------

def _el0_dump(tmp_path: Path, core: str, unseen: str | None, role: str = "host") -> Path:
    """``core``'s registers as Linux 7.3's EL0 MRS emulation returns them (cpufeature.c emulate_id_reg():
    user_val | (sys_val & user_mask)), written as a user would hand them in: MIDR, CTR_EL0 and
    DCZID_EL0 whole, the emulated ID registers as read; ``unseen`` None, 'list' or 'el0-mrs'."""
    regs = yaml.safe_load((REPO / f"profiles/{core}.yaml").read_text())["registers"]
    krules = cap.el0_rules("7.3")
    values = {n: v if n in ("MIDR_EL1", *cap.EL0_READABLE) else cap.el0_view(n, v, krules)
              for n, v in regs.items() if n in ("MIDR_EL1", *cap.EL0_READABLE) or cap.el0_emulated(n)}
    lines = [f"name: {core}-el0", f"role: {role}", "kernel_release: 7.3.4", "registers:"]
    lines += [f"  {n}: {v:#x}" for n, v in values.items()]
    if unseen == "el0-mrs":
        lines.append("unseen: el0-mrs")
    elif unseen == "list":
        lines.append("unseen:")
        lines += [f"  {n}: [{', '.join(fs)}]" for n, fs in cap.el0_hidden(values, krules).items()]
    out = tmp_path / f"{core}-el0-{unseen}-{role}.yaml"
    out.write_text("\n".join(lines) + "\n")
    return out


def test_el0_view_is_the_kernels_rule() -> None:
    """Hidden fields read their safe_val, visible ones the CPU's: EL0/EL1 (hidden, safe IMP) read 1,
    EL2/EL3/RAS/SEL2 read 0 on Neoverse V1; ID_AA64MMFR0_EL1 reads no granule at all."""
    krules = cap.el0_rules("7.3")
    pfr0 = cap.el0_view("ID_AA64PFR0_EL1", 0x1101_1101_1111_1112, krules)
    assert pfr0 & 0xFF == 0x11 and (pfr0 >> 8) & 0xFF == 0  # EL0=1, EL1=1; EL2=0, EL3=0
    assert (pfr0 >> 16) & 0xFF == 0x11  # FP, AdvSIMD: visible
    mmfr0 = cap.el0_view("ID_AA64MMFR0_EL1", 0x0000_0000_0010_1125, krules)
    assert (mmfr0 >> 28) & 0xF == 0xF and (mmfr0 >> 24) & 0xF == 0xF and (mmfr0 >> 20) & 0xF == 0
    from cpumodel import kvm
    from cpumodel.rules.profile_rules import NO_GRANULE

    for line in kvm.kernels():  # P003's cheap test holds on every modelled line
        assert (cap.el0_view("ID_AA64MMFR0_EL1", 0x0010_1125, cap.el0_rules(line)) >> 20) & 0xFFF == NO_GRANULE


@pytest.mark.parametrize("unseen", ["list", "el0-mrs"])
def test_neoverse_v1_el0_dump_with_unseen_has_no_mandate_findings(tmp_path: Path, unseen: str) -> None:
    code, fs = _check(str(_el0_dump(tmp_path, "neoverse-v1", unseen)))
    assert code == 0 and not fs, fs


def test_neoverse_v1_el0_dump_without_unseen_is_recognised(tmp_path: Path) -> None:
    """Without 'unseen:' the hidden zeros are judged (TLBIOS/TLBIRANGE/TTL, PAN, LOR, RAS, ...): on
    role: host they are warnings, and P003 says this is an EL0 dump and how to declare it; as a guest
    model (no role) they are errors, with the same P003."""
    code, fs = _check(str(_el0_dump(tmp_path, "neoverse-v1", None)))
    rules = {f["rule"] for f in fs}
    assert code == 0 and "P003" in rules and rules >= V1_MANDATES, fs
    assert "unseen: el0-mrs" in next(f["why"] for f in fs if f["rule"] == "P003")
    code, fs = _check(str(_el0_dump(tmp_path, "neoverse-v1", None, role="guest")), "--no-kvm")
    assert code == 1 and "P003" in {f["rule"] for f in fs} and {f["rule"] for f in _errors(fs)} >= V1_MANDATES


@pytest.mark.parametrize("path", [*sorted((REPO / "profiles").glob("*.yaml")), *DUMPS],
                         ids=lambda p: p.stem)
def test_p003_stays_quiet_on_full_dumps(path: Path) -> None:
    _, fs = _check(str(path), "--no-kvm")
    assert "P003" not in {f["rule"] for f in fs}


def test_unseen_el0_mrs_covers_only_hidden_fields(tmp_path: Path) -> None:
    """'unseen: el0-mrs' makes exactly the fields the kernel line's emulation hides unknown: a visible
    field (ID_AA64ISAR0_EL1.AES) is still judged."""
    from cpumodel.resolve import resolve

    model = resolve(str(_el0_dump(tmp_path, "neoverse-v1", "el0-mrs")))
    krules = cap.el0_rules("7.3")
    isar0 = model.unseen["ID_AA64ISAR0_EL1"]
    assert isar0 & (0xF << 56)  # TLB: hidden
    assert not isar0 & (0xF << 4)  # AES: FTR_VISIBLE
    assert set(model.unseen) == set(cap.el0_hidden(model.values, krules))
    bad = tmp_path / "bad.yaml"
    bad.write_text("registers: {ID_AA64ISAR0_EL1: 0}\nunseen: el1-mrs\n")
    r = CliRunner().invoke(main, ["check", str(bad)])
    assert r.exit_code == 2 and "el0-mrs" in r.output


# ---------------------------------------------------------------------------------------------
# System registers outside the CPU model (P004): a dump loads as it is, a typo stays an error
# ---------------------------------------------------------------------------------------------

M1 = REAL / "apple-m1-vbox.yaml"
PROFILES_DIR = REPO / "profiles"
M1_SYSTEM = {"MPIDR_EL1": 0x80000000, "ERRIDR_EL1": 0, "CCSIDR_EL1": 0x701FE03A, "CNTFRQ_EL0": 0x16E3600}


def _line_of(path: Path, key: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if line.startswith(f"  {key}:"))


def _cli(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_real_dump_with_system_registers_checks_with_p004_warnings() -> None:
    """The M1 report's MPIDR_EL1, ERRIDR_EL1, CCSIDR_EL1 and CNTFRQ_EL0, kept as VirtualBox gives them: exit 0,
    one P004 warning each at its file:line, saying it is outside the CPU model and ignored."""
    data = yaml.safe_load(M1.read_text())
    assert {k: data["registers"][k] for k in M1_SYSTEM} == M1_SYSTEM
    code, fs = _check(str(M1))
    assert code == 0 and not _errors(fs), _errors(fs)
    p004 = {f["message"].split("'")[1]: f for f in fs if f["rule"] == "P004"}
    assert set(p004) == set(M1_SYSTEM), fs
    for name, f in p004.items():
        assert f["severity"] == "warning" and "outside the CPU model: ignored" in f["message"], f
        assert "will not be written" not in f["message"]  # role: host: nothing is written
        assert f["line"] == _line_of(M1, name) and f["file"] == str(M1), f
    code, out, _ = _cli("check", str(M1))
    assert code == 0 and f"{M1}:{_line_of(M1, 'MPIDR_EL1')}:3: P004 warning: 'MPIDR_EL1' is a system register" in out


def test_system_registers_are_not_in_the_model() -> None:
    from cpumodel.resolve import resolve

    model = resolve(str(M1))
    assert not set(M1_SYSTEM) & set(model.values) and set(model.system_registers) == set(M1_SYSTEM)


def test_ignore_p004_silences_it(tmp_path: Path) -> None:
    _, fs = _check(str(M1), "--ignore", "P004")
    assert "P004" not in {f["rule"] for f in fs}
    own = tmp_path / "m1.yaml"
    own.write_text(M1.read_text().replace("role: host\n", "role: host\nignore: [P004]\n"))
    _, fs = _check(str(own))
    assert "P004" not in {f["rule"] for f in fs} and fs  # the other warnings stay


def test_guest_model_says_the_register_is_not_written_and_emit_leaves_it_out(tmp_path: Path) -> None:
    """On a guest model (Firecracker's V1N1 template plus a dump's registers) P004 adds that the register
    will not be written, and no emit format writes it: not its name, not its KVM one-reg ID."""
    guest = tmp_path / "guest.yaml"
    guest.write_text("name: g\nbase: firecracker-v1n1\nregisters:\n  MPIDR_EL1: 0x80000000\n"
                     "  sctlr_el1: 0x30d00800\n  S3_0_C0_C4_3: 0\n")
    code, fs = _check(str(guest))
    p004 = [f for f in fs if f["rule"] == "P004"]
    assert code == 0 and [f["line"] for f in p004] == [4, 5, 6], fs
    assert all("it will not be written to the guest" in f["message"] for f in p004), p004
    assert "'SCTLR_EL1'" in p004[1]["message"]  # the name as Linux spells it
    assert "unallocated ID-register encoding" in p004[2]["message"]
    # KVM one-reg IDs (regdb.onereg_id) of MPIDR_EL1 (3,0,0,0,5), SCTLR_EL1 (3,0,1,0,0), (3,0,0,4,3)
    onereg = [f"{x:x}" for x in (0x603000000013C005, 0x603000000013C080, 0x603000000013C023)]
    for fmt in ("json", "yaml", "kvm", "c-header", "firecracker", "qemu"):
        code, out, err = _cli("emit", str(guest), "--format", fmt)
        assert code == 0 and out, (fmt, out, err)
        low = out.lower()
        assert not [w for w in ("mpidr", "sctlr", "s3_0_c0_c4_3", "30d00800", *onereg) if w in low], (fmt, out)
    _, base, _ = _cli("emit", str(PROFILES_DIR / "firecracker-v1n1.yaml"), "--format", "json")
    _, got, _ = _cli("emit", str(guest), "--format", "json")
    assert json.loads(got)["registers"] == json.loads(base)["registers"]


@pytest.mark.parametrize("text,needle", [
    ("ID_AA64PRF0_EL1: 0", "unknown register 'ID_AA64PRF0_EL1' (did you mean ID_AA64PFR0_EL1?)"),
    ("MPIDR_EL2: 0", "unknown register 'MPIDR_EL2' (did you mean MIDR_EL1?)"),  # neither: still an error
    ("NOT_A_REGISTER_EL1: 0", "unknown register 'NOT_A_REGISTER_EL1'"),
    ("DC_CISW: 0", "unknown register 'DC_CISW'"),  # in sys_reg_descs[], but an instruction
    ("S3_0_C5_C3_7: 0", "unknown register 'S3_0_C5_C3_7'"),  # an encoding no source names
    ("MPIDR_EL1: {Aff0: 1}", "MPIDR_EL1 is a system register outside the CPU model: cpumodel knows none"),
    ("MPIDR_EL1: yes", "MPIDR_EL1: expected an integer, got the boolean"),
    ("MPIDR_EL1: 0x10000000000000000", "MPIDR_EL1: expected a 64-bit unsigned integer"),
    ("MPIDR_EL1: 1\n  S3_0_C0_C0_5: 2", "register MPIDR_EL1 given twice (first at line 2)"),
    ("\"MPIDR_EL1\\u202e\\x1b[31m\": 0", r"unknown register 'MPIDR_EL1\u202e\x1b[31m'"),
])
def test_what_stays_an_error(tmp_path: Path, text: str, needle: str) -> None:
    """A name that is no real register (a typo of an ID register, even one as close to a system register)
    exits 2 with file:line and the 'did you mean'; so does a system register given by field or badly."""
    p = tmp_path / "bad.yaml"
    p.write_text(f"registers:\n  {text}\n")
    code, _, err = _cli("check", str(p))
    assert code == 2 and f"{p}:" in err and needle in err, err
    assert "\x1b" not in err and "\u202e" not in err  # escaped, as the other errors are


def test_a_system_register_name_wins_over_a_did_you_mean(tmp_path: Path) -> None:
    """suggest() finds MIDR_EL1 for MPIDR_EL1 and CLIDR_EL1 for CCSIDR_EL1: an exact real register name is not
    a typo, so it loads (the loose similarity would make every dump fail); the encoding spelling resolves too."""
    from cpumodel import regdb
    from cpumodel.errors import suggest

    db = regdb.load()
    assert suggest("MPIDR_EL1", list(db.registers)) == "did you mean MIDR_EL1?"
    p = tmp_path / "d.yaml"
    p.write_text("role: host\nregisters:\n  MIDR_EL1: 0x611f0231\n  S3_0_C0_C0_5: 0x80000000\n  cntfrq_el0: 24000000\n")
    code, fs = _check(str(p))
    assert code == 0 and [(f["rule"], f["message"].split("'")[1]) for f in fs] == [
        ("P004", "MPIDR_EL1"), ("P004", "CNTFRQ_EL0")], fs


def test_system_registers_elsewhere_are_errors(tmp_path: Path) -> None:
    """host_registers: and unseen: name fields of ID registers: a system register there is an error."""
    for text in ("host_registers:\n  MPIDR_EL1: {Aff0: 1}\n", "unseen:\n  MPIDR_EL1: [Aff0]\n"):
        p = tmp_path / "e.yaml"
        p.write_text(text)
        code, _, err = _cli("check", str(p))
        assert code == 2 and "'MPIDR_EL1' is a system register outside the CPU model" in err, err


def test_system_registers_are_loaded_only_for_an_unknown_name() -> None:
    """The KVM data files are read for sysregs only when the register database does not know a name."""
    import subprocess
    import sys

    probe = ("import sys\nfrom cpumodel.resolve import resolve\nresolve(sys.argv[1])\n"
             "print('cpumodel.sysregs' in sys.modules)\n")
    for path, expect in ((REPO / "profiles/neoverse-n1.yaml", "False"), (M1, "True")):
        out = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, cwd=REPO,
                             timeout=60, check=True).stdout.strip()
        assert out == expect, (path, out)


def test_schema_admits_system_registers() -> None:
    import jsonschema

    from tools.gen_schema import OUT

    schema = json.loads(OUT.read_text())
    jsonschema.validate(yaml.safe_load(M1.read_text()), schema)
    bad = {"registers": {"ID_AA64PRF0_EL1": 0}}
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(bad))
    assert list(jsonschema.Draft202012Validator(schema).iter_errors({"registers": {"MPIDR_EL1": {"Aff0": 1}}}))
