"""Hostile input through the real CLI.

The contract for every bad input: ONE clear message naming ``file:line``, exit code 2,
bounded time and memory, no traceback, and no output file (complete or partial) left behind.
Most cases run in-process with click's ``CliRunner``; the ones that could crash or hang the
interpreter (deep nesting, FIFOs, devices) and a sample of the rest run ``python -m cpumodel``
in a subprocess, which proves that nothing reaches stderr as a traceback.
"""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cpumodel import yamlsrc
from cpumodel.cli import main
from cpumodel.errors import CpumodelError
from cpumodel.profile import load

REPO = Path(__file__).resolve().parents[1]
ROOT = os.geteuid() == 0

#: A small profile that loads, resolves and passes the architecture checks.
TINY = "name: tiny\nregisters:\n  MIDR_EL1: 0x410fd0c0\n"

# One "error: file:line...: message" line: the check report's form and the other commands' form.
ERROR_LINE = re.compile(r"^(?:cpumodel: )?error: (?P<msg>.*)$", re.M)


def cli(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def run_module(*args: object, timeout: float = 60, **kw: object) -> subprocess.CompletedProcess[str]:
    """``python -m cpumodel ARGS`` in a fresh interpreter; stdout and stderr captured."""
    env = dict(os.environ, PYTHONPATH=str(REPO), NO_COLOR="1")
    return subprocess.run([sys.executable, "-m", "cpumodel", *map(str, args)], capture_output=True, text=True,
                          errors="replace", timeout=timeout, cwd=REPO, env=env, **kw)  # type: ignore[call-overload]


def no_traceback(res: Result | subprocess.CompletedProcess[str]) -> str:
    """All the output of a run, after checking that no exception escaped."""
    if isinstance(res, Result):
        assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
        out = res.output
    else:
        out = res.stdout + res.stderr
        assert res.returncode >= 0, f"killed by signal {-res.returncode}: {out[-2000:]}"
    assert "Traceback" not in out, out[-3000:]
    return out


def exit_code(res: Result | subprocess.CompletedProcess[str]) -> int:
    return res.exit_code if isinstance(res, Result) else res.returncode


def input_error(res: Result | subprocess.CompletedProcess[str], where: Path | str, line: int | None,
                match: str) -> str:
    """Assert the contract for a bad input; return the one message."""
    out = no_traceback(res)
    assert exit_code(res) == 2, out[-3000:]
    messages = ERROR_LINE.findall(out)
    assert len(messages) == 1, out[-3000:]
    msg = messages[0]
    prefix = f"{where}:{line}" if line is not None else f"{where}"
    assert msg.startswith(prefix + ":") or msg.startswith(prefix + " "), f"expected {prefix}: in {msg!r}"
    assert re.search(match, msg), f"{match!r} not in {msg!r}"
    assert len(msg) < 600, f"message too long ({len(msg)} characters)"
    return msg


def write(dirpath: Path, name: str, text: str | bytes) -> Path:
    p = dirpath / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".cpumodel-"))


def _bomb_anchors() -> str:
    # a list that would expand to 10**9 strings, built from aliases inside one flow value
    inner = "[lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"
    text = f"&b0 {inner}"
    for i in range(1, 10):
        text = f"&b{i} [{text}, " + ", ".join([f"*b{i - 1}"] * 9) + "]"
    return text


# --------------------------------------------------------------------------------------------
# Syntax and structure of the YAML text: (id, text, line of the message, pattern)
# --------------------------------------------------------------------------------------------

YAML_CASES: list[tuple[str, str | bytes, int | None, str]] = [
    ("unclosed-flow-mapping", "registers: {MIDR_EL1: 1\n", 2, "YAML syntax error"),
    ("unclosed-quote", 'name: "tiny\nregisters: {}\n', 3, "YAML syntax error"),
    ("bad-indentation", "registers:\n  MIDR_EL1: 1\n ID_AA64PFR0_EL1: 2\n", 3, "YAML syntax error"),
    ("key-without-value-colon", "registers:\n  MIDR_EL1 0x1\n  CTR_EL0: 1\n", 3, "YAML syntax error"),
    ("stray-closing-bracket", "registers: {}]\n", 1, "YAML syntax error"),
    ("tab-indentation", "registers:\n\tMIDR_EL1: 1\n", 2, "tab character"),
    ("tab-after-spaces", "registers:\n  \tMIDR_EL1: 1\n", 2, "tab character"),
    ("nul-byte", "name: ti\x00ny\nregisters: {}\n", 1, r"U\+0000 is not allowed"),
    ("control-character", "registers: {}\nname: \x07\n", 2, r"U\+0007 is not allowed"),
    ("bad-escape", 'name: "\\ud800"\n', 1, "YAML syntax error"),
    ("undefined-alias", "name: *nothing\n", 1, "alias .*nothing"),
    ("self-enclosing-alias", "registers: &r\n  MIDR_EL1: *r\n", 2, "contains it"),
    ("anchor-defined-twice", "name: &a x\ndescription: &a y\n", 2, "defined twice"),
    ("yaml-2.0-directive", "%YAML 2.0\n---\nname: x\n", 1, "YAML syntax error"),
    # duplicate keys at every depth
    ("duplicate-top-level-key", "name: a\nregisters: {}\nname: b\n", 3, "duplicate key 'name'.*line 1"),
    ("duplicate-register", "registers:\n  MIDR_EL1: 1\n  MIDR_EL1: 2\n", 3, "duplicate key 'MIDR_EL1'"),
    ("duplicate-register-alias-name", "registers:\n  ID_AA64PFR0_EL1: 0\n  id_aa64pfr0: 0\n", 3, "given twice"),
    ("duplicate-register-sysreg-name", "registers:\n  MIDR_EL1: 0\n  S3_0_C0_C0_0: 0\n", 3, "given twice"),
    ("duplicate-field", "registers:\n  ID_AA64PFR0_EL1:\n    SVE: 1\n    SVE: 0\n", 4, "duplicate key 'SVE'"),
    ("duplicate-field-in-flow", "registers:\n  ID_AA64PFR0_EL1: {SVE: 1, FP: 0, SVE: 0}\n", 2, "duplicate key"),
    ("duplicate-field-case", "registers:\n  ID_AA64PFR0_EL1: {SVE: 1, sve: 0}\n", 2, "given twice"),
    ("duplicate-source-key", "sources:\n  MIDR_EL1: a\n  MIDR_EL1: b\n", 3, "duplicate key"),
    # documents
    ("empty-file", "", 1, "empty profile"),
    ("whitespace-only", "   \n\n  \n", 1, "empty profile"),
    ("comment-only", "# nothing here\n", 1, "empty profile"),
    ("document-marker-only", "---\n", 1, "empty profile"),
    ("null-document", "~\n", 1, "empty profile"),
    ("list-document", "- MIDR_EL1\n", 1, "must be a mapping, not a list"),
    ("scalar-document", "registers\n", 1, "must be a mapping"),
    ("two-documents", "name: a\n---\nname: b\n", 2, "more than one YAML document"),
    ("document-after-end-marker", "name: a\n...\n---\nname: b\n", 3, "more than one YAML document"),
    ("empty-second-document", "name: a\n---\n", 2, "more than one YAML document"),
    # tags
    ("python-object-apply", "!!python/object/apply:os.system ['true']\n", 1, "tag .*python/object/apply"),
    ("python-object-apply-nested", "registers:\n  MIDR_EL1: !!python/object/apply:os.getpid []\n", 2,
     "tag .*python/object/apply"),
    ("python-name", "name: !!python/name:os.system ''\n", 1, "tag .*python/name"),
    ("python-object-new", "registers: !!python/object/new:dict {}\n", 1, "tag .*python/object/new"),
    ("tag-directive-to-python", "%TAG !p! tag:yaml.org,2002:python/\n---\nname: !p!name:os.system x\n", 3,
     "tag .*python/name"),
    ("verbatim-python-tag", "name: !<tag:yaml.org,2002:python/none> x\n", 1, "tag .*python/none"),
    ("local-tag", "name: !custom x\n", 1, "tag '!custom'"),
    ("binary-tag", "name: !!binary aGVsbG8=\n", 1, "tag .*binary"),
    ("timestamp", "name: 2024-01-01\n", 1, "tag .*timestamp"),
    ("set-tag", "ignore: !!set {A001}\n", 1, "tag .*set"),
    ("omap-tag", "registers: !!omap [MIDR_EL1: 1]\n", 1, "tag .*omap"),
    # merge keys, at every depth
    ("merge-key-top", "base_values: &b {name: x}\n<<: *b\n", 2, "merge keys"),
    ("merge-key-registers", "x: &r {MIDR_EL1: 1}\nregisters:\n  <<: *r\n", 3, "merge keys"),
    ("merge-key-fields", "registers:\n  ID_AA64PFR0_EL1: &f {SVE: 1}\n  ID_AA64PFR1_EL1: {<<: *f}\n", 3,
     "merge keys"),
    # keys that are not names
    ("list-as-key", "? [a]\n: 1\n", 1, "keys must be names, not a list"),
    ("null-key", "~: 1\n", 1, "keys must be names"),
    ("mapping-as-register-name", "registers:\n  ? {a: 1}\n  : 1\n", 2, "keys must be names"),
]


