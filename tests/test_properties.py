"""Property-based tests (hypothesis) of the loader, resolver, emitter and model operations.

Profiles are generated from the register database (random register subsets; raw values,
field mappings with defined enum values, names and every integer spelling; bases, arch,
features, vCPU features) and mutated (random byte and line edits of valid ones). Invariants:

* loading + resolving returns a ``Model`` or raises ``CpumodelError``, never anything else,
  and checking a model never raises;
* ``emit --format yaml`` re-loaded and re-checked gives the same values and no new findings;
* ``diff A A`` is equal; ``baseline A A`` has A's values; ``diff --migratable A A`` holds, and
  checking A with itself as the host never raises;
* ``Field.put``/``Field.get``/``Field.as_signed`` round-trip for every field of every register.

In-suite runs are short. A long campaign: ``CPUMODEL_FUZZ_EXAMPLES=10000 pytest tests/test_properties.py
--hypothesis-show-statistics``; with ``CPUMODEL_FUZZ_SAVE=DIR`` every input that breaks an
invariant is also written to DIR, to be kept under ``tests/fuzz_regressions/`` (replayed below).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from cpumodel import regdb
from cpumodel.check import Options, check_model
from cpumodel.emit import emit
from cpumodel.errors import CpumodelError
from cpumodel.findings import Finding
from cpumodel.ops import baseline, diff, kvm_defaults, migratable
from cpumodel.profile import VCPU_FEATURES
from cpumodel.resolve import Model, Resolver
from cpumodel.yamlsrc import parse_int

REGRESSIONS = Path(__file__).resolve().parent / "fuzz_regressions"
EXAMPLES = int(os.environ.get("CPUMODEL_FUZZ_EXAMPLES", "150"))
SAVE = os.environ.get("CPUMODEL_FUZZ_SAVE")

SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])
# The checks are the expensive part (the feature model); the round trips run them twice.
HEAVY = settings(SETTINGS, max_examples=max(10, EXAMPLES // 3))

DB = regdb.load()
REGISTERS = sorted(DB.registers)
COMMON_FEATURES = ["FEAT_AES", "FEAT_PMULL", "FEAT_SHA1", "FEAT_SHA256", "FEAT_SHA3", "FEAT_SHA512", "FEAT_CRC32",
                   "FEAT_LSE", "FEAT_RDM", "FEAT_DotProd", "FEAT_FP16", "FEAT_FHM", "FEAT_SVE", "FEAT_SVE2",
                   "FEAT_BF16", "FEAT_I8MM", "FEAT_PAuth", "FEAT_BTI", "FEAT_RNG", "FEAT_MTE", "FEAT_SB",
                   "FEAT_SSBS", "FEAT_DIT", "FEAT_FlagM", "FEAT_LRCPC", "FEAT_JSCVT", "FEAT_FCMA", "FEAT_SME"]


@cache
def _versions() -> list[str]:
    from cpumodel.features import FeatureModel

    return FeatureModel.load().versions()


@cache
def _all_features() -> list[str]:
    from cpumodel.features import FeatureModel

    return sorted(FeatureModel.load().features())


#: ignore: entries: rule IDs, group prefixes, globs and typos (which P001 reports).
IGNORE_PATTERNS = ["A001", "A002", "ARCH-*", "ARCH-FEAT_SVE", "K0*", "V001", "P001", "A0001", "[", "*", "K003"]


def _kvm_available() -> bool:
    try:
        from cpumodel.rules import kvm_writes  # noqa: F401
    except ImportError:  # being written concurrently; the architecture rules still run
        return False
    return True


def opts() -> Options:
    return Options(kvm=_kvm_available())


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="cpumodel-props-") as d:
        yield Path(d)


_counter = iter(range(1 << 62))


def _fresh(workdir: Path) -> Path:
    d = workdir / f"ex{next(_counter)}"
    d.mkdir()
    return d


def _save(files: dict[str, bytes], what: str) -> None:
    """Keep an input that broke an invariant (CPUMODEL_FUZZ_SAVE=DIR)."""
    if not SAVE:
        return
    blob = b"".join(files.values())
    tag = hashlib.sha256(blob).hexdigest()[:12]
    d = Path(SAVE)
    d.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (d / f"{what}-{tag}-{name}").write_bytes(data)


# --------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------

def spell_int(value: int, style: str) -> str:
    """``value`` in one of the spellings documented in yamlsrc.parse_int."""
    sign = "-" if value < 0 else ""
    v = abs(value)
    if style == "hex":
        return f"{sign}{v:#x}"
    if style == "HEX":
        return f"{sign}0X{v:X}"
    if style == "bin":
        return f"{sign}{v:#b}"
    if style == "oct":
        return f"{sign}{v:#o}"
    if style == "hex_":
        digits = f"{v:016x}"
        return f"{sign}0x" + "_".join(digits[i:i + 4] for i in range(0, 16, 4)) if v < 1 << 64 else f"{sign}{v:#x}"
    if style == "plus":
        return f"+{v}" if not sign else f"-{v}"
    if style == "quoted":
        return f"'{sign}{v:#x}'"
    return f"{sign}{v}"


INT_STYLES = st.sampled_from(["dec", "hex", "HEX", "bin", "oct", "hex_", "plus", "quoted"])


@st.composite
def field_value(draw: st.DrawFn, f: regdb.Field) -> tuple[str, int]:
    """(spelling, unsigned field value) for one field: a defined value by name or number, or any value."""
    names = sorted(f.values.items())
    kind = draw(st.sampled_from(["name", "number", "any"] if names else ["any"]))
    if kind == "name":
        v, name = draw(st.sampled_from(names))
        spelled = draw(st.sampled_from([name, name.lower(), name.upper()]))
        if (f.lookup_value(spelled) != v or parse_int(spelled) is not None  # numeric names: numbers win
                or spelled.strip() != spelled or not spelled.replace("_", "").isalnum()):
            spelled = str(v)
        return spelled, v
    defined = st.sampled_from([v for v, _ in names]) if kind == "number" else st.integers(0, (1 << f.width) - 1)
    v = draw(defined)
    if f.signed and v >> (f.width - 1) and draw(st.booleans()):
        return spell_int(f.as_signed(v), draw(INT_STYLES)), v
    return spell_int(v, draw(INT_STYLES)), v


@st.composite
def register_entry(draw: st.DrawFn, reg: regdb.Register) -> str:
    """One line of a ``registers:`` mapping."""
    name = draw(st.sampled_from([reg.name, reg.name.lower(), reg.sysreg_name]))
    form = draw(st.sampled_from(["raw", "raw-clean", "fields", "fields-block"]))
    if form.startswith("raw"):
        if form == "raw-clean":  # a value with every reserved bit clear and defined enum values
            value = reg.res1_mask
            for f in reg.named_fields:
                value = f.put(value, draw(field_value(f))[1])
        else:
            value = draw(st.integers(0, (1 << 64) - 1))
        return f"  {name}: {spell_int(value, draw(INT_STYLES))}\n"
    fields = draw(st.lists(st.sampled_from(reg.named_fields), unique_by=lambda f: f.name, max_size=6)) \
        if reg.named_fields else []
    items = []
    for f in fields:
        spelled, _ = draw(field_value(f))
        fname = draw(st.sampled_from([f.name, f.name.lower()]))
        items.append((fname, spelled))
    if form == "fields-block" and items:
        return f"  {name}:\n" + "".join(f"    {k}: {v}\n" for k, v in items)
    return f"  {name}: {{{', '.join(f'{k}: {v}' for k, v in items)}}}\n"


def yaml_quote(text: str) -> str:
    """``text`` as a YAML double-quoted scalar: printable ASCII as is, everything else escaped."""
    out = []
    for c in text:
        o = ord(c)
        if c in '"\\':
            out.append("\\" + c)
        elif 0x20 <= o < 0x7F:
            out.append(c)
        elif o <= 0xFF:
            out.append(f"\\x{o:02x}")
        elif o <= 0xFFFF:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    return '"' + "".join(out) + '"'


# Names and descriptions: any text without surrogates, but only from the Basic Multilingual Plane
# and test_emit_yaml_non_bmp_text checks that emit writes the others.
TEXT = st.text(st.characters(max_codepoint=0xFFFF, blacklist_categories=("Cs",)), max_size=20)


@st.composite
def profile_text(draw: st.DrawFn, base: str | None = None, features: bool = False) -> str:
    """A profile whose sections (top-level keys) come in a random order."""
    sections = []
    if draw(st.booleans()):
        sections.append(f"name: {yaml_quote(draw(TEXT.filter(bool)))}\n")
    if draw(st.booleans()):
        sections.append(f"description: {yaml_quote(draw(TEXT))}\n")
    if base:
        sections.append(f"base: {base}\n")
    if draw(st.integers(0, 3)) == 0:
        sections.append(f"arch: {draw(st.sampled_from(_versions()))}\n")
    regs = draw(st.lists(st.sampled_from(REGISTERS), unique=True, max_size=8))
    if regs or draw(st.booleans()):
        sections.append("registers:\n" + "".join(draw(register_entry(DB.registers[r])) for r in regs)
                        if regs else "registers: {}\n")
    if features and draw(st.integers(0, 2)) == 0:
        # Forcing a feature needs the registers that define it: only on top of a shipped profile.
        # Now and then any feature the model knows (some are not determined by ID fields: an error).
        pool = st.one_of(st.sampled_from(COMMON_FEATURES), st.sampled_from(_all_features())) \
            if draw(st.integers(0, 4)) == 0 else st.sampled_from(COMMON_FEATURES)
        feats = draw(st.lists(pool, unique=True, min_size=1, max_size=3))
        sections.append(f"features: [{', '.join(draw(st.sampled_from('+-')) + f for f in feats)}]\n")
    if draw(st.integers(0, 5)) == 0:
        ignore = draw(st.lists(st.sampled_from(IGNORE_PATTERNS), unique=True, min_size=1, max_size=3))
        sections.append(f"ignore: [{', '.join(yaml_quote(i) for i in ignore)}]\n")
    if draw(st.integers(0, 5)) == 0:
        sections.append(f"role: {draw(st.sampled_from(['guest', 'host', 'Host']))}\n")
    if regs and draw(st.integers(0, 4)) == 0:
        sections.append("sources:\n" + "".join(f"  {r}: {yaml_quote(draw(TEXT))}\n" for r in regs[:2]))
    if draw(st.integers(0, 3)) == 0:
        vcpu = draw(st.lists(st.sampled_from(VCPU_FEATURES), unique=True))
        sections.append(f"vcpu_features: [{', '.join(vcpu)}]\n")
    order = draw(st.permutations(range(len(sections))))
    return "".join(sections[i] for i in order) or "registers: {}\n"


SHIPPED_BASES = ["neoverse-n1", "cortex-a72", "cortex-a55", "neoverse-v1", "a64fx"]


@st.composite
def profile_set(draw: st.DrawFn) -> dict[str, str]:
    """One profile, sometimes on a shipped one or on a generated base (itself sometimes on a shipped one)."""
    files: dict[str, str] = {}
    shipped = draw(st.sampled_from([None, None, *SHIPPED_BASES]))
    base = shipped
    if draw(st.integers(0, 2)) == 0:
        files["parent.yaml"] = draw(profile_text(base=shipped, features=shipped is not None))
        base = draw(st.sampled_from(["parent", "parent.yaml", "./parent.yaml"]))
    files["main.yaml"] = draw(profile_text(base=base, features=shipped is not None))
    return files


INTERESTING = [b":", b": ", b"-", b"- ", b"[", b"]", b"{", b"}", b",", b"#", b"&a ", b"*a", b"!!str ", b"!!int ",
               b"!x ", b"<<: ", b"? ", b"|", b">", b"'", b'"', b"\t", b"\n", b"  ", b"---\n", b"...\n", b"%YAML 1.1\n",
               b"\x00", b"\xff", b"\xef\xbb\xbf", b"\xc3", b"~", b"0x", b"0b", b"0o", b"_", b"-1", b"1e9", b".5",
               b"yes", b"on", b"null", b"0x" + b"f" * 17, b"9" * 30, b"base: parent\n", b"base: main\n",
               b"arch: v9Ap9\n", b"features: [+FEAT_SVE]\n", b"registers:\n", b"ID_AA64PFR0_EL1", b"SVE", b"IMP",
               b"MIDR_EL1: "]


SHIPPED_TEXTS = {p.stem: p.read_bytes() for p in sorted((Path(__file__).resolve().parents[1] / "profiles")
                                                          .glob("*.yaml"))}


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, bytes]:
    """A valid generated profile set, or a shipped profile, with 1-6 random byte or line edits in one file."""
    if draw(st.integers(0, 3)) == 0:
        files = {"main.yaml": SHIPPED_TEXTS[draw(st.sampled_from(sorted(SHIPPED_TEXTS)))]}
    else:
        files = {k: v.encode() for k, v in draw(profile_set()).items()}
    target = draw(st.sampled_from(sorted(files)))
    data = files[target]
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["replace", "insert", "delete", "dup-line", "drop-line", "swap-lines", "indent"]))
        pos = draw(st.integers(0, len(data)))
        if op == "replace" and data:
            pos = min(pos, len(data) - 1)
            data = data[:pos] + bytes([draw(st.integers(0, 255))]) + data[pos + 1:]
        elif op == "insert":
            token = draw(st.one_of(st.sampled_from(INTERESTING), st.binary(min_size=1, max_size=4)))
            data = data[:pos] + token + data[pos:]
        elif op == "delete":
            data = data[:pos] + data[pos + draw(st.integers(1, 8)):]
        else:
            lines = data.split(b"\n")
            i = draw(st.integers(0, len(lines) - 1))
            j = draw(st.integers(0, len(lines) - 1))
            if op == "dup-line":
                lines.insert(j, lines[i])
            elif op == "drop-line":
                del lines[i]
            elif op == "swap-lines":
                lines[i], lines[j] = lines[j], lines[i]
            else:
                lines[i] = b" " * draw(st.integers(0, 5)) + lines[i].lstrip(b" ")
            data = b"\n".join(lines)
    files[target] = data
    return files


# --------------------------------------------------------------------------------------------
# Invariants
# --------------------------------------------------------------------------------------------

def _write(workdir: Path, files: dict[str, bytes]) -> Path:
    d = _fresh(workdir)
    for name, data in files.items():
        (d / name).write_bytes(data)
    return d / "main.yaml"


def load_or_error(files: dict[str, bytes], workdir: Path) -> Model | None:
    """Invariant: a Model, or a CpumodelError with a location in one of the files; then checking never raises."""
    path = _write(workdir, files)
    try:
        try:
            model = Resolver().resolve_file(str(path))
        except CpumodelError as e:
            assert e.location is not None, str(e)
            assert e.location.file.startswith(str(path.parent)) or "profiles" in e.location.file, str(e)
            assert "\n" not in str(e), str(e)
            return None
        check_model(model, opts())
        return model
    except Exception:
        _save(files, "load")
        raise


def finding_keys(findings: list[Finding]) -> set[tuple[Any, ...]]:
    """What was violated: (rule, severity). Not where: a constraint reached through an asserted
    ``arch:`` in one model may be attributed to the field that implies the version in another."""
    return {(f.rule, f.severity) for f in findings}


@SETTINGS
@given(files=profile_set())
def test_generated_profiles_load_or_fail_cleanly(files: dict[str, str], workdir: Path) -> None:
    load_or_error({k: v.encode() for k, v in files.items()}, workdir)


@SETTINGS
@given(files=mutated())
def test_mutated_profiles_load_or_fail_cleanly(files: dict[str, bytes], workdir: Path) -> None:
    load_or_error(files, workdir)


@HEAVY
@given(files=profile_set())
@example(files={  # found by CI: a guest on a host profile whose raw values break Arm's rules
    "parent.yaml": "base: neoverse-n1\narch: v8Ap0\nregisters:\n  AIDR_EL1: 0\n  CLIDR_EL1: 0\n  CTR_EL0: 0\n"
                   "  DCZID_EL0: 0\n  ID_AA64AFR0_EL1: 0\n  ID_AA64AFR1_EL1: 0\n  ID_AA64DFR0_EL1: 0\n"
                   "features: [+FEAT_AES]\nrole: host\nsources:\n  AIDR_EL1: \"\"\n  CLIDR_EL1: \"\"\n",
    "main.yaml": "base: parent\nignore: [\"A001\", \"K0*\"]\n"})
def test_emit_yaml_round_trip(files: dict[str, str], workdir: Path) -> None:
    """The YAML emitted for a model re-loads to the same values and checks with no new findings."""
    raw = {k: v.encode() for k, v in files.items()}
    model = load_or_error(raw, workdir)
    assume(model is not None)
    assert model is not None
    try:
        first = check_model(model, opts())
        text = emit(model, "yaml")
        again_path = _fresh(workdir) / "emitted.yaml"
        again_path.write_text(text, encoding="utf-8")
        again = Resolver().resolve_file(str(again_path))
        assert again.values == model.values
        # arch: is kept unless its floor would add registers; then it is written as a comment
        assert again.arch in (model.arch, None)
        assert again.vcpu_features == model.vcpu_features
        ignored = [p for p, _ in model.ignore]
        new = finding_keys(check_model(again, Options(kvm=opts().kvm, ignore=ignored))) - finding_keys(first)
        # provenance: the emitted file holds every value itself, so on a role: host (a real CPU) the
        # base's architecture errors are now the silicon's own deviations, reported as warnings; and on
        # a guest, what it inherited from a host profile (a real CPU's deviations, warnings) is now its own
        # value, reported as an error
        swapped = {"warning": "error", "error": "warning"}
        new = {k for k in new if not (k[1] in swapped and (k[0], swapped[k[1]]) in finding_keys(first))}
        if any(f.severity == "error" for f in first):
            # an already contradictory model may have its conflict blamed on another rule once an
            # assertion is lost: the values must survive, and a clean model must stay clean
            new = {k for k in new if k[1] != "error"}
        assert not new, f"new findings after the round trip: {sorted(map(str, new))}\n--- emitted:\n{text}"
    except Exception:
        _save(raw, "roundtrip")
        raise


def test_emit_yaml_non_bmp_text(workdir: Path) -> None:
    files = {"main.yaml": "name: \"caf\u00e9 \U0001F600\"\ndescription: \"\U00010348\"\n"
                          "registers: {MIDR_EL1: 0x410fd0c0}\n".encode()}
    model = load_or_error(files, workdir)
    assert model is not None and model.name == "caf\u00e9 \U0001F600"
    again_path = _fresh(workdir) / "emitted.yaml"
    again_path.write_text(emit(model, "yaml"), encoding="utf-8")
    again = Resolver().resolve_file(str(again_path))
    assert (again.name, again.description) == (model.name, model.description)


def test_emit_yaml_base_and_arch_round_trip(workdir: Path) -> None:
    """Found by test_emit_yaml_round_trip: a child with base: and arch: does not survive emit + re-load."""
    files = {"parent.yaml": b"base: cortex-a72\narch: v8Ap0\n", "main.yaml": b"base: parent\narch: v8Ap1\n"}
    model = load_or_error(files, workdir)
    assert model is not None
    again_path = _fresh(workdir) / "emitted.yaml"
    again_path.write_text(emit(model, "yaml"), encoding="utf-8")
    assert Resolver().resolve_file(str(again_path)).values == model.values


def test_emit_yaml_keeps_role(workdir: Path) -> None:
    files = {"main.yaml": b"role: host\nregisters:\n  ID_AA64PFR0_EL1: 0x1100000010111112\n"}
    model = load_or_error(files, workdir)
    assert model is not None and model.role == "host"
    again_path = _fresh(workdir) / "emitted.yaml"
    again_path.write_text(emit(model, "yaml"), encoding="utf-8")
    again = Resolver().resolve_file(str(again_path))
    assert again.role == model.role
    assert finding_keys(check_model(again, opts())) == finding_keys(check_model(model, opts()))


@HEAVY
@given(files=profile_set())
def test_diff_baseline_migratable_of_a_model_with_itself(files: dict[str, str], workdir: Path) -> None:
    raw = {k: v.encode() for k, v in files.items()}
    model = load_or_error(raw, workdir)
    assume(model is not None)
    assert model is not None
    try:
        d = diff(model, model)
        assert d.equal, d
        b = baseline([model, model], kvm=False)
        assert b.values == model.values
        assert not b.conflicts
        # what KVM shows a VM on an architecturally valid host is acceptable on that host
        unsilenced = dataclasses.replace(model, ignore=[])
        # (an architecture error of a role: host is the silicon's own: a warning marked inherited_from)
        if not any(f.severity == "error" or "inherited_from" in f.extra
                   for f in check_model(unsilenced, Options(kvm=False))):
            view, _ = kvm_defaults(model, None, frozenset())
            guest = Model(name="view", path="<view>", values=view, vcpu_features=frozenset())
            blocking = [v for v in migratable(guest, model) if not v.ok]
            assert not blocking, blocking
        check_model(model, Options(kvm=opts().kvm, host=model))  # a model as its own host: no crash
    except Exception:
        _save(raw, "ops")
        raise


# Field encoding ------------------------------------------------------------------------------

ALL_FIELDS = [f for r in DB for f in r.fields]


@SETTINGS
@given(f=st.sampled_from(ALL_FIELDS), value=st.integers(0, (1 << 64) - 1), data=st.data())
def test_field_put_get_round_trip(f: regdb.Field, value: int, data: st.DataObject) -> None:
    fv = data.draw(st.integers(0, (1 << f.width) - 1))
    new = f.put(value, fv)
    assert 0 <= new < 1 << 64
    assert f.get(new) == fv
    assert new & ~f.mask == value & ~f.mask  # other bits untouched
    assert f.put(value, f.get(value)) == value
    s = f.as_signed(fv)
    if f.signed:
        assert -(1 << (f.width - 1)) <= s < 1 << (f.width - 1)
        assert s & ((1 << f.width) - 1) == fv
    else:
        assert s == fv


def test_every_field_round_trips_its_extremes() -> None:
    """Deterministic sweep: every field of every register, at 0, 1, its maximum and a pattern."""
    for reg in DB:
        covered = 0
        for f in reg.fields:
            assert 0 <= f.lsb <= f.msb < 64, f
            assert covered & f.mask == 0, f"{f.qualname} overlaps another field"
            covered |= f.mask
            for base in (0, (1 << 64) - 1, 0x5A5A_5A5A_5A5A_5A5A):
                for fv in {0, 1 & ((1 << f.width) - 1), (1 << f.width) - 1, 0x5 & ((1 << f.width) - 1)}:
                    new = f.put(base, fv)
                    assert f.get(new) == fv and new & ~f.mask == base & ~f.mask
            if f.signed:
                assert f.as_signed((1 << f.width) - 1) == -1
                assert f.as_signed(1 << (f.width - 1)) == -(1 << (f.width - 1))


@SETTINGS
@given(data=st.data())
def test_signed_field_spelling_matches_as_signed(data: st.DataObject, workdir: Path) -> None:
    """A negative value written for a signed field loads as the two's complement that as_signed inverts."""
    signed = [f for f in ALL_FIELDS if f.signed and f.kind in ("enum", "field")]
    assume(signed)
    f = data.draw(st.sampled_from(signed))
    n = data.draw(st.integers(-(1 << (f.width - 1)), -1))
    path = _write(workdir, {"main.yaml": f"registers:\n  {f.register}: {{{f.name}: {n}}}\n".encode()})
    m = Resolver().resolve_file(str(path))
    assert f.as_signed(f.get(m.values[f.register])) == n


