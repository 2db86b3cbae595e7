"""A real package: the shipped profiles are package data (installed as cpumodel/profiles/).

.ci/run builds a wheel, installs it in a fresh venv and runs `cpumodel list` and the README's
main job from an empty directory; this test checks the build step quickly on every run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PROFILES, REPO

pytest.importorskip("setuptools")


def test_build_puts_the_shipped_profiles_in_the_package(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "-d", str(tmp_path)], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    built = {p.name for p in (tmp_path / "cpumodel" / "profiles").iterdir()}
    assert {p.name for p in PROFILES.glob("*.yaml")} <= built
    assert (tmp_path / "cpumodel" / "data" / "registers.json").is_file()
    assert (tmp_path / "cpumodel" / "emit" / "escape.py").is_file()


def test_installed_layout_is_preferred(tmp_path: Path) -> None:
    """From a wheel, resolve.SHIPPED is cpumodel/profiles/ beside the package's modules."""
    r = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "-d", str(tmp_path)], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    code = "from cpumodel import resolve; print(resolve.SHIPPED)"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={"PYTHONPATH": str(tmp_path)}, check=True).stdout.strip()
    assert Path(out) == tmp_path / "cpumodel" / "profiles"