@pytest.mark.parametrize(("text", "line", "match"), [c[1:] for c in YAML_CASES], ids=[c[0] for c in YAML_CASES])
def test_yaml_input(tmp_path: Path, text: str | bytes, line: int | None, match: str) -> None:
    p = write(tmp_path, "bad.yaml", text)
    input_error(cli("check", p), p, line, match)


def test_tab_inside_flow_is_fine(tmp_path: Path) -> None:
    """A tab that is not indentation is ordinary YAML whitespace."""
    p = write(tmp_path, "ok.yaml", "registers: {\tMIDR_EL1: 0x410fd0c0}\n")
    res = cli("check", "--no-kvm", p)
    assert exit_code(res) == 0, no_traceback(res)


def test_custom_tag_constructs_nothing(tmp_path: Path) -> None:
    """!!python/object/apply:os.system would create a file if anything constructed it."""
    marker = tmp_path / "constructed"
    for i, text in enumerate([
        f"!!python/object/apply:os.system ['touch {marker}']\n",
        f"registers:\n  MIDR_EL1: !!python/object/apply:os.system ['touch {marker}']\n",
        f"name: !!python/object/apply:subprocess.call [[touch, {marker}]]\n",
        f"%TAG !x! tag:yaml.org,2002:python/object/apply:\n---\nname: !x!os.system ['touch {marker}']\n",
    ]):
        p = write(tmp_path, f"tag{i}.yaml", text)
        input_error(cli("check", p), p, None, "tag .* is not allowed")
        input_error(run_module("emit", p), p, None, "tag .* is not allowed")
    assert not marker.exists()


# --------------------------------------------------------------------------------------------
# Bytes, encodings and sizes
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("data", "line"), [
    (b"name: x\nregisters:\n  MIDR_EL1: \xff\n", 3),
    (b"name: caf\xe9\n", 1),  # Latin-1
    (b"\xff\xfen\x00a\x00m\x00e\x00:\x00 \x00x\x00\n\x00", 1),  # UTF-16 with its BOM
    (b"name: \xc0\xaf\n", 1),  # overlong encoding of '/'
    (b"name: \xed\xa0\x80\n", 1),  # an encoded surrogate
    (b"registers: {}\nname: x\n\x80\n", 3),
], ids=["invalid-byte", "latin-1", "utf-16", "overlong", "surrogate", "continuation-byte"])
def test_non_utf8(tmp_path: Path, data: bytes, line: int) -> None:
    p = write(tmp_path, "enc.yaml", data)
    input_error(cli("check", p), p, line, "not valid UTF-8")


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    p = write(tmp_path, "bom.yaml", b"\xef\xbb\xbf" + TINY.encode())
    res = cli("check", "--no-kvm", p)
    assert exit_code(res) == 0, no_traceback(res)


def test_size_limit_is_checked_before_reading(tmp_path: Path) -> None:
    """A 100 MB profile is refused from its size alone: milliseconds, whatever its content."""
    p = tmp_path / "huge.yaml"
    with open(p, "wb") as fh:
        fh.truncate(100 * 1024 * 1024)  # sparse: costs no disk
    t0 = time.perf_counter()
    with pytest.raises(CpumodelError, match="limited to"):
        load(p)
    assert time.perf_counter() - t0 < 0.05
    t0 = time.perf_counter()
    input_error(cli("check", p), p, None, f"104857600 bytes; profiles are limited to {yamlsrc.MAX_BYTES} bytes")
    assert time.perf_counter() - t0 < 1.0


