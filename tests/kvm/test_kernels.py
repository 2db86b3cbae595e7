"""Kernel lines: which rule set ``--kernel`` picks, what it says when there is none, and that the
shipped data is what the generator makes from each line's source tree (when the trees are here)."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from cpumodel.cli import main
from cpumodel.kvm import kernels, load_kernel
from cpumodel.kvm.lines import DEFAULT_SRC, lines, source_tree
from cpumodel.kvm.rules import DATA_DIR, KernelNotModelled, resolve

REPO = Path(__file__).resolve().parents[2]
SRC = Path(os.environ.get("CPUMODEL_LINUX_SRC", DEFAULT_SRC))


def run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, list(args))
    return r.exit_code, r.output


def test_every_modelled_line_has_data_and_loads() -> None:
    modelled = [ln.line for ln in lines() if ln.modelled]
    assert kernels() == modelled
    for v in modelled:
        r = load_kernel(v)
        assert r.kernel == v and r.kernel_full.startswith(v + ".")


def test_full_release_picks_its_line() -> None:
    r = load_kernel("7.2.13")
    assert (r.kernel, r.kernel_full) == ("7.2", "7.2.13")
    assert resolve("6.12.95+deb13-arm64").name == "6.12"  # a Debian uname -r


@pytest.mark.parametrize("version", ["6.16", "7.0", "6.16.12"])
def test_unmodelled_lines_say_why_and_how_to_import(version: str) -> None:
    with pytest.raises(KernelNotModelled) as e:
        load_kernel(version)
    assert "recorded but not modelled" in str(e.value) and "no source tree" in str(e.value)
    assert "cpumodel kernels import" in e.value.hint


def test_not_built_in_says_how_to_import() -> None:
    code, out = run("check", str(REPO / "profiles" / "neoverse-n1.yaml"), "--kernel", "6.8")
    assert code == 2
    assert "Linux 6.8 has no built-in KVM rules" in out and "cpumodel kernels import /path/to/linux-6.8" in out


@pytest.mark.parametrize("version", ["7.4", "8.0", "7.4.1"])
def test_newer_than_every_line_is_refused_not_mapped(version: str) -> None:
    with pytest.raises(KernelNotModelled, match="newer than every modelled kernel"):
        load_kernel(version)


def test_kernels_command_lists_every_line() -> None:
    code, out = run("kernels")
    assert code == 0
    for ln in lines():
        assert f"  {ln.line} " in out
    assert "6.16   not modelled" in out and "7.0    not modelled" in out
    assert "Linux 7.2.13" in out


def test_index_lists_every_line_in_lines_json() -> None:
    index = json.loads((DATA_DIR / "index.json").read_text())
    assert [e["line"] for e in index["lines"]] == [ln.line for ln in lines()]


_TREES = {ln.line: source_tree(ln, SRC) for ln in lines() if ln.modelled}


@pytest.mark.skipif(not all(_TREES.values()), reason=f"kernel source trees not under {SRC}")
def test_data_regenerates_from_the_trees(tmp_path: Path) -> None:
    from cpumodel.kvm.gen import main as gen_main

    assert gen_main(["--src", str(SRC), "--out", str(tmp_path)]) == 0
    for line in _TREES:
        ours = gzip.decompress((DATA_DIR / f"{line}.json.gz").read_bytes())
        assert gzip.decompress((tmp_path / f"{line}.json.gz").read_bytes()) == ours, line
    assert (tmp_path / "index.json").read_text() == (DATA_DIR / "index.json").read_text()
