"""The published pre-commit hooks work: `pre-commit try-repo` on this checkout, in a temporary repo.

Takes ~30 s (pre-commit builds a virtualenv with cpumodel in it, from the package index);
skipped when pre-commit is not installed (it is in the 'test' extra) or CPUMODEL_SKIP_SLOW=1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import PROFILES, REPO


def _pre_commit() -> str | None:
    """pre-commit from PATH, or beside this interpreter: the README's test command runs
    ``.venv/bin/python -m pytest`` without activating the venv, so .venv/bin is not on PATH."""
    beside = Path(sys.executable).parent / "pre-commit"
    return shutil.which("pre-commit") or (str(beside) if beside.is_file() else None)


PRE_COMMIT = _pre_commit()
pytestmark = [
    pytest.mark.skipif(os.environ.get("CPUMODEL_SKIP_SLOW") == "1", reason="CPUMODEL_SKIP_SLOW=1"),
    pytest.mark.skipif(PRE_COMMIT is None or shutil.which("git") is None, reason="needs pre-commit"),
]


def test_hooks_file_is_valid() -> None:
    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    assert {h["id"] for h in hooks} == {"cpumodel-check", "cpumodel-check-arch"}
    for h in hooks:
        assert h["entry"].startswith("cpumodel check") and h["language"] == "python"


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_try_repo_passes_good_and_fails_bad(tmp_path: Path) -> None:
    repo = tmp_path / "user-repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    shutil.copy(PROFILES / "cortex-a57.yaml", repo / "a57.yaml")
    # a guest model: a host profile's own architecture findings are warnings (its values are facts)
    (repo / "bad.yaml").write_text("registers:\n  ID_DFR0_EL1: {MProfDbg: 1}\n")
    _git(repo, "add", ".")
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pc-home")}

    def run(*files: str) -> subprocess.CompletedProcess[str]:
        assert PRE_COMMIT is not None
        return subprocess.run([PRE_COMMIT, "try-repo", str(REPO), "cpumodel-check", "--files", *files],
                              cwd=repo, env=env, capture_output=True, text=True, timeout=900)

    good = run("a57.yaml")
    assert good.returncode == 0, good.stdout + good.stderr
    bad = run("bad.yaml")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "A004" in bad.stdout and "bad.yaml:2" in bad.stdout