def test_size_limit_boundary(tmp_path: Path) -> None:
    body = "registers:\n  MIDR_EL1: 0x410fd0c0\n"
    pad = yamlsrc.MAX_BYTES - len(body) - 3
    at_limit = write(tmp_path, "at.yaml", f"#{'x' * pad}\n{body}")
    assert at_limit.stat().st_size == yamlsrc.MAX_BYTES - 1
    res = cli("check", "--no-kvm", at_limit)
    assert exit_code(res) == 0, no_traceback(res)
    over = write(tmp_path, "over.yaml", f"#{'x' * (pad + 2)}\n{body}")
    assert over.stat().st_size == yamlsrc.MAX_BYTES + 1
    input_error(cli("check", over), over, None, "limited to")


@pytest.mark.parametrize("top", [
    "x: BOMB\n", "registers: BOMB\n", "ignore: BOMB\n", "features: BOMB\n", "sources: {MIDR_EL1: BOMB}\n",
    "registers: {MIDR_EL1: BOMB}\n",
], ids=["unknown-key", "registers", "ignore", "features", "sources", "register-value"])
def test_billion_laughs(tmp_path: Path, top: str) -> None:
    """10**9 strings if expanded; the loader never expands aliases, so this is instant."""
    p = write(tmp_path, "lol.yaml", "name: lol\n" + top.replace("BOMB", _bomb_anchors()))
    t0 = time.perf_counter()
    input_error(cli("check", p), p, None, ".")
    assert time.perf_counter() - t0 < 1.0


def test_billion_laughs_subprocess(tmp_path: Path) -> None:
    p = write(tmp_path, "lol.yaml", f"name: lol\nregisters: {{MIDR_EL1: {_bomb_anchors()}}}\n")
    res = run_module("check", p, timeout=20)
    input_error(res, p, 2, "expected an integer, got a list")


def test_alias_reuse_is_fine(tmp_path: Path) -> None:
    """Aliases are legal YAML: a value reused through an anchor loads normally."""
    p = write(tmp_path, "alias.yaml", "registers:\n  MIDR_EL1: &v 0x410fd0c0\n  REVIDR_EL1: *v\n")
    m = load(p)
    assert m.registers["REVIDR_EL1"].raw == 0x410FD0C0


@pytest.mark.parametrize(("opening", "closing"), [("[", "]"), ("{a: ", "}"), ("[{a: ", "}]")],
                         ids=["lists", "mappings", "mixed"])
def test_deep_nesting_10000(tmp_path: Path, opening: str, closing: str) -> None:
    p = write(tmp_path, "deep.yaml", "registers: " + opening * 10_000 + "1" + closing * 10_000 + "\n")
    t0 = time.perf_counter()
    input_error(cli("check", p), p, 1, f"nesting deeper than {yamlsrc.MAX_DEPTH} levels")
    assert time.perf_counter() - t0 < 1.0


def test_deep_block_nesting(tmp_path: Path) -> None:
    """Indentation nesting: as deep as fits under the size limit (~1,400 levels)."""
    text = "".join(" " * i + f"k{i}:\n" for i in range(1400))
    p = write(tmp_path, "deep.yaml", text)
    input_error(cli("check", p), p, yamlsrc.MAX_DEPTH + 1, "nesting deeper")


def test_deep_nesting_does_not_crash_the_interpreter(tmp_path: Path) -> None:
    """500,000 nested brackets (1 MB) once overflowed the C stack of PyYAML's composer (SIGSEGV)."""
    p = write(tmp_path, "deep.yaml", "[" * 500_000 + "]" * 500_000)
    res = run_module("check", p, timeout=30)
    input_error(res, p, 1, "nesting deeper")


def test_too_many_values(tmp_path: Path) -> None:
    """~500,000 scalars fit in 1 MB and would take PyYAML seconds; the node budget stops early."""
    p = write(tmp_path, "many.yaml", "ignore: [" + "a," * 500_000 + "a]\n")
    t0 = time.perf_counter()
    input_error(cli("check", p), p, 1, f"more than {yamlsrc.MAX_NODES} YAML values")
    assert time.perf_counter() - t0 < 1.0


@pytest.mark.parametrize(("text", "line", "match"), [
    ("registers:\n  MIDR_EL1: " + "9" * 5000 + "\n", 2, "5000-character number is far too large"),
    ("registers:\n  MIDR_EL1: 0x" + "f" * 200_000 + "\n", 2, "far too large"),
    ("features: [+FEAT_" + "S" * 1_000_000 + "]\n", 1, "too long for a name"),
    ("arch: v" + "8" * 1_000_000 + "\n", 1, "too long for a name"),
    ("ignore: [" + "A" * 1_000_000 + "]\n", 1, "too long for a name"),
    ("base: " + "b" * 5000 + "\n", 1, "too long for a name"),
    ("x" * 2000 + ": 1\n", 1, "YAML syntax error"),  # libyaml: implicit keys are at most 1024 characters
    ("? " + "x" * 1_000_000 + "\n: 1\n", 1, "unknown key"),
    ("registers:\n  ? " + "MIDR" * 250_000 + "\n  : 1\n", 2, "unknown register"),
    ("registers:\n  MIDR_EL1: {? " + "R" * 1_000_000 + " : 1}\n", 2, "has no field"),
    ("registers:\n  ID_AA64PFR0_EL1: {SVE: " + "I" * 1_000_000 + "}\n", 2, "unknown value name"),
], ids=["decimal-5000-digits", "hex-200000-digits", "feature-1MB", "arch-1MB", "ignore-1MB", "base-5000",
        "implicit-key-2000", "key-1MB", "register-1MB", "field-1MB", "value-name-1MB"])
def test_huge_scalars(tmp_path: Path, text: str, line: int, match: str) -> None:
    """Megabyte names and numbers: a short message (the value shortened), in well under a second."""
    p = write(tmp_path, "big.yaml", text)
    t0 = time.perf_counter()
    input_error(cli("check", p), p, line, match)
    assert time.perf_counter() - t0 < 2.0


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------

ACCEPTED_SPELLINGS = [
    ("42", 42), ("0", 0), ("+7", 7), ("0x2a", 42), ("0X2A", 42), ("0x2A", 42), ("0b101010", 42),
    ("0B101010", 42), ("0o52", 42), ("0O52", 42), ("1_000", 1000), ("0x0000_002a", 42), ("0b10_1010", 42),
    ("0o5_2", 42), ("'42'", 42), ('"0x2a"', 42), ("' 42 '", 42), ("!!str 0x2a", 42), ("!!int 42", 42),
    ("0xffffffffffffffff", (1 << 64) - 1), ("18446744073709551615", (1 << 64) - 1),
]


