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


def test_index_is_current_with_lines_json(tmp_path: Path) -> None:
    """index.json is what the generator writes from the shipped rule files and lines.json (a why
    or note changed in lines.json needs the index rewritten), with no source tree needed."""
    import shutil

    from cpumodel.kvm.gen import write_index

    for f in DATA_DIR.glob("*.json.gz"):
        shutil.copy(f, tmp_path / f.name)
    assert write_index(tmp_path).read_text() == (DATA_DIR / "index.json").read_text(), \
        "run: python -c 'from cpumodel.kvm.gen import write_index, DATA_DIR; write_index(DATA_DIR)'"


RECORDINGS = REPO / "tests" / "oracle" / "recordings"


def _neighbours(line: str) -> list[str]:
    """The modelled lines just older and just newer than ``line``."""
    modelled = [ln for ln in lines() if ln.modelled]
    key = next(ln.key for ln in lines() if ln.line == line)
    older = [ln.line for ln in modelled if ln.key < key]
    newer = [ln.line for ln in modelled if ln.key > key]
    return older[-1:] + newer[:1]


@pytest.mark.parametrize("line", [ln.line for ln in lines() if not ln.modelled])
def test_unmodelled_lines_are_not_a_neighbours_rules(line: str) -> None:
    """What ``why`` says of each recorded but unmodelled line: every recording of its kernel reports
    writable masks that neither neighbour line's rules give, so borrowing those rules would be wrong."""
    from cpumodel.kvm import writable_masks
    from cpumodel.oracle import load_recording
    from cpumodel.oracle.sysregs import encoding_of

    release = next(ln.release for ln in lines() if ln.line == line)
    recs = sorted(RECORDINGS.glob(f"{release}_*.json.gz"))
    if not recs:
        pytest.skip(f"no recording of {release}")
    for ln in _neighbours(line):
        rules = load_kernel(ln)
        for path in recs:
            differ = []
            for fs in load_recording(path, cases=False).feature_sets.values():
                if fs.masks_errno or not fs.writable_masks:
                    continue
                el0 = fs.defaults.get("ID_AA64PFR0_EL1")
                ours = writable_masks(rules, host_aarch32_el0=el0 is not None and el0 & 0xF >= 2)
                for reg, mask in fs.writable_masks.items():
                    r = rules.lookup(encoding_of(reg))
                    if mask != (ours[r.name] if r is not None else 0):
                        differ.append(reg)
            assert differ, f"{path.name}: every recorded writable mask is what {ln}'s rules give"


_TREES = {ln.line: source_tree(ln, SRC) for ln in lines() if ln.modelled}


@pytest.mark.skipif(not all(_TREES.values()), reason=f"kernel source trees not under {SRC}")
def test_data_regenerates_from_the_trees(tmp_path: Path) -> None:
    from cpumodel.kvm.gen import main as gen_main

    assert gen_main(["--src", str(SRC), "--out", str(tmp_path)]) == 0
    for line in _TREES:
        ours = gzip.decompress((DATA_DIR / f"{line}.json.gz").read_bytes())
        assert gzip.decompress((tmp_path / f"{line}.json.gz").read_bytes()) == ours, line
    assert (tmp_path / "index.json").read_text() == (DATA_DIR / "index.json").read_text()


# --------------------------------------------------------------------------- #
# cpumodel kernels import
# --------------------------------------------------------------------------- #

_PARTS = ("arch/arm64/kvm", "arch/arm64/include", "arch/arm64/kernel/cpufeature.c", "arch/arm64/tools/sysreg",
          "tools/testing/selftests/kvm/arm64/set_id_regs.c", "tools/testing/selftests/kvm/aarch64/set_id_regs.c")


