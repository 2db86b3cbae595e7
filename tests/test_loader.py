"""Loading profiles: every bad input is one CpumodelError with file:line, never a traceback."""

from __future__ import annotations

import pytest

from cpumodel.errors import CpumodelError
from cpumodel.profile import load
from cpumodel.resolve import resolve
from cpumodel.yamlsrc import parse_int


def _err(path, match: str, line: int | None = None, where=None) -> CpumodelError:  # type: ignore[no-untyped-def]
    with pytest.raises(CpumodelError, match=match) as ei:
        resolve(str(path))
    e = ei.value
    assert e.location is not None and e.location.file == str(where or path)
    if line is not None:
        assert e.location.line == line, str(e)
    return e


def test_raw_field_and_named_values(write) -> None:  # type: ignore[no-untyped-def]
    p = write("ok.yaml", """\
        name: demo
        registers:
          ID_AA64PFR0_EL1: 0x0000_0000_0000_2222
          ID_AA64ISAR0_EL1: {AES: PMULL, SHA1: 1, sha2: sha512, CRC32: 0b1}
          ID_AA64PFR1_EL1: {}
        """)
    m = resolve(str(p))
    assert m.name == "demo"
    assert m.values["ID_AA64PFR0_EL1"] == 0x2222
    assert m.values["ID_AA64ISAR0_EL1"] == (2 << 4) | (1 << 8) | (2 << 12) | (1 << 16)
    assert m.where("ID_AA64ISAR0_EL1", "AES").line == 4


def test_signed_field_accepts_negative(write) -> None:  # type: ignore[no-untyped-def]
    p = write("s.yaml", "registers:\n  ID_AA64PFR0_EL1: {EL0: 1, EL1: 1, FP: -1, AdvSIMD: NI}\n")
    v = resolve(str(p)).values["ID_AA64PFR0_EL1"]
    assert (v >> 16) & 0xF == 0xF and (v >> 20) & 0xF == 0xF


@pytest.mark.parametrize(("text", "match", "line"), [
    ("registers:\n  ID_AA64PFR0_EL1: 0x1\n  ID_AA64PFR0_EL1: 0x2\n", "duplicate key 'ID_AA64PFR0_EL1'", 3),
    ("registers:\n  ID_AA64PFR0_EL1: {SVE: 1, SVE: 0}\n", "duplicate key 'SVE'", 2),
    ("registers:\n  ID_AA64PFR0_EL1: 0x1\n  id_aa64pfr0: 0x2\n", "given twice", 3),
    ("registers:\n  ID_AA64PRF0_EL1: 0x1\n", "unknown register.*did you mean ID_AA64PFR0_EL1", 2),
    ("registers:\n  ID_AA64PFR0_EL1: {SVF: 1}\n", "no field 'SVF'.*did you mean SVE", 2),
    ("registers:\n  ID_AA64PFR0_EL1: {SVE: IMPL}\n", "unknown value name 'IMPL'.*did you mean IMP", 2),
    ("registers:\n  ID_AA64PFR0_EL1: {SVE: 16}\n", "does not fit the 4-bit field", 2),
    ("registers:\n  ID_AA64PFR0_EL1: {SVE: -1}\n", "negative value -1 for an unsigned field", 2),
    ("registers:\n  ID_AA64PFR0_EL1: {FP: -9}\n", "below the signed 4-bit range", 2),
    ("registers:\n  ID_AA64PFR0_EL1: 0x10000000000000000\n", "does not fit in 64 bits", 2),
    ("registers:\n  ID_AA64PFR0_EL1: -5\n", "negative value", 2),
    ("registers:\n  ID_AA64PFR0_EL1: 1.5\n", "not an integer", 2),
    ("registers:\n  ID_AA64PFR0_EL1: yes\n", "boolean", 2),
    ("registers:\n  ID_AA64PFR0_EL1: {SVE: on}\n", "boolean", 2),
    ("registers:\n  ID_AA64PFR0_EL1: 0777\n", "not an integer", 2),
    ("registers:\n  ID_AA64PFR0_EL1: 1:30\n", "not an integer", 2),
    ("registers:\n  ID_AA64PFR0_EL1: [1, 2]\n", "not an integer|expected an integer", 2),
    ("registers:\n  ID_AA64PFR0_EL1:\n", "expected an integer", 2),
    ("registers: [1]\n", "expected a mapping", 1),
    ("regsiters: {}\n", "unknown key 'regsiters'.*did you mean registers", 1),
    ("- a\n- b\n", "must be a mapping", 1),
    ("name: [x]\n", "expected a string", 1),
    ("registers:\n  ID_AA64PFR0_EL1: !!python/object:os.system {}\n", "tag .* is not allowed", 2),
    ("registers: {a: 1\n", "YAML syntax error", None),
    ("registers:\n\tID_AA64PFR0_EL1: 1\n", "tab character", 2),
    ("a: 1\n---\nb: 2\n", "more than one YAML document", None),
    ("x: &a {k: 1}\nregisters:\n  <<: *a\n", "merge keys", 3),
    ("features: [+]\n", "empty feature name", 1),
    ("vcpu_features: [pmu, sev]\n", "unknown vCPU feature 'sev'.*did you mean sve", 1),
    ("", "empty profile", 1),
    ("# only a comment\n", "empty profile", 1),
])
def test_bad_input(write, text: str, match: str, line: int | None) -> None:  # type: ignore[no-untyped-def]
    _err(write("bad.yaml", text), match, line)