@pytest.mark.parametrize(("spelling", "value"), ACCEPTED_SPELLINGS, ids=[s for s, _ in ACCEPTED_SPELLINGS])
def test_accepted_integer_spelling(tmp_path: Path, spelling: str, value: int) -> None:
    """Every spelling documented as accepted in yamlsrc.parse_int, as a raw register value."""
    p = write(tmp_path, "int.yaml", f"registers:\n  REVIDR_EL1: {spelling}\n")
    assert load(p).registers["REVIDR_EL1"].raw == value
    res = cli("emit", "--no-kvm", "--format", "json", p)
    out = no_traceback(res)
    assert exit_code(res) == 0, out
    assert f'"value": "{value:#018x}"' in out


@pytest.mark.parametrize(("spelling", "value"), [("1", 1), ("0x1", 1), ("0b1", 1), ("0o1", 1), ("+1", 1),
                                                 ("'1'", 1), ("IMP", 1), ("imp", 1), ("NI", 0), ("0_1", None)])
def test_accepted_field_spelling(tmp_path: Path, spelling: str, value: int | None) -> None:
    p = write(tmp_path, "f.yaml", f"registers:\n  ID_AA64PFR0_EL1: {{SVE: {spelling}}}\n")
    if value is None:
        input_error(cli("check", p), p, 2, "not an integer|unknown value name")
        return
    assert load(p).registers["ID_AA64PFR0_EL1"].fields["SVE"].value == value


REFUSED_SPELLINGS = [
    ("0777", "not an integer"),  # YAML 1.1 octal
    ("0o", "expected an integer or a mapping"), ("0x", "expected an integer or a mapping"),
    ("0b", "expected an integer or a mapping"), ("0b2", "expected an integer or a mapping"),
    ("0o8", "expected an integer or a mapping"), ("0xg", "expected an integer or a mapping"),
    ("1__0", "not an integer"), ("_1", "expected an integer or a mapping"), ("1_", "not an integer"),
    ("0x_1", "not an integer"), ("1:30", "not an integer"),  # YAML 1.1 sexagesimal
    ("1.5", "the float|not an integer"), ("1.0", "not an integer"), ("1e3", "expected an integer or a mapping"),
    ("1.0e3", "expected an integer or a mapping"), ("1.0e+3", "not an integer"),
    (".inf", "not an integer"), ("-.inf", "not an integer"),
    (".nan", "not an integer"), ("0x1p3", "expected an integer or a mapping"),
    ("'١٢'", "expected an integer or a mapping"), ("'１２'", "expected an integer or a mapping"),
    ("yes", "boolean.*yes/no/on/off"), ("no", "boolean"), ("on", "boolean"), ("off", "boolean"),
    ("true", "boolean"), ("False", "boolean"), ("~", "empty value"), ("null", "empty value"), ("", "empty value"),
    ("[1]", "a list"), ("{}", "expected"), ("abc", "expected an integer or a mapping of fields, got 'abc'"),
    ("-1", "negative value"), ("-0x1", "negative value"),
    ("0x1_0000_0000_0000_0000", "does not fit in 64 bits"), ("18446744073709551616", "does not fit in 64 bits"),
    ("0b" + "1" * 65, "does not fit in 64 bits"),
]


@pytest.mark.parametrize(("spelling", "match"), REFUSED_SPELLINGS, ids=[s or "<empty>" for s, _ in REFUSED_SPELLINGS])
def test_refused_register_value(tmp_path: Path, spelling: str, match: str) -> None:
    p = write(tmp_path, "bad.yaml", f"name: x\nregisters:\n  MIDR_EL1: {spelling}\n")
    if spelling == "{}":  # an empty field mapping is a valid (all-zero) register
        assert load(p).registers["MIDR_EL1"].raw is None
        return
    input_error(cli("check", p), p, 3, match)


@pytest.mark.parametrize(("value", "match"), [
    ("16", "does not fit the 4-bit field"), ("0x10", "does not fit the 4-bit field"),
    ("0b10000", "does not fit"), ("-1", "negative value -1 for an unsigned field"), ("1.0", "not an integer"),
    ("on", "boolean"), ("no", "boolean"), ("~", "empty value"), ("[1]", "a list"), ("{a: 1}", "a mapping"),
    ("IMPL", "unknown value name 'IMPL'.*did you mean IMP"), ("0x" + "f" * 300, "far too large"),
], ids=lambda v: v if len(v) < 20 else v[:20])
def test_refused_field_value(tmp_path: Path, value: str, match: str) -> None:
    p = write(tmp_path, "bad.yaml", f"registers:\n  ID_AA64PFR0_EL1:\n    SVE: {value}\n")
    input_error(cli("check", p), p, 3, match)


def test_field_wider_than_field_multi_bit(tmp_path: Path) -> None:
    p = write(tmp_path, "bad.yaml", "registers:\n  MIDR_EL1: {PartNum: 0x1000}\n")
    input_error(cli("check", p), p, 2, r"12-bit field \(bits 15:4; maximum 0xfff\)")


def test_signed_field_range(tmp_path: Path) -> None:
    ok = write(tmp_path, "ok.yaml", "registers:\n  ID_AA64PFR0_EL1: {FP: -1, AdvSIMD: -8}\n")
    v = load(ok).registers["ID_AA64PFR0_EL1"].fields
    assert v["FP"].value == 0xF and v["AdvSIMD"].value == 0x8
    bad = write(tmp_path, "bad.yaml", "registers:\n  ID_AA64PFR0_EL1: {FP: -9}\n")
    input_error(cli("check", bad), bad, 2, "below the signed 4-bit range")


@pytest.mark.parametrize("options", [[], ["--no-kvm"]], ids=["all-rules", "no-kvm"])
def test_res0_bits_are_a_finding_not_a_load_error(tmp_path: Path, options: list[str]) -> None:
    p = write(tmp_path, "res0.yaml", "registers:\n  MIDR_EL1: 0x410fd0c0\n  ID_PFR0_EL1: 0x100000131\n")
    res = cli("check", *options, p)
    out = no_traceback(res)
    assert exit_code(res) == 1, out
    assert re.search(rf"^{re.escape(str(p))}:3:\d+: A002 error:", out, re.M), out
    assert "unreadable" not in out