# --------------------------------------------------------------------------------------------
# Regressions: every input that once broke an invariant
# --------------------------------------------------------------------------------------------

def _regression_cases() -> list[Path]:
    return sorted(p for p in REGRESSIONS.glob("*.yaml") if not p.name.endswith(".base.yaml"))


@pytest.mark.parametrize("case", _regression_cases(), ids=lambda p: p.stem)
def test_fuzz_regression(case: Path, workdir: Path) -> None:
    """Replay a saved input (``NAME.yaml``; its base, if any, is ``NAME.base.yaml``, written as parent.yaml)."""
    files = {"main.yaml": case.read_bytes()}
    base = case.with_name(case.stem + ".base.yaml")
    if base.exists():
        files["parent.yaml"] = base.read_bytes()
    model = load_or_error(files, workdir)
    if model is None:
        return
    # a model that loads also survives emit --format yaml and a re-load
    again_path = _fresh(workdir) / "emitted.yaml"
    again_path.write_text(emit(model, "yaml"), encoding="utf-8")
    again = Resolver().resolve_file(str(again_path))
    assert (again.values, again.role, again.vcpu_features) == (model.values, model.role, model.vcpu_features)
    assert (again.name, again.description) == (model.name, model.description)


def test_regression_directory_is_replayed() -> None:
    assert REGRESSIONS.is_dir() and _regression_cases(), "tests/fuzz_regressions/ holds the saved inputs"

