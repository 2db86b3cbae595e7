"""`cpumodel check --jobs N`: worker processes give the output of one process, in the same order."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from cpumodel.cli import main
from cpumodel.parallel import MIN_FILES, workers_for
from tests.conftest import shipped_profiles


def _profiles(d: Path, n: int) -> list[str]:
    """``n`` profiles: copies of the shipped ones, children that change a field (some break a rule),
    and two unreadable files among them."""
    shipped = shipped_profiles()
    paths = []
    for i in range(n):
        src = shipped[i % len(shipped)]
        p = d / f"{i:03d}-{src.stem}.yaml"
        if i % 3 == 2:  # a child of the previous file
            prev = Path(paths[-1]).stem
            sha = "IMP" if i % 2 else "NI"
            p.write_text(f"name: c{i}\nbase: {prev}\nregisters:\n  ID_AA64ISAR0_EL1: {{SHA1: {sha}}}\n")
        else:
            text = src.read_text(encoding="utf-8")
            p.write_text(re.sub(r"^name: .*$", f"name: p{i}", text, count=1, flags=re.M), encoding="utf-8")
        paths.append(str(p))
    (d / "bad1.yaml").write_text("name: [unclosed\n")
    (d / "bad2.yaml").write_text("name: x\nregisters: {NOT_A_REGISTER: 1}\n")
    paths[n // 3:n // 3] = [str(d / "bad1.yaml")]
    paths[2 * n // 3:2 * n // 3] = [str(d / "bad2.yaml")]
    return paths


def _run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, list(args))
    return r.exit_code, r.output


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_jobs_give_the_output_of_one_process(tmp_path: Path, fmt: str) -> None:
    paths = _profiles(tmp_path, MIN_FILES + 12)
    assert workers_for(2, len(paths)) == 2  # the parallel path really runs
    one = _run("check", "--format", fmt, "-j", "1", *paths)
    two = _run("check", "--format", fmt, "-j", "2", *paths)
    assert one == two
    assert one[0] == 2 and "bad1.yaml" in one[1] and "bad2.yaml" in one[1]
    assert "error" in one[1]


def test_few_files_or_one_core_stay_in_process() -> None:
    assert workers_for(4, MIN_FILES - 1) == 0
    assert workers_for(1, 10_000) == 0
    assert workers_for(3, MIN_FILES) == 3