@pytest.mark.parametrize(("text", "line", "match"), [
    ("registers:\n  ID_AA64PRF0_EL1: 0\n", 2, "unknown register 'ID_AA64PRF0_EL1'.*did you mean ID_AA64PFR0_EL1"),
    ("registers:\n  ID_AA64PFR0_EL1: {SVF: 1}\n", 2, "no field 'SVF'.*did you mean SVE"),
    ("registers:\n  ID_AA64ISAR0_EL1: {AES: PMUL}\n", 2, "unknown value name 'PMUL'.*did you mean PMULL"),
    ("regsiters: {}\n", 1, "unknown key 'regsiters'.*did you mean registers"),
    ("vcpu_features: [pmu, sev]\n", 1, "unknown vCPU feature 'sev'.*did you mean sve"),
    ("features: [+FEAT_SVF]\n", 1, "unknown feature 'FEAT_SVF'.*did you mean FEAT_SVE"),
    ("arch: v8Ap22\n", 1, "unknown architecture version 'v8Ap22'.*did you mean"),
    ("registers:\n  NOT_A_REGISTER: 0\n", 2, "unknown register 'NOT_A_REGISTER'"),
], ids=["register", "field", "value-name", "top-level-key", "vcpu-feature", "feature", "arch", "no-suggestion"])
def test_unknown_names(tmp_path: Path, text: str, line: int, match: str) -> None:
    p = write(tmp_path, "typo.yaml", text)
    input_error(cli("check", p), p, line, match)


@pytest.mark.parametrize(("text", "line", "match"), [
    ("features: ['']\n", 1, "empty feature name"),
    ("features: [+]\n", 1, "empty feature name"),
    ("features: [~]\n", 1, "expected a string, got an empty value"),
    ("features: +FEAT_SVE\n", 1, "expected a list"),
    ("ignore: {A001: 1}\n", 1, "expected a list"),
    ("sources:\n", 1, "expected a mapping"),
    ("sources: {MIDR_EL1: [a]}\n", 1, "expected a string"),
    ("name: [x]\n", 1, "expected a string"),
    ("name: yes\n", 1, "expected a string, got the boolean"),
    ("base:\n", 1, "expected a string"),
    ("registers: [MIDR_EL1]\n", 1, "expected a mapping"),
    ("registers: 5\n", 1, "expected a mapping"),
], ids=["empty-feature", "sign-only-feature", "null-feature", "feature-not-list", "ignore-mapping",
        "sources-null", "source-list", "name-list", "name-bool", "base-null", "registers-list", "registers-int"])
def test_wrong_shapes(tmp_path: Path, text: str, line: int, match: str) -> None:
    p = write(tmp_path, "shape.yaml", text)
    input_error(cli("check", p), p, line, match)


# --------------------------------------------------------------------------------------------
# Profiles and bases
# --------------------------------------------------------------------------------------------

def test_base_self_cycle(tmp_path: Path) -> None:
    p = write(tmp_path, "self.yaml", "base: self\n")
    input_error(cli("check", p), p, 1, "base cycle: self.yaml -> self.yaml")


def test_base_three_cycle(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "base: b\n")
    write(tmp_path, "b.yaml", "base: c.yaml\n")
    c = write(tmp_path, "c.yaml", "base: ./a.yaml\n")
    input_error(cli("check", tmp_path / "a.yaml"), c, 1, "base cycle: a.yaml -> b.yaml -> c.yaml -> a.yaml")


@pytest.mark.parametrize("ref", ["nowhere", "nowhere.yaml", "sub/nowhere.yaml", ".", "sub", "sub/",
                                 "", "a\\0b", "../" * 1000 + "x"],
                         ids=lambda r: r if len(r) < 20 else f"{r[:12]}...({len(r)})")
def test_missing_base(tmp_path: Path, ref: str) -> None:
    (tmp_path / "sub").mkdir()
    p = write(tmp_path, "child.yaml", f'base: "{ref}"\n')
    input_error(cli("check", p), p, 1, "base profile .* not found")


SECRET = "root:x:0:0:secret-line"


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file that is not a profile, outside the profile's tree (stands for /etc/shadow)."""
    d = tmp_path / "outside"
    d.mkdir()
    p = d / "shadow"
    p.write_text(SECRET + "\nsecond:line\n")
    (d / "shadow.yaml").write_text(SECRET + "\n")
    return p


def _tree(tmp_path: Path) -> Path:
    d = tmp_path / "repo" / "profiles"
    d.mkdir(parents=True)
    return d


@pytest.mark.parametrize("ref", ["{secret}", "{secret}.yaml", "../../outside/shadow.yaml", "../../outside/shadow",
                                 "/etc/passwd", "/proc/self/environ", "../../../../../../../../etc/shadow",
                                 "link.yaml", "sub/link.yaml"])
def test_base_cannot_leave_the_search_path(tmp_path: Path, secret: Path, ref: str) -> None:
    d = _tree(tmp_path)
    (d / "sub").mkdir()
    (d / "link.yaml").symlink_to(secret.with_suffix(".yaml"))
    (d / "sub" / "link.yaml").symlink_to("../../../outside/shadow.yaml")
    p = write(d, "child.yaml", f'base: "{ref.format(secret=secret)}"\n')
    msg = input_error(cli("check", p), p, 1, "absolute path|leads outside the search path|not found")
    assert "secret" not in msg and "root:" not in msg


@pytest.mark.parametrize("ref", ["{secret}", "{secret}.yaml", "link.yaml", "/proc/self/environ", "/etc/passwd"])
def test_allowed_outside_base_still_quotes_nothing(tmp_path: Path, secret: Path, ref: str) -> None:
    d = _tree(tmp_path)
    (d / "link.yaml").symlink_to(secret.with_suffix(".yaml"))
    p = write(d, "child.yaml", f'base: "{ref.format(secret=secret)}"\n')
    res = cli("check", "--allow-base-outside", p)
    out = no_traceback(res)
    assert exit_code(res) == 2, out
    assert "base profile" in out and "nothing from the file is shown" in out
    assert "secret" not in out and "root:" not in out and "HOME" not in out and "PATH=" not in out


def test_top_level_non_profile_is_not_quoted(tmp_path: Path, secret: Path) -> None:
    msg = input_error(cli("check", secret), secret, 1, "must be a mapping, not a single value")
    assert "secret-line" not in msg


def test_base_inside_the_search_path(tmp_path: Path) -> None:
    d = _tree(tmp_path)
    common = tmp_path / "repo" / "common"
    common.mkdir()
    write(common, "shared.yaml", "name: shared-base\n" + TINY.split("\n", 1)[1])
    (d / "sub").mkdir()
    write(d / "sub", "deep.yaml", TINY)
    for ref, extra in [("sub/deep.yaml", []), ("./sub/../sub/deep.yaml", []), ("../common/shared.yaml", ["-I", common]),
                       ("shared", ["-I", common]), ("shared-base", ["-I", common]), ("neoverse-n1", []),
                       ]:
        p = write(d, "child.yaml", f"base: {ref}\n")
        res = cli("check", "--no-kvm", *extra, p)
        assert exit_code(res) in (0, 1), (ref, no_traceback(res))
    p = write(d, "child.yaml", "base: ../common/shared.yaml\n")
    input_error(cli("check", p), p, 1, "leads outside the search path")
    res = cli("check", "--no-kvm", "--allow-base-outside", p)
    assert exit_code(res) == 0, no_traceback(res)


