"""The conventions users expect of a command-line linter, each through the real CLI.

Directories are checked recursively; ``-o -`` is stdout; a closed pipe ends quietly; no Python
warning reaches stderr; every command has one error form on stderr; github/sarif/junit carry
file and line for unreadable profiles and count severities as the exit code does; NO_COLOR and
non-tty output are plain; ``rules`` takes globs; control characters are escaped in every human
output.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import PROFILES, REPO

from cpumodel.cli import main

GOOD = "name: good\nrole: host\nregisters:\n  ID_AA64ISAR0_EL1: {AES: PMULL, SHA1: 1, SHA2: 1, CRC32: 1}\n"
WARN = GOOD.replace("good", "warn") + "ignore: [Z999]\n"  # one P001 warning only
BROKEN = "name: broken\nregisters:\n  MIDR_EL1: on\n"
ERROR_FORM = re.compile(r"^cpumodel: error: (?P<file>[^:]+):(?P<line>\d+)(?::\d+)?: .+$")


def run(*args: object, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, [str(a) for a in args], env=env)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    return r.exit_code, r.stdout, r.stderr


def module(*args: object, **kw: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), **kw.pop("env", {})}  # type: ignore[dict-item]
    return subprocess.run([sys.executable, "-m", "cpumodel", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120, **kw)  # type: ignore[call-overload]


def tree(tmp_path: Path) -> Path:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "a" / "one.yaml").write_text(GOOD)
    (tmp_path / "a" / "b" / "two.yml").write_text(GOOD.replace("good", "two"))
    (tmp_path / ".hidden" / "skip.yaml").write_text(BROKEN)
    (tmp_path / "a" / ".skip.yaml").write_text(BROKEN)
    (tmp_path / "a" / "notes.txt").write_text("not a profile")
    return tmp_path


def test_directories_are_checked_recursively(tmp_path: Path) -> None:
    code, out, err = run("check", tree(tmp_path))
    assert code == 0 and "no problems in 2 profiles" in out, out + err
    code, out, _ = run("check", "--format", "json", tmp_path / "a")
    assert json.loads(out)["profiles"] == 2
    assert run("check", PROFILES)[0] == 0


def test_output_dash_is_stdout(tmp_path: Path) -> None:
    os.chdir(tmp_path)
    p = tmp_path / "a.yaml"
    p.write_text(GOOD)
    for args in (["check", p, "-o", "-"], ["emit", p, "-o", "-", "--role", "guest", "--no-kvm"],
                 ["defaults", PROFILES / "neoverse-n1.yaml", "-o", "-"]):
        code, out, err = run(*args)
        assert code in (0, 1), out + err
        assert out and not (tmp_path / "-").exists()


def test_closed_pipe_is_quiet(tmp_path: Path) -> None:
    for i in range(200):
        (tmp_path / f"p{i:03d}.yaml").write_text(WARN)
    cmd = f"{sys.executable} -m cpumodel check --no-kvm {tmp_path} | head -1; exit ${{PIPESTATUS[0]}}"
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode in (0, 141), (r.returncode, r.stderr[-2000:])
    assert r.stderr == "", r.stderr[-2000:]


def test_no_python_warnings_on_stderr() -> None:
    r = module("emit", PROFILES / "neoverse-v1-kvm7.3.yaml", "--format", "firecracker")
    assert r.returncode == 0, r.stderr
    assert "Warning" not in r.stderr and "warn(" not in r.stderr
    assert all(line.startswith("cpumodel: ") for line in r.stderr.splitlines()), r.stderr


@pytest.mark.parametrize("command", [["check"], ["check", "--format", "json"], ["emit"], ["show"],
                                     ["diff", "{good}"], ["baseline", "{good}"], ["defaults"], ["errata"]])
def test_one_error_form_on_stderr(tmp_path: Path, command: list[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    bad = tmp_path / "bad.yaml"
    bad.write_text(BROKEN)
    args = [c.format(good=good) for c in command]
    args.insert(1, str(bad))
    code, out, err = run(*args)
    assert code == 2, out + err
    lines = [line for line in err.splitlines() if line.startswith("cpumodel: error:")]
    assert len(lines) == 1, err
    m = ERROR_FORM.match(lines[0])
    assert m and m["file"] == str(bad) and m["line"] == "3", lines[0]
    assert "error:" not in out.replace('"errors"', "")


def test_machine_formats_locate_load_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BROKEN)
    _, out, _ = run("check", bad, "--format", "github")
    assert re.search(rf"^::error file={re.escape(str(bad))},line=3,col=\d+,title=", out, re.M), out
    _, out, _ = run("check", bad, "--format", "sarif")
    res = json.loads(out)["runs"][0]["results"]
    loc = res[0]["locations"][0]["physicalLocation"]
    assert res[0]["level"] == "error" and loc["artifactLocation"]["uri"] == str(bad) and loc["region"]["startLine"] == 3
    _, out, _ = run("check", bad, "--format", "junit")
    case = ET.fromstring(out).find(".//testcase")
    assert case is not None and case.get("file") == str(bad) and case.get("line") == "3"
    _, out, _ = run("check", bad, "--format", "json")
    assert json.loads(out)["unreadable"][0]["line"] == 3


def test_junit_counts_failures_as_the_exit_code_does(tmp_path: Path) -> None:
    p = tmp_path / "warn.yaml"
    p.write_text(WARN)
    code, out, _ = run("check", p, "--format", "junit")
    suite = ET.fromstring(out)
    assert code == 0 and suite.get("failures") == "0", out
    code, out, _ = run("check", "--strict", p, "--format", "junit")
    assert code == 1 and ET.fromstring(out).get("failures") == "1", out


def test_no_color_and_non_tty_are_plain() -> None:
    """Through a pseudo-terminal: colour by default, none with NO_COLOR; never when piped."""
    pty = pytest.importorskip("pty")
    for args in (["list"], ["show", str(PROFILES / "cortex-a57.yaml")], ["rules", "A00*"],
                 ["explain", "ID_AA64ISAR0_EL1=0x1120"],
                 ["diff", str(PROFILES / "cortex-a57.yaml"), str(PROFILES / "cortex-a72.yaml")]):
        piped = module(*args)
        assert "\x1b" not in piped.stdout, args
        env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
        env.update(PYTHONPATH=str(REPO), NO_COLOR="1", TERM="xterm-256color", COLUMNS="200")
        out = _pty_output(pty, [sys.executable, "-m", "cpumodel", *args], env)
        assert "\x1b[3" not in out and "\x1b[9" not in out and "\x1b[38" not in out, (args, out[:500])


def _pty_output(pty: object, argv: list[str], env: dict[str, str]) -> str:
    import select

    pid, fd = pty.fork()  # type: ignore[attr-defined]
    if pid == 0:  # pragma: no cover - child
        os.execve(argv[0], argv, env)
    chunks = []
    while True:
        r, _, _ = select.select([fd], [], [], 60)
        if not r:
            break
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode("utf-8", "replace")


def test_rules_takes_globs() -> None:
    code, out, _ = run("rules", "ARCH-FEAT_SVE-*", "--format", "json")
    ids = [r["id"] for r in json.loads(out)]
    assert code == 0 and ids and all(i.startswith("ARCH-FEAT_SVE-") for i in ids)
    code, out, _ = run("rules", "A00?")
    assert code == 0 and "A001" in out and "A004" in out
    code, _, err = run("rules", "NOPE-*")
    assert code == 2 and "no rule matches" in err


HOSTILE = "\x1b]0;pwned\x07\x1b[31mred\u202e"


def test_control_characters_escaped_in_human_output(tmp_path: Path) -> None:
    d = tmp_path / "dir\x1b[31m"
    d.mkdir()
    p = d / "m.yaml"
    p.write_text(f'name: "{HOSTILE.encode("unicode_escape").decode()}"\n'
                 f'description: "{HOSTILE.encode("unicode_escape").decode()}"\n'
                 "role: host\nregisters:\n  MIDR_EL1: 0x410fd0c0\n  ID_DFR0_EL1: {MProfDbg: 1}\n")
    for args in (["list", "-I", d], ["show", p], ["diff", p, PROFILES / "cortex-a57.yaml"], ["check", p],
                 ["check", p, "--format", "github"], ["check", p, "--format", "junit"],
                 ["emit", p, "--format", "kvm", "--role", "guest", "--no-kvm", "--ignore", "A004"]):
        _, out, err = run(*args)
        for text in (out, err):
            assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text, (args, text[:800])


def test_a_file_named_as_given_even_when_another_profile_took_it_as_its_base(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A base is looked up relative to the working directory; when the same file is also named on the
    command line (after the profile that takes it as its base), its findings still carry the path as given."""
    (tmp_path / "child.yaml").write_text("name: child\nbase: warn\n")
    (tmp_path / "warn.yaml").write_text(WARN)
    monkeypatch.chdir(tmp_path)
    for given in (str(tmp_path / "warn.yaml"), "./warn.yaml"):
        _, out, err = run("check", "-q", "child.yaml", given)
        shown = {line.split(":", 1)[0] for line in out.splitlines() if "P001" in line}
        assert given in shown, out + err
