"""Start-up cost of `cpumodel check` on one profile: nothing imported or loaded that it does not use.

(`--version` has its own guard in test_hostile.py.) Measured against `python -c "import yaml, click"`,
the yardstick of benchmarks/run.py: the modules a one-profile check adds must be cpumodel's own
check path and a few small standard modules; KVM data is read for the one kernel line asked for.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Standard modules a check may add to what `import yaml, click` already loads.
STDLIB_ALLOWED = {"atexit", "gc",  # built in: the entry point's exit and collector settings
                  "_bisect", "bisect", "_json", "json", "json.decoder", "json.encoder", "json.scanner", "copy",
                  "dataclasses", "runpy", "_locale", "locale", "org", "org.python", "org.python.core",
                  "gzip", "zlib", "_compression"}
# cpumodel parts a one-profile check must not import: other commands, the build-time half of the
# feature engine, the parallel machinery (one file), heavy renderers.
NOT_ON_THE_CHECK_PATH = ("cpumodel.emit", "cpumodel.ops", "cpumodel.report.tables", "cpumodel.oracle",
                         "cpumodel.capture", "cpumodel.verify", "cpumodel.features.closure", "cpumodel.parallel",
                         "multiprocessing", "concurrent", "rich", "jsonschema", "cpumodel.report.sarif",
                         "cpumodel.report.json")


def _imported(*args: str) -> set[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    res = subprocess.run([sys.executable, "-X", "importtime", *args], capture_output=True, text=True, cwd=REPO,
                         env=env, timeout=60)
    assert "Traceback" not in res.stderr, res.stderr[-2000:]
    return {line.rsplit("|", 1)[-1].strip() for line in res.stderr.splitlines() if line.startswith("import time")}


@pytest.mark.parametrize("profile,host", [("profiles/neoverse-n1.yaml", True),
                                          ("profiles/firecracker-v1n1.yaml", False)], ids=["host", "guest"])
def test_one_profile_check_imports_only_its_path(profile: str, host: bool) -> None:
    base = _imported("-c", "import yaml, click")
    extra = _imported("-m", "cpumodel", "check", profile) - base
    stdlib = {m for m in extra if m.split(".")[0] != "cpumodel"}
    assert stdlib <= STDLIB_ALLOWED, sorted(stdlib - STDLIB_ALLOWED)
    bad = sorted(m for m in extra if m.startswith(NOT_ON_THE_CHECK_PATH))
    assert not bad, bad
    assert "cpumodel.features._program" in extra  # the precompiled constraint program
    if host:  # a clean check explains nothing: the explanation tables stay unread
        assert "cpumodel.features._program_text" not in extra
    if host:  # a host CPU gets architecture rules only: no KVM code at all
        assert not [m for m in extra if m == "cpumodel.kvm" or m.startswith("cpumodel.kvm.")]
        assert "json" not in extra  # the register data loads from cpumodel/_registers.py (KVM lines read JSON)


_PROBE = """
import sys
opened = []
sys.addaudithook(lambda ev, args: opened.append(str(args[0])) if ev == "open" and isinstance(args[0], str) else None)
from cpumodel.cli import main
sys.argv = ["cpumodel", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
print("KVMDATA", sorted({p.rsplit("/", 1)[-1] for p in opened if "/data/kvm/" in p}), file=sys.stderr)
"""


@pytest.mark.parametrize("kernel,line", [("6.12", "6.12"), ("7.3", "7.3")])
def test_one_kernel_line_is_loaded(kernel: str, line: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    res = subprocess.run([sys.executable, "-c", _PROBE, "check", "--kernel", kernel, "profiles/firecracker-v1n1.yaml"],
                         capture_output=True, text=True, cwd=REPO, env=env, timeout=60)
    got = next(x for x in res.stderr.splitlines() if x.startswith("KVMDATA"))
    files = ast.literal_eval(got.split(" ", 1)[1])
    lines = [f for f in files if f.endswith(".json.gz")]
    assert lines == [f"{line}.json.gz"], files