def test_base_by_profile_name(tmp_path: Path) -> None:
    write(tmp_path, "a-file-name.yaml", "name: pool-v2\n" + TINY.split("\n", 1)[1])
    p = write(tmp_path, "child.yaml", "base: pool-v2\nregisters:\n  REVIDR_EL1: 1\n")
    res = cli("show", p)
    assert exit_code(res) == 0, no_traceback(res)
    assert "pool-v2" in res.output
    write(tmp_path, "b-file-name.yaml", "name: pool-v2\n" + TINY.split("\n", 1)[1])
    input_error(cli("check", p), p, 1, "name: of several profiles")


def test_error_in_base_is_reported_in_the_base(tmp_path: Path) -> None:
    parent = write(tmp_path, "parent.yaml", "registers:\n  MIDR_EL1: 0x1\n  MIDR_EL1: 0x2\n")
    child = write(tmp_path, "child.yaml", "base: parent\n")
    input_error(cli("check", child), parent, 3, "base profile cannot be read as YAML here")


def test_long_inheritance_chain(tmp_path: Path) -> None:
    """60 levels resolve; 2,000 levels are refused at the documented limit, quickly, without recursion errors."""
    for i in range(2000):
        write(tmp_path, f"p{i}.yaml", f"base: p{i + 1}\n" if i < 1999 else TINY)
    res = cli("check", "--no-kvm", tmp_path / "p1940.yaml")
    assert exit_code(res) == 0, no_traceback(res)
    t0 = time.perf_counter()
    msg = input_error(cli("check", tmp_path / "p0.yaml"), tmp_path / "p63.yaml", 1, "base chain longer than 64")
    assert time.perf_counter() - t0 < 2.0, msg


def test_one_bad_profile_does_not_stop_the_others(tmp_path: Path) -> None:
    good = write(tmp_path, "good.yaml", TINY)
    bad = write(tmp_path, "bad.yaml", "registers: {MIDR_EL1: on}\n")
    res = cli("check", "--no-kvm", good, bad, good)
    out = no_traceback(res)
    assert exit_code(res) == 2
    assert ERROR_LINE.findall(out) == [f"{bad}:1:23: MIDR_EL1: expected an integer, got the boolean 'on' "
                                       "(YAML reads yes/no/on/off/true/false as booleans)"]
    assert "1 unreadable profile in 3 profiles" in out


def test_thousands_of_profiles_memory_flat(tmp_path: Path) -> None:
    """3,000 small profiles in one run: it finishes, and peak memory is that of a one-profile run."""
    write(tmp_path, "shared.yaml", TINY)
    for i in range(3000):
        text = (f"base: shared\nregisters:\n  REVIDR_EL1: {i}\n" if i % 3 else
                f"name: p{i}\nregisters:\n  MIDR_EL1: {0x410FD0C0 + (i % 16):#x}\n  ID_AA64ISAR0_EL1: {{AES: PMULL}}\n")
        write(tmp_path, f"p{i:04d}.yaml", text)
    one = _peak_kb([sys.executable, "-m", "cpumodel", "check", "--no-kvm", str(tmp_path / "p0000.yaml")])
    files = sorted(str(p) for p in tmp_path.glob("p*.yaml"))
    many = _peak_kb([sys.executable, "-m", "cpumodel", "check", "--no-kvm", *files], expect="in 3000 profiles")
    assert many - one < 40 * 1024, f"peak RSS {one} KiB for 1 profile, {many} KiB for 3,000"


def _peak_kb(argv: list[str], expect: str = "") -> int:
    """Peak RSS (KiB) of one child process, measured in a fresh helper so earlier children don't count."""
    helper = ("import resource, subprocess, sys\n"
              "r = subprocess.run(sys.argv[1:], capture_output=True, text=True, errors='replace')\n"
              "sys.stdout.write(r.stdout[-4000:] + r.stderr[-4000:])\n"
              "print('\\nMAXRSS', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode)\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", helper, *argv], capture_output=True, text=True, timeout=600,
                         cwd=REPO, env=env).stdout
    assert "Traceback" not in out, out
    m = re.search(r"MAXRSS (\d+) (\d+)", out)
    assert m and m.group(2) in ("0", "1"), out
    assert expect in out, out
    return int(m.group(1))


# --------------------------------------------------------------------------------------------
# Things that are not profile files
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/dev/zero", "/dev/null", "/dev/urandom", "/dev/stdin"])
def test_device_file_as_profile(path: str) -> None:
    if not os.path.exists(path):
        pytest.skip(f"{path} not present")
    res = run_module("check", path, timeout=20, stdin=subprocess.DEVNULL)
    input_error(res, path, None, "not a regular file")


def test_directory_as_profile(tmp_path: Path) -> None:
    input_error(cli("check", tmp_path), tmp_path, None, "is a directory")
    input_error(cli("emit", tmp_path), tmp_path, None, "is a directory")


def test_missing_profile(tmp_path: Path) -> None:
    input_error(cli("check", tmp_path / "nope.yaml"), tmp_path / "nope.yaml", None, "no such file")


def test_symlink_to_device(tmp_path: Path) -> None:
    link = tmp_path / "zero.yaml"
    link.symlink_to("/dev/zero")
    input_error(run_module("check", link, timeout=20), link, None, "not a regular file")


def test_symlink_loop(tmp_path: Path) -> None:
    a = tmp_path / "a.yaml"
    a.symlink_to(tmp_path / "b.yaml")
    (tmp_path / "b.yaml").symlink_to(a)
    input_error(cli("check", a), a, None, "cannot read")


def test_fifo_does_not_block(tmp_path: Path) -> None:
    """A FIFO with no writer would block open()/read() forever; it is refused at once."""
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    input_error(run_module("check", fifo, timeout=20), fifo, None, "not a regular file")


def test_socket_as_profile(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(path))
        input_error(cli("check", path), path, None, "not a regular file|cannot read")
    finally:
        sock.close()


def test_unreadable_file_proc_mem() -> None:
    """A regular file whose read fails (EIO), as root too: /proc/self/mem at offset 0 is unmapped."""
    input_error(run_module("check", "/proc/self/mem", timeout=20), "/proc/self/mem", None, "cannot read")