def _tree_copy(src: Path, dest: Path, version: str | None = None) -> Path:
    """The parts of a tree the generator reads, with the Makefile's version changed if asked."""
    import shutil

    for part in _PARTS:
        s = src / part
        if s.is_dir():
            shutil.copytree(s, dest / part)
        elif s.exists():
            (dest / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(s, dest / part)
    mk = (src / "Makefile").read_text()
    if version:
        import re

        v, p, s2 = version.split(".")
        mk = re.sub(r"^VERSION = .*$", f"VERSION = {v}", mk, count=1, flags=re.M)
        mk = re.sub(r"^PATCHLEVEL = .*$", f"PATCHLEVEL = {p}", mk, count=1, flags=re.M)
        mk = re.sub(r"^SUBLEVEL = .*$", f"SUBLEVEL = {s2}", mk, count=1, flags=re.M)
    (dest / "Makefile").write_text(mk)
    return dest


@pytest.fixture
def xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    load_kernel.cache_clear()
    yield tmp_path
    load_kernel.cache_clear()


def _verdicts(kernel: str) -> list[tuple[str, int, str]]:
    """Every 4-bit value of every field of every register, against the QEMU max host of the model tests."""
    from cpumodel.kvm import check_write
    from tests.kvm.test_kvm_model import ALL, HOST_MAX  # type: ignore[import-not-found]

    rules = load_kernel(kernel)
    out = []
    for r in rules.registers.values():
        base = HOST_MAX.get(r.name, 0)
        for shift in range(0, 64, 4):
            for v in range(16):
                val = (base & ~(0xF << shift)) | (v << shift)
                vd = check_write(rules, r.name, val, HOST_MAX, ALL, host_caps={"gicv3": True})
                out.append((r.name, val, f"{vd.status} {vd.errno}"))
    return out


@pytest.mark.skipif(_TREES.get("7.3") is None, reason=f"no 7.3 source tree under {SRC}")
def test_import_uses_the_nearest_overlay_and_gives_the_builtin_verdicts(xdg: Path) -> None:
    # a 7.3.4 tree that calls itself 7.4.0: no 7.4 overlay, so 7.3's is used and re-verified
    tree = _tree_copy(_TREES["7.3"], xdg / "linux-7.4.0", "7.4.0")  # type: ignore[arg-type]
    code, out = run("kernels", "import", str(tree), "--name", "next")
    assert code == 0, out
    assert "overlay of line 7.3" in out
    code, out = run("kernels")
    assert "next" in out and "Linux 7.4.0" in out
    assert resolve("7.4.0").name == "next" and resolve("7.4").name == "next"  # no longer refused
    assert load_kernel("next").kernel_full == "7.4.0"
    assert _verdicts("next") == _verdicts("7.3")
    # the same through the command users run
    prof = str(REPO / "profiles" / "neoverse-v1-kvm7.3.yaml")
    host = str(REPO / "profiles" / "neoverse-n1.yaml")
    a = run("check", prof, "--host", host, "--kernel", "next")
    b = run("check", prof, "--host", host, "--kernel", "7.3")
    assert a[0] == b[0] == 1
    assert a[1].replace("kernel next", "kernel 7.3").replace("7.4.0", "7.3.4") == b[1]


@pytest.mark.skipif(_TREES.get("7.2") is None, reason=f"no 7.2 source tree under {SRC}")
def test_import_refuses_a_tree_the_overlay_does_not_describe(xdg: Path) -> None:
    # 7.2.13's code labelled 8.0.0 is read with 7.3's overlay, whose quotes are not all in it
    tree = _tree_copy(_TREES["7.2"], xdg / "linux-8.0.0", "8.0.0")  # type: ignore[arg-type]
    code, out = run("kernels", "import", str(tree))
    assert code == 2
    assert "evidence" in out and "not found in" in out and "Linux 8.0.0" in out
    assert not (xdg / "xdg" / "cpumodel" / "kernels" / "8.0.0.json.gz").exists()


def test_import_of_something_else_is_refused(xdg: Path) -> None:
    code, out = run("kernels", "import", str(xdg))
    assert code == 2 and "is not a Linux source tree" in out


# --------------------------------------------------------------------------- #
# The running kernel: capture records it, --kernel host (or no --kernel) uses it
# --------------------------------------------------------------------------- #

def _host_with_release(tmp_path: Path, release: str) -> str:
    src = (REPO / "profiles" / "neoverse-n1.yaml").read_text()
    p = tmp_path / "host.yaml"
    p.write_text(src + f"kernel_release: {release!r}\n")
    return str(p)


GUEST = "registers:\n  ID_AA64ISAR0_EL1: {SHA3: 1}\n"


def test_kernel_host_uses_the_recorded_release(tmp_path: Path) -> None:
    host = _host_with_release(tmp_path, "6.12.95+deb13-arm64")
    (tmp_path / "g.yaml").write_text(GUEST)
    code, out = run("check", str(tmp_path / "g.yaml"), "--host", host, "--kernel", "host")
    assert code == 1 and "kernel 6.12;" in out and "[Linux 6.12.117]" in out
    # no --kernel: the host's release too
    code2, out2 = run("check", str(tmp_path / "g.yaml"), "--host", host)
    assert (code2, out2) == (code, out)
    # --kernel wins over the recorded release
    assert "kernel 7.3;" in run("check", str(tmp_path / "g.yaml"), "--host", host, "--kernel", "7.3")[1]


def test_recorded_release_without_rules_says_how_to_import(tmp_path: Path) -> None:
    host = _host_with_release(tmp_path, "6.8.0-45-generic")
    (tmp_path / "g.yaml").write_text(GUEST)
    code, out = run("check", str(tmp_path / "g.yaml"), "--host", host)
    assert code == 2 and "runs Linux 6.8.0-45-generic" in out and "cpumodel kernels import" in out


def test_kernel_host_needs_a_recorded_release(tmp_path: Path) -> None:
    (tmp_path / "g.yaml").write_text(GUEST)
    code, out = run("check", str(tmp_path / "g.yaml"), "--kernel", "host")
    assert code == 2 and "records no kernel_release" in out


def test_capture_writes_the_release_and_profiles_read_it() -> None:
    from cpumodel.capture import Captured, to_profile_yaml
    from cpumodel.profile import parse
    from cpumodel.yamlsrc import compose

    c = Captured(host="Linux 6.12.95+deb13-arm64 aarch64", release="6.12.95+deb13-arm64")
    c.values = {"MIDR_EL1": 0x414FD0C1}
    c.origin = {"MIDR_EL1": "sysfs"}
    c.notes = {"MIDR_EL1": "midr_el1"}
    c.used = ["sysfs"]
    text = to_profile_yaml(c, "h")
    assert "kernel_release: " in text
    assert parse(compose(text, "h.yaml"), "h.yaml").kernel_release == "6.12.95+deb13-arm64"


# --------------------------------------------------------------------------- #
# Kernel upgrades: cpumodel diff HOST --kernel OLD --to-kernel NEW
# --------------------------------------------------------------------------- #

V1 = str(REPO / "profiles" / "neoverse-v1.yaml")


def test_upgrade_61_to_73_breaks_restore_of_ccidx() -> None:
    code, out = run("diff", V1, "--kernel", "6.1", "--to-kernel", "7.3")
    assert code == 1
    # 6.1's read_id_reg() sets DebugVer to 6; 7.3 caps it at V8P8 and keeps the V1's 9
    assert "ID_AA64DFR0_EL1.DebugVer: 0x6 -> 0x9" in out
    # 7.3 hides CCIDX (__kvm_read_sanitised_id_reg), so 6.1's saved CCIDX=1 is above the limit
    assert "ID_AA64MMFR2_EL1=0x" in out and "EINVAL" in out and "[Linux 7.3.4]" in out


def test_upgrade_612_to_73_on_n1_restores() -> None:
    code, out = run("diff", str(REPO / "profiles" / "neoverse-n1.yaml"), "--kernel", "6.12", "--to-kernel", "7.3")
    assert code == 0 and "every register accepted" in out


def test_upgrade_json_and_downgrade_to_61() -> None:
    code, out = run("diff", V1, "--kernel", "7.3", "--to-kernel", "6.1", "--format", "json")
    assert code == 1
    d = json.loads(out)
    bad = {r["register"]: r["errno"] for r in d["restore"] if r["status"] != "accepted"}
    assert bad["ID_AA64DFR0_EL1"] == "EINVAL"  # 6.1 accepts only its own value
    assert d["to_kernel"] == "6.1 (Linux 6.1.176)" and d["restores"] is False


def test_upgrade_needs_the_old_kernel() -> None:
    code, out = run("diff", V1, "--to-kernel", "7.3")
    assert code == 2 and "--kernel X.Y" in out


def test_check_on_61_refuses_any_value_but_kvms(tmp_path: Path) -> None:
    """Through the command users run: on 6.1 a lower AES (fine from 6.7 on) is EINVAL."""
    (tmp_path / "g.yaml").write_text("registers:\n  ID_AA64ISAR0_EL1: {AES: 0}\n")
    host = str(REPO / "profiles" / "neoverse-n1.yaml")
    code, out = run("check", str(tmp_path / "g.yaml"), "--host", host, "--kernel", "6.1")
    assert code == 1 and "K002" in out and "ID registers are not writable on this kernel" in out
    assert "[Linux 6.1.176]" in out
    code, out = run("check", str(tmp_path / "g.yaml"), "--host", host, "--kernel", "7.3")
    assert "AES" not in out or "K002" not in out
