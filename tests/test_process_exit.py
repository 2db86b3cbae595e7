"""The process entry point (``cpumodel`` script, ``python -m cpumodel``): :func:`cpumodel.cli.run` ends
the process without the interpreter's teardown, and only when nothing a normal exit would run is left;
the output and the exit status are what the command group gives in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PROFILES, REPO

from cpumodel.cli import GC_THRESHOLD

# An object whose finaliser runs at the interpreter's teardown: "teardown" on stdout means a normal exit.
_TEARDOWN = "class D:\n    def __del__(self):\n        print('teardown', flush=True)\nd = D()\n"


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                          timeout=120, cwd=REPO)


def test_exit_skips_the_teardown_and_keeps_output_and_status() -> None:
    res = _python(_TEARDOWN + "import sys\nsys.stdout.write('out' * 5000)\nsys.stderr.write('err')\n"
                              "from cpumodel.cli import _exit\n_exit(3)\n")
    assert (res.returncode, res.stdout, res.stderr) == (3, "out" * 5000, "err")


@pytest.mark.parametrize("left", [
    "import atexit\natexit.register(print, 'atexit')\n",
    "import threading, time\nthreading.Thread(target=lambda: (time.sleep(0.2), print('thread'))).start()\n",
    "import threading\nthreading._register_atexit(print, 'pool')\n",  # as concurrent.futures' pools do
], ids=["atexit", "thread", "thread-exit-hook"])
def test_exit_is_a_normal_one_when_something_is_left_to_run(left: str) -> None:
    res = _python(_TEARDOWN + left + "from cpumodel.cli import _exit\n_exit(3)\n")
    assert res.returncode == 3
    assert "teardown" in res.stdout and res.stdout.strip() != "teardown", res.stdout  # it ran, then teardown


@pytest.mark.parametrize("code,status,err", [(None, 0, ""), (256 + 2, 2, ""), ("boom", 1, "boom\n")])
def test_exit_status_is_as_sys_exit_gives(code: object, status: int, err: str) -> None:
    res = _python(f"from cpumodel.cli import _exit\n_exit({code!r})\n")
    assert (res.returncode, res.stderr) == (status, err)


def test_the_entry_point_tunes_the_collector() -> None:
    res = _python("import gc, sys\nimport cpumodel.cli as cli\nsys.argv = ['cpumodel', '--version']\n"
                  "cli.main.main = lambda: print(gc.get_threshold()[0])\ncli.run()\n")
    assert res.stdout.split() == [str(GC_THRESHOLD)], res.stdout + res.stderr


def _violating(tmp_path: Path) -> Path:
    p = tmp_path / "bad.yaml"
    p.write_text("name: bad\nregisters:\n  ID_AA64PFR0_EL1: {FP: 0xe}\n")
    return p


@pytest.mark.parametrize("args", [
    ("check", str(PROFILES)),
    ("check", "--format", "json", str(PROFILES)),
    ("check", "-j", "2", str(PROFILES)),  # a process pool: the normal exit
    ("check", "VIOLATING"),
    ("check", "/nonexistent.yaml"),
    ("--version",),
], ids=["text", "json", "jobs", "violation", "unreadable", "version"])
def test_the_script_prints_and_exits_as_the_command_group(args: tuple[str, ...], tmp_path: Path) -> None:
    args = tuple(str(_violating(tmp_path)) if a == "VIOLATING" else a for a in args)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-m", "cpumodel", *args], capture_output=True, text=True, env=env,
                         timeout=120, cwd=REPO)
    group = _python("import sys\nfrom cpumodel.cli import main\nsys.argv[0] = 'cpumodel'\nmain()\n", *args)
    assert (res.returncode, res.stdout, res.stderr) == (group.returncode, group.stdout, group.stderr)
    assert res.stdout or res.stderr
    if args[-1].endswith("bad.yaml"):
        assert res.returncode == 1