@pytest.mark.skipif(ROOT, reason="root reads chmod-000 files anyway; test_unreadable_file_proc_mem covers EIO")
def test_unreadable_file_chmod(tmp_path: Path) -> None:
    p = write(tmp_path, "secret.yaml", TINY)
    p.chmod(0)
    input_error(cli("check", p), p, None, "cannot read: Permission denied")


def test_non_utf8_file_name(tmp_path: Path) -> None:
    name = os.fsdecode(b"caf\xe9.yaml")
    p = write(tmp_path, name, "registers: {MIDR_EL1: on}\n")
    res = run_module("check", p, timeout=20)
    out = no_traceback(res)
    assert res.returncode == 2 and "caf" in out and ":1:" in out, out


def test_emit_yaml_of_non_utf8_file_name_reloads(tmp_path: Path) -> None:
    p = write(tmp_path, os.fsdecode(b"caf\xe9.yaml"), TINY)
    out = tmp_path / "out.yaml"
    res = run_module("emit", "--no-kvm", "--format", "yaml", "-o", out, p, timeout=20)
    assert res.returncode == 0, res.stderr
    load(out)


# --------------------------------------------------------------------------------------------
# Output files: atomic, and nothing left behind by a failed run
# --------------------------------------------------------------------------------------------

def _emit_ok(tmp_path: Path) -> Path:
    return write(tmp_path, "tiny.yaml", TINY)


@pytest.mark.parametrize("command", ["check", "emit", "baseline"])
def test_output_into_missing_directory(tmp_path: Path, command: str) -> None:
    src = _emit_ok(tmp_path)
    target = tmp_path / "missing" / "out.txt"
    extra = ["--no-kvm"] if command != "baseline" else []
    input_error(cli(command, *extra, "-o", target, src), target, None, "directory .* does not exist")
    assert not target.parent.exists()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("target", ["/proc/cpumodel-out.json", "/proc/self/cpumodel-out.json",
                                    "/proc/version"])
def test_output_under_proc(tmp_path: Path, target: str) -> None:
    res = cli("emit", "--no-kvm", "-o", target, _emit_ok(tmp_path))
    input_error(res, target, None, "cannot write output")
    assert not os.path.exists(target) or target == "/proc/version"


@pytest.fixture
def readonly_dir(tmp_path: Path) -> Iterator[Path]:
    """A read-only bind mount of a temporary directory (root); else a chmod-555 one (non-root)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "existing.json").write_text("old\n")
    if ROOT:
        ok = subprocess.run(["mount", "--bind", str(ro), str(ro)], capture_output=True).returncode == 0
        if ok and subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], capture_output=True).returncode:
            subprocess.run(["umount", str(ro)], capture_output=True)
            ok = False
        if not ok:
            pytest.skip("cannot make a read-only bind mount here")
        try:
            yield ro
        finally:
            subprocess.run(["umount", str(ro)], capture_output=True)
    else:
        ro.chmod(0o555)
        try:
            yield ro
        finally:
            ro.chmod(0o755)


@pytest.mark.parametrize("name", ["new.json", "existing.json"])
def test_output_on_read_only_location(tmp_path: Path, readonly_dir: Path, name: str) -> None:
    target = readonly_dir / name
    input_error(cli("emit", "--no-kvm", "-o", target, _emit_ok(tmp_path)), target, None,
                "cannot write output: (Read-only file system|Permission denied)")
    assert sorted(p.name for p in readonly_dir.iterdir()) == ["existing.json"]
    assert (readonly_dir / "existing.json").read_text() == "old\n"


def test_output_onto_directory(tmp_path: Path) -> None:
    input_error(cli("emit", "--no-kvm", "-o", tmp_path, _emit_ok(tmp_path)), tmp_path, None, "is a directory")


def test_output_name_too_long(tmp_path: Path) -> None:
    target = tmp_path / ("x" * 300 + ".json")
    input_error(cli("emit", "--no-kvm", "-o", target, _emit_ok(tmp_path)), target, None, "File name too long")
    assert leftovers(tmp_path) == []


def test_failed_emit_leaves_no_file(tmp_path: Path) -> None:
    """A load error, and a model with violations: neither writes the output or a temporary file."""
    out = tmp_path / "out.json"
    bad = write(tmp_path, "bad.yaml", "registers:\n  MIDR_EL1: yes\n")
    input_error(cli("emit", "-o", out, bad), bad, 2, "boolean")
    invalid = write(tmp_path, "invalid.yaml", "registers:\n  ID_PFR0_EL1: 0x100000131\n")
    res = cli("emit", "--no-kvm", "-o", out, invalid)
    assert exit_code(res) == 1, no_traceback(res)
    assert not out.exists()
    assert leftovers(tmp_path) == []


def test_failed_emit_keeps_the_old_output(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    out.write_text("previous\n")
    bad = write(tmp_path, "bad.yaml", "registers: {MIDR_EL1: 1.5}\n")
    input_error(cli("emit", "-o", out, bad), bad, 1, "not an integer")
    assert out.read_text() == "previous\n"
    assert leftovers(tmp_path) == []


def test_failed_baseline_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "base.yaml"
    good = _emit_ok(tmp_path)
    bad = write(tmp_path, "bad.yaml", "registers:\n  MIDR_EL1: 0x1\n  MIDR_EL1: 0x2\n")
    input_error(cli("baseline", "-o", out, good, bad), bad, 3, "duplicate key")
    assert not out.exists() and leftovers(tmp_path) == []


def test_successful_output_is_complete_and_keeps_permissions(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    out.write_text("old\n")
    out.chmod(0o640)
    link = tmp_path / "link.json"
    link.symlink_to(out)
    res = cli("emit", "--no-kvm", "-o", link, _emit_ok(tmp_path))
    assert exit_code(res) == 0, no_traceback(res)
    assert link.is_symlink() and stat.S_IMODE(out.stat().st_mode) == 0o640
    assert out.read_text().rstrip().endswith("}")
    assert leftovers(tmp_path) == []


@pytest.mark.skipif(not ROOT, reason="creating a device node needs root")
def test_output_to_device_is_written_not_replaced(tmp_path: Path) -> None:
    """-o /dev/null must write into the device, not rename a regular file over the node (as root
    that replaced /dev/null); tested on private copies of /dev/null and /dev/full."""
    null = tmp_path / "null"
    full = tmp_path / "full"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(full, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    res = cli("emit", "--no-kvm", "-o", null, _emit_ok(tmp_path))
    assert exit_code(res) == 0, no_traceback(res)
    assert stat.S_ISCHR(null.stat().st_mode)
    input_error(cli("emit", "--no-kvm", "-o", full, _emit_ok(tmp_path)), full, None, "No space left on device")
    assert stat.S_ISCHR(full.stat().st_mode)
    assert leftovers(tmp_path) == []


def test_output_to_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE, text=True)
    try:
        res = run_module("emit", "--no-kvm", "--format", "yaml", "-o", fifo, _emit_ok(tmp_path), timeout=20)
        assert res.returncode == 0, no_traceback(res)
        got, _ = reader.communicate(timeout=20)
    finally:
        reader.kill()
    assert "MIDR_EL1: 0x00000000410fd0c0" in got
    assert stat.S_ISFIFO(fifo.stat().st_mode)


# --------------------------------------------------------------------------------------------
# Every command, and a subprocess sample: one message, exit 2, no traceback on stderr
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["check"], ["emit"], ["show"], ["diff", "{good}"], ["baseline", "{good}"],
                                     ["check", "--host", "{bad}", "{good}"], ["emit", "--host", "{bad}", "{good}"]])
def test_every_command_reports_a_bad_profile(tmp_path: Path, command: list[str]) -> None:
    good = _emit_ok(tmp_path)
    bad = write(tmp_path, "bad.yaml", "name: x\nregisters:\n  ID_AA64PFR0_EL1: {SVE: 0x10}\n")
    args = [a.format(good=good, bad=bad) for a in command]
    if "{bad}" not in command:
        args.append(str(bad))
    input_error(cli(*args), bad, 3, "does not fit the 4-bit field")


SUBPROCESS_CASES: list[tuple[str, str | bytes, int | None, str]] = [
    ("syntax", "registers: {a: 1\n", 2, "YAML syntax error"),
    ("non-utf8", b"name: \xff\n", 1, "not valid UTF-8"),
    ("tag", "name: !!python/object/apply:os.system ['true']\n", 1, "not allowed"),
    ("duplicate", "registers:\n  ID_AA64PFR0_EL1: {SVE: 1, SVE: 1}\n", 2, "duplicate key"),
    ("bool", "registers:\n  MIDR_EL1: off\n", 2, "boolean"),
    ("wide", "registers:\n  MIDR_EL1: 0x1_0000_0000_0000_0000\n", 2, "64 bits"),
    ("nul", "name: a\x00\n", 1, "U\\+0000"),
]


@pytest.mark.parametrize(("text", "line", "match"), [c[1:] for c in SUBPROCESS_CASES],
                         ids=[c[0] for c in SUBPROCESS_CASES])
@pytest.mark.parametrize("command", ["check", "emit"])
def test_subprocess_no_traceback(tmp_path: Path, command: str, text: str | bytes, line: int | None,
                                 match: str) -> None:
    p = write(tmp_path, "bad.yaml", text)
    res = run_module(command, p, timeout=30)
    input_error(res, p, line, match)
    assert res.stdout.count("\n") <= 2  # the message (check: plus its summary line); nothing else


# --------------------------------------------------------------------------------------------
# Start-up cost: --version and a one-profile check import neither rich nor jsonschema
# --------------------------------------------------------------------------------------------

_PROBE = """
import atexit, runpy, sys
def heavy():  # at exit (an atexit callback also makes cpumodel.cli.run take the normal exit)
    found = sorted(m for m in sys.modules if m.split(".")[0] in ("rich", "jsonschema", "hypothesis", "pytest"))
    print("HEAVY", found, file=sys.stderr)