def test_non_utf8(write) -> None:  # type: ignore[no-untyped-def]
    _err(write("b.yaml", b"name: x\nregisters:\n  MIDR_EL1: \xff\n"), "not valid UTF-8", 3)


def test_bom_is_accepted(write) -> None:  # type: ignore[no-untyped-def]
    p = write("bom.yaml", "\ufeffregisters:\n  MIDR_EL1: 0x410fd0c0\n".encode())
    assert resolve(str(p)).values["MIDR_EL1"] == 0x410FD0C0


def test_billion_laughs_is_cheap(write) -> None:  # type: ignore[no-untyped-def]
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 12):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i-1}"] * 10) + "]")
    lines.append("registers: *a11")
    _err(write("bomb.yaml", "\n".join(lines) + "\n"), "unknown key 'a0'")


def test_deep_nesting(write) -> None:  # type: ignore[no-untyped-def]
    _err(write("deep.yaml", "registers: " + "[" * 100 + "]" * 100 + "\n"), "nesting|expected a mapping")


def test_size_limit(write) -> None:  # type: ignore[no-untyped-def]
    _err(write("big.yaml", "# " + "x" * (1 << 20) + "\n"), "limited to")


def test_directory_and_missing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    _err(tmp_path, "is a directory")
    _err(tmp_path / "nope.yaml", "no such file")


def test_device_file() -> None:
    with pytest.raises(CpumodelError, match="not a regular file"):
        load("/dev/null")


def test_base_chain_cycle_and_missing(write) -> None:  # type: ignore[no-untyped-def]
    write("a.yaml", "base: b\nregisters: {MIDR_EL1: 1}\n")
    b = write("b.yaml", "base: a\n")
    # reported at the base: line that closes the cycle
    _err(b, "base cycle: b.yaml -> a.yaml -> b.yaml", 1, where=b.parent / "a.yaml")
    m = write("m.yaml", "base: no-such-profile\n")
    _err(m, "base profile 'no-such-profile' not found", 1)


def test_base_inheritance_and_override(write) -> None:  # type: ignore[no-untyped-def]
    write("parent.yaml", "registers:\n  ID_AA64ISAR0_EL1: 0x11120\n  MIDR_EL1: 0x411fd070\n")
    c = write("child.yaml", "base: parent\nregisters:\n  ID_AA64ISAR0_EL1: {AES: 0}\n")
    m = resolve(str(c))
    assert m.values["ID_AA64ISAR0_EL1"] == 0x11100
    assert m.values["MIDR_EL1"] == 0x411FD070
    assert m.chain == ["parent"]
    assert m.where("MIDR_EL1").file.endswith("parent.yaml")


def test_long_chain_is_refused(write) -> None:  # type: ignore[no-untyped-def]
    for i in range(70):
        write(f"p{i}.yaml", f"base: p{i + 1}\n" if i < 69 else "registers: {}\n")
    start = write("start.yaml", "base: p0\n")
    _err(start, "base chain longer than 64", 1, where=start.parent / "p62.yaml")


@pytest.mark.parametrize(("text", "value"), [
    ("42", 42), ("0x2a", 42), ("0X2A", 42), ("0b101010", 42), ("0o52", 42), ("0x0000_002a", 42),
    ("-1", -1), ("+7", 7), ("0", 0),
    ("0777", None), ("1:30", None), ("1.0", None), ("0x", None), ("1__0", None), ("_1", None), ("0b2", None),
])
def test_integer_spellings(text: str, value: int | None) -> None:
    assert parse_int(text) == value


# -- the C composer's fast path (yamlsrc._compose_fast) builds the event composer's tree ---------

def _tree(node):  # type: ignore[no-untyped-def]
    """Everything a node carries that cpumodel reads or reports: type, tag, style, marks, value."""
    if node is None:
        return None
    marks = tuple((m.name, m.index, m.line, m.column) for m in (node.start_mark, node.end_mark))
    head = (type(node).__name__, node.tag, getattr(node, "style", None), getattr(node, "flow_style", None), marks)
    if isinstance(node.value, str):
        return (*head, node.value)
    return (*head, tuple((_tree(x[0]), _tree(x[1])) if isinstance(x, tuple) else _tree(x) for x in node.value))


def _events_tree(text: str):  # type: ignore[no-untyped-def]
    from cpumodel import yamlsrc

    loader = yamlsrc._Loader(text)
    try:
        return _tree(yamlsrc._compose_events(loader, "p.yaml"))
    finally:
        loader.dispose()


