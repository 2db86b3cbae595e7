"""Hostile text cannot change the meaning of an output.

Names, descriptions, ignore patterns, sources and file paths come from untrusted profiles. Each
emit format, and every YAML text cpumodel writes, is fed arbitrary such text (hypothesis) and the
output is given to its consumer: gcc compiles the C header and it defines only the expected
symbols; JSON and YAML load (YAML through cpumodel's own loader) with exactly the given values;
the kvm list and the qemu block parse line by line into exactly the model's registers.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpumodel import regdb
from cpumodel.cli import main
from cpumodel.emit import emit, escape, kvmlist
from cpumodel.ops import Baseline
from cpumodel.profile import load
from cpumodel.report.profiles import baseline_yaml, defaults_yaml
from cpumodel.resolve import Model, Resolver
from cpumodel.yamlout import Writer

REPO = Path(__file__).resolve().parents[1]
GCC = shutil.which("gcc")
NM = shutil.which("nm")

#: Text an attacker would try, plus everything hypothesis generates (any code point, surrogates included).
NASTY = ["x */ int evil = 1; /*", "*/*/", "/*", "a\nint evil;\n", "\x1b]0;pwned\x07", "\x1b[31mred", "pool: v2",
         "#x", "- a", "'q'", '"q"', "\\", "a\\", "\u2028int evil;", "\u202eevil", "\x85", "\ud800", "\udcff",
         "\ufeff", "\U0001f600", "??/", "$(reboot)", "`id`", "a,b=c", "", " ", "null", "yes", "0x10", "&a", "*a",
         "!!python/object/apply:os.system ['true']", "{a: 1}", "[1]", "%YAML 1.1", "--- ", "...", "\t", "\r\n"]
text = st.one_of(st.sampled_from(NASTY), st.text(max_size=40),
                 st.text(alphabet=st.characters(codec=None, blacklist_categories=()), max_size=20))

MODEL_VALUES = {"MIDR_EL1": 0x410FD0C0, "ID_AA64PFR0_EL1": 0x11, "DCZID_EL0": 0x4}


def model_with(name: str, description: str = "", path: str = "p.yaml", ignore: str = "A001") -> Model:
    m = Model(name=name, path=path, values=dict(MODEL_VALUES), description=description,
              vcpu_features=frozenset({"pmu"}))
    m.ignore = [(ignore, None)]  # type: ignore[list-item]
    return m


def check_kvm(text: str, model: Model) -> None:
    regs = regdb.load().registers
    rows = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.fullmatch(r"0x([0-9a-f]{16}) 0x([0-9a-f]{16})  # ([A-Z0-9_]+)", line)
        assert m, f"unexpected line {line!r}"
        rows.append((m[3], int(m[2], 16)))
        assert regs[m[3]].onereg == int(m[1], 16)
    assert dict(rows) == {k: v for k, v in model.values.items() if k not in kvmlist.NO_ONE_REG}


def check_qemu(text: str) -> None:
    first, *rest = text.splitlines()
    assert re.fullmatch(r"host(,[a-z0-9]+=(on|off))*", first), first
    assert escape.shell_word(first) == first
    assert all(line.startswith("# ") for line in rest)


def check_c_header(text: str, model: Model, tmp: Path) -> None:
    assert GCC and NM
    header = tmp / "m.h"
    header.write_text(text, encoding="utf-8", errors="surrogateescape")
    obj = tmp / "m.o"
    r = subprocess.run([GCC, "-c", "-x", "c", "-std=c99", "-Wall", "-Wno-unused-const-variable", "-Werror", "-O0",
                        "-o", obj, header], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    symbols = subprocess.run([NM, obj], capture_output=True, text=True, check=True).stdout.split()[2::3]
    lower = kvmlist.c_identifier(model.name).lower()
    assert set(symbols) <= {f"cpumodel_{lower}_regs"}, symbols
    macros = subprocess.run([GCC, "-E", "-dM", "-x", "c", "-std=c99", header], capture_output=True, text=True,
                            check=True).stdout
    builtin = subprocess.run([GCC, "-E", "-dM", "-x", "c", "-std=c99", "-include", "stdint.h", "/dev/null"],
                             capture_output=True, text=True, check=True).stdout
    upper = kvmlist.c_identifier(model.name).upper()
    new = {line.split()[1].split("(")[0] for line in set(macros.splitlines()) - set(builtin.splitlines())}
    assert new <= {f"CPUMODEL_{upper}_H", "CPUMODEL_REG_DEFINED", f"CPUMODEL_{upper}_NREGS",
                   f"CPUMODEL_{upper}_VCPU_FEATURES0"}, new


def check_yaml(text: str, model: Model, tmp: Path) -> None:
    p = tmp / "out.yaml"
    p.write_text(text, encoding="utf-8")
    prof = load(p)
    assert prof.name == model.name
    assert prof.description == model.description
    assert [i for i, _ in prof.ignore] == [i for i, _ in model.ignore]
    assert {k: s.raw for k, s in prof.registers.items()} == model.values


@pytest.mark.skipif(GCC is None or NM is None, reason="gcc/nm not installed")
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=text, description=text, path=text)
def test_every_format_escapes(tmp_path: Path, name: str, description: str, path: str) -> None:
    model = model_with(name or "m", description, path or "p.yaml")
    out = {fmt: emit(model, fmt) for fmt in ("json", "yaml", "kvm", "c-header", "qemu")}
    doc = json.loads(out["json"])
    assert doc["name"] == model.name and doc["profile"] == model.path
    if not any(0xD800 <= ord(c) <= 0xDFFF for c in model.name + model.description):
        check_yaml(out["yaml"], model, tmp_path)
    check_kvm(out["kvm"], model)
    check_qemu(out["qemu"])
    check_c_header(out["c-header"], model, tmp_path)


@settings(max_examples=100, deadline=None)
@given(value=text, comment=text, key=text)
def test_writer_reads_back(value: str, comment: str, key: str) -> None:
    w = Writer()
    w.comment(comment)
    w.value("name", value, comment=comment)
    w.value(key or "k", value)
    w.mapping("ignore")
    w.item(value)
    w.flow("vcpu_features", [value, "pmu"])
    doc = yaml.safe_load(w.text())
    def unsurrogate(t: str) -> str:
        return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in t)

    expect = unsurrogate(value)
    assert doc["name"] == expect
    assert doc[unsurrogate(key or "k")] == expect
    assert doc["ignore"] == [expect]
    assert doc["vcpu_features"] == [expect, "pmu"]


@settings(max_examples=60, deadline=None)
@given(s=text)
def test_one_line_is_one_printable_line(s: str) -> None:
    out = escape.one_line(s)
    assert out.isprintable() and len(out.splitlines()) <= 1
    assert "\x1b" not in out and "\u202e" not in out
    c = escape.c_comment(s)
    assert "*/" not in c and "/*" not in c and c.isprintable()


@pytest.mark.parametrize("name", ["pool: v2", "#x", "x */ int evil = 1; /*", "- a", "\x1b[31mred", "a\nb"])
def test_baseline_and_defaults_write_loadable_yaml(tmp_path: Path, name: str) -> None:
    hosts = [Resolver().resolve_file(str(REPO / "profiles" / f"{n}.yaml")) for n in ("neoverse-n1", "cortex-a76")]
    hosts[0].name = name
    b = Baseline(values={"MIDR_EL1": 1}, limited_by={("MIDR_EL1", "Revision"): name}, conflicts=[name],
                 features=frozenset({"pmu"}))
    for text in (baseline_yaml(b, hosts, name),
                 defaults_yaml(hosts[0], {"MIDR_EL1": 1}, [name], "7.3", frozenset({"pmu"}), name)):
        p = tmp_path / "x.yaml"
        p.write_text(text)
        prof = load(p)
        assert prof.name == name and prof.registers["MIDR_EL1"].raw == 1


@pytest.mark.parametrize(("command", "option"), [("baseline", "--name"), ("defaults", "--name")])
@pytest.mark.parametrize("name", ["pool: v2", "#x", "'a", "a\nb"])
def test_cli_name_option_writes_loadable_profile(tmp_path: Path, command: str, option: str, name: str) -> None:
    out = tmp_path / "out.yaml"
    hosts = ["profiles/neoverse-n1.yaml"] + (["profiles/neoverse-n1.yaml"] if command == "baseline" else [])
    r = CliRunner().invoke(main, [command, *[str(REPO / h) for h in hosts], option, name, "-o", str(out)])
    assert r.exit_code in (0, 1), r.output
    assert load(out).name == name


@pytest.mark.skipif(GCC is None or NM is None, reason="gcc/nm not installed")
def test_hostile_directory_name_through_cli(tmp_path: Path) -> None:
    d = tmp_path / "x */ int evil = 1; /* \x1b[31m"
    try:
        d.mkdir(parents=True)
    except OSError:  # a file system that refuses such names
        pytest.skip("file system refuses the name")
    p = d / "m.yaml"
    p.write_text("name: 'x */ int evil = 1; /*'\ndescription: \"\\e]0;title\\a\"\nregisters:\n  MIDR_EL1: 0x410fd0c0\n")
    for fmt in ("c-header", "kvm", "qemu", "yaml", "json"):
        r = CliRunner().invoke(main, ["emit", str(p), "--format", fmt, "--no-kvm"])
        assert r.exit_code == 0, r.output
        assert "\x1b" not in r.output and "\x07" not in r.output
        if fmt == "c-header":
            check_c_header(r.output, Model(name="x */ int evil = 1; /*", path=str(p)), tmp_path)