atexit.register(heavy)
sys.argv = ["cpumodel", *sys.argv[1:]]
runpy.run_module("cpumodel", run_name="__main__")
"""


@pytest.mark.parametrize("args", [["--version"], ["check", "profiles/neoverse-n1.yaml"],
                                  ["check", "--no-kvm", "profiles/neoverse-n1.yaml"], ["check", "{bad}"]],
                         ids=["version", "check", "check-no-kvm", "check-bad"])
def test_light_imports(tmp_path: Path, args: list[str]) -> None:
    bad = write(tmp_path, "bad.yaml", "registers: {MIDR_EL1: on}\n")
    argv = [a.format(bad=bad) for a in args]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    res = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, cwd=REPO, env=env,
                         timeout=60)
    assert "Traceback" not in res.stderr, res.stderr
    assert "HEAVY []" in res.stderr, res.stderr[-2000:]


def test_importtime_version_is_light() -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "cpumodel", "--version"], capture_output=True,
                         text=True, cwd=REPO, env=env, timeout=60)
    assert res.returncode == 0 and "cpumodel, version" in res.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in res.stderr.splitlines() if line.startswith("import time")}
    assert "click" in imported
    for heavy in ("rich", "jsonschema", "cpumodel.features", "cpumodel.regdb", "yaml"):
        assert heavy not in imported, heavy


# --------------------------------------------------------------------------------------------
# Values on the command line
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["9" * 5000, "0x1_0000_0000_0000_0000", "-1", "1.5", "yes", ""],
                         ids=["decimal-5000-digits", "65-bits", "negative", "float", "bool", "empty"])
def test_explain_bad_value(value: str) -> None:
    """A 5,000-digit decimal once raised ValueError (Python's int-conversion limit) in parse_int."""
    res = cli("explain", f"MIDR_EL1={value}")
    out = no_traceback(res)
    if value == "":
        assert exit_code(res) == 0, out
        return
    assert exit_code(res) == 2, out
    assert len(ERROR_LINE.findall(out)) == 1, out


def test_explain_bad_value_message_is_short() -> None:
    res = cli("explain", "MIDR_EL1=" + "9" * 5000)
    assert exit_code(res) == 2
    assert len(ERROR_LINE.findall(no_traceback(res))[0]) < 600


def test_kernel_upgrade_text_escapes_profile_names(tmp_path: Path) -> None:
    """``diff --to-kernel`` prints the host's name: a terminal escape in it is shown, not sent."""
    from click.testing import CliRunner

    from cpumodel.cli import main

    host = tmp_path / "evil.yaml"
    host.write_text('name: "evil\\e[2Jhost"\nrole: host\nbase: neoverse-n1\n')
    r = CliRunner().invoke(main, ["diff", str(host), "--kernel", "6.12", "--to-kernel", "7.3"])
    assert r.exit_code in (0, 1), r.output
    assert "\x1b" not in r.stdout and r.stdout.startswith("Host evil\\x1b[2Jhost: kernel 6.12")