_FAST_CASES = [
    "",
    "# only a comment\n",
    "---\n",
    "name: x\nregisters:\n  MIDR_EL1: 0x410fd0c1\n  ID_AA64PFR0_EL1: {SVE: IMP, FP: -1}\n",
    "a: &x [1, 2]\nb: 3\n",  # an anchor without an alias
    "a: &x 1\nb: *x\n",  # an alias of a scalar: shared, as the event composer shares it
    "k: 'quoted'\nl: \"double\"\nm: |\n  block\nn: >\n  folded\no: ~\np: yes\nq: 1.5\nr: null\n",
    "? complex\n: value\nlist:\n- - nested\n  - more\n- {a: [b, {c: d}]}\n",
    "x: !!str 12\ny: !!int '7'\nz: ! plain\n",
    "a: 1  # a comment with ! and & and *\nb: 'text with ! in it'\n",
]


@pytest.mark.parametrize("text", _FAST_CASES)
def test_fast_path_builds_the_event_composers_tree(text: str) -> None:
    from cpumodel import yamlsrc

    fast = yamlsrc._compose_fast(text)
    assert fast is not yamlsrc._DECLINED
    assert _tree(fast) == _events_tree(text)


def test_fast_path_on_shipped_profiles() -> None:
    from pathlib import Path

    from cpumodel import yamlsrc
    from cpumodel.resolve import SHIPPED

    for p in sorted(Path(SHIPPED).glob("*.yaml")):
        text = yamlsrc.read_text(str(p))
        fast = yamlsrc._compose_fast(text)
        assert fast is not yamlsrc._DECLINED, p
        assert _tree(fast) == _events_tree(text), p


@pytest.mark.parametrize("text", [
    "a: 1\na: 2\n",  # duplicate key
    "<<: {a: 1}\n",  # merge key
    "a: !!python/object:os.system x\n",  # a tag no profile may hold
    "a: 2024-01-01\n",  # an implicit timestamp
    "a: =\n",  # YAML 1.1's value key, another implicit tag
    "a: [1, !!binary aGk=]\n",  # an explicit tag below the top level
    "a: &x [1, *x]\n",  # an alias enclosing itself
    "a: &x [1]\nb: *x\n",  # an alias of a list: left to the event composer
    "a: *nowhere\n",  # undefined alias
    "a: &x 1\nb: &x 2\n",  # duplicate anchor
    "a: 1\n---\nb: 2\n",  # two documents
    "a: [1, 2\n",  # a syntax error
    "[" * 40 + "]" * 40,  # deeper than MAX_DEPTH
    "[" * 5000 + "]" * 5000,  # more indicators than the fast path takes
    "ignore: [" + "a," * 5000 + "a]\n",
])
def test_fast_path_declines_what_the_event_composer_refuses_or_shares(text: str) -> None:
    from cpumodel import yamlsrc

    assert yamlsrc._compose_fast(text) is yamlsrc._DECLINED


def _composed(text: str):  # type: ignore[no-untyped-def]
    from cpumodel import yamlsrc

    try:
        return "ok", _tree(yamlsrc.compose(text, "p.yaml"))
    except CpumodelError as e:
        return "error", str(e), e.location


def test_fast_path_and_event_composer_agree_on_mutated_profiles(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Seeded mutations of the shipped profiles (indicators, anchors, aliases, tags, merge keys, tabs,
    cuts and splices): compose() gives the same tree, or the same message at the same place, with
    the C composer's fast path as without it. (Run once with 12,000 cases: no difference.)"""
    import random
    from pathlib import Path

    from cpumodel import yamlsrc
    from cpumodel.resolve import SHIPPED

    seeds = [p.read_text(encoding="utf-8") for p in sorted(Path(SHIPPED).glob("*.yaml"))]
    pieces = [*":-[]{}?,&*!#|>'\"\n  abc0x1_<=~%@`", "<<", "!!str ", "&a ", "*a", "- ", ": ", "\n  ", "---\n",
              "2024-01-01", "\t"]
    rng = random.Random(14)
    taken = 0
    for _ in range(300):
        text = rng.choice(seeds)
        for _ in range(rng.randint(1, 8)):
            pos = rng.randrange(len(text) + 1)
            op = rng.random()
            if op < 0.5:
                text = text[:pos] + rng.choice(pieces) + text[pos:]
            elif op < 0.8:
                text = text[:pos] + text[pos + rng.randint(1, 5):]
            else:
                at = rng.randrange(len(text) + 1)
                text = text[:pos] + text[at:at + rng.randint(1, 40)] + text[pos:]
        taken += yamlsrc._compose_fast(text) is not yamlsrc._DECLINED
        fast = _composed(text)
        monkeypatch.setattr(yamlsrc, "_C_COMPOSER", False)
        events = _composed(text)
        monkeypatch.setattr(yamlsrc, "_C_COMPOSER", True)
        assert fast == events, text
    assert taken > 50  # the fast path is really exercised
