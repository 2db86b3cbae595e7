"""`cpumodel errata`: the errata workarounds and Spectre mitigations a guest kernel selects from its
identity, tested through the CLI against the kernel's own tables (cpu_errata.c, proton-pack.c,
cputype.h of each line; the trees are read when present under /work/src)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import PROFILES

from cpumodel import identity
from cpumodel.cli import main

SRC = Path("/work/src")
TREES = {"6.1": "6.1.176", "6.12": "6.12.117", "6.17": "6.17.8", "6.18": "6.18.15", "6.19": "6.19.11",
         "7.1": "7.1.13", "7.2": "7.2.13", "7.3": "7.3.4"}


def run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, list(args))
    assert "Traceback" not in r.output, r.output
    return r.exit_code, r.output


def errata_json(*args: str) -> dict:  # type: ignore[type-arg]
    code, out = run("errata", *args, "--format", "json")
    assert code == 0, out
    return json.loads(out)  # type: ignore[no-any-return]


def selected(d: dict) -> set[str]:  # type: ignore[type-arg]
    return {e for w in d["workarounds"] if w["selected"] for e in w["errata"]}


def tree(line: str) -> Path | None:
    p = SRC / f"linux-{TREES[line]}"
    return p if (p / ".done").exists() else None


def cited_line(source: str) -> str:
    """The text of the Linux source line a 'file:line ... [Linux X.Y.Z]' string cites."""
    m = re.match(r"(\S+):(\d+).*\[Linux (\S+)\]", source)
    assert m, source
    root = SRC / f"linux-{m.group(3)}"
    if not root.exists():
        pytest.skip(f"no tree {root}")
    return (root / m.group(1)).read_text(errors="replace").splitlines()[int(m.group(2)) - 1]


def test_n1_lists_1542419_with_its_source_line() -> None:
    """The issue's example: erratum 1542419 listed for Neoverse N1 on 7.3, with its Linux line."""
    code, out = run("errata", str(PROFILES / "neoverse-n1.yaml"), "--kernel", "7.3")
    assert code == 0
    m = re.search(r"erratum 1542419 .*\n\s+(.*)", out)
    assert m, out
    assert "CTR_EL0.DIC" in m.group(1)  # the shipped N1 (QEMU's model) has DIC=0, so it is listed, not selected
    src = re.search(r"(arch/arm64/kernel/cpu_errata\.c:\d+ \S+ \[Linux 7\.3\.4\])", m.group(1))
    assert src, m.group(1)
    if tree("7.3"):
        assert "has_dic" in cited_line(src.group(1))
    assert "branch-history loop of 24 iterations" in out


def test_dic_selects_1542419(write) -> None:  # type: ignore[no-untyped-def]
    p = write("n1dic.yaml", "name: n1dic\nbase: neoverse-n1\nrole: guest\n"
                            "registers:\n  CTR_EL0: {DIC: 1}\n")
    d = errata_json(str(p), "--kernel", "7.3")
    assert "1542419" in selected(d)
    assert "1542419" not in selected(errata_json(str(PROFILES / "neoverse-n1.yaml"), "--kernel", "7.3"))


@pytest.mark.parametrize("line", list(TREES))
def test_revision_ranges_and_revidr(write, line: str) -> None:  # type: ignore[no-untyped-def]
    """A53 r0p4: 845719 (r0p0-r0p4) applies; 843419 is fixed when REVIDR bit 8 is set (MIDR_FIXED)."""
    a53 = PROFILES / "cortex-a53.yaml"
    d = errata_json(str(a53), "--kernel", line)
    assert "845719" in selected(d) and "843419" not in selected(d)
    assert not {"826319", "827319", "824069", "819472"} & selected(d)  # r0p0-r0p2 / r0p1 only
    p = write("a53.yaml", "name: a53\nbase: cortex-a53\nregisters:\n  REVIDR_EL1: 0\n")
    assert "843419" in selected(errata_json(str(p), "--kernel", line))


def test_el2_only_errata_are_not_selected_in_a_guest() -> None:
    d = errata_json(str(PROFILES / "cortex-a76.yaml"), "--kernel", "7.3")
    w = [w for w in d["workarounds"] if "1463225" in w["errata"]]
    assert w and not w[0]["selected"] and "EL2" in w[0]["why"]


@pytest.mark.parametrize(("profile", "k"), [("cortex-a57", 8), ("cortex-a72", 8), ("cortex-a76", 24),
                                            ("neoverse-n1", 24), ("neoverse-v1", 32), ("neoverse-n2", 32),
                                            ("cortex-a710", 32)])
def test_bhb_loop_iterations(profile: str, k: int) -> None:
    for line in TREES:
        d = errata_json(str(PROFILES / f"{profile}.yaml"), "--kernel", line)
        assert d["spectre"]["bhb"] == {**d["spectre"]["bhb"], "kind": "loop", "k": k}, (line, d["spectre"]["bhb"])
        if tree(line):
            assert profile.upper().replace("-", "_").split("_", 1)[1] in cited_line(d["spectre"]["bhb"]["source"])


def test_bhb_safe_csv2p3_ecbhb_clrbhb(write) -> None:  # type: ignore[no-untyped-def]
    assert errata_json(str(PROFILES / "cortex-a55.yaml"))["spectre"]["bhb"]["kind"] == "unaffected"
    for regs, kind in (("ID_AA64PFR0_EL1: {CSV2: 3}", "unaffected"), ("ID_AA64MMFR1_EL1: {ECBHB: 1}", "ecbhb"),
                       ("ID_AA64ISAR2_EL1: {CLRBHB: 1}", "clrbhb")):
        p = write("v.yaml", f"name: v\nbase: neoverse-v1\nregisters:\n  {regs}\n")
        assert errata_json(str(p))["spectre"]["bhb"]["kind"] == kind, regs


def test_target_implementations(write) -> None:  # type: ignore[no-untyped-def]
    """With the 6.15+ hypercall the guest matches every list against all implementations: the union
    of errata, the largest loop, and - since is_midr_in_range_list() is 'any' - one safe-listed core
    makes the whole pool 'not affected'."""
    a72, n1, v1, a55 = (str(PROFILES / f"{n}.yaml") for n in ("cortex-a72", "neoverse-n1", "neoverse-v1",
                                                               "cortex-a55"))
    d = errata_json(a72, "--kernel", "7.3", "--target-impl", n1, "--target-impl", v1)
    assert d["spectre"]["bhb"]["k"] == 32
    assert {"3194386", "4118414"} <= selected(d)
    d = errata_json(a72, "--kernel", "7.3", "--target-impl", n1, "--target-impl", a55)
    assert d["spectre"]["bhb"]["kind"] == "unaffected" and "CORTEX_A55" in d["spectre"]["bhb"]["text"]
    code, out = run("errata", a72, "--kernel", "6.12", "--target-impl", n1)
    assert code == 2 and "no target-implementation hypercall" in out


def test_target_impl_revidr_bug_6_17_to_7_1(write) -> None:  # type: ignore[no-untyped-def]
    """6.17-7.1 pass each target implementation's MIDR as its REVIDR (is_affected_midr_range()), so an
    A53 whose REVIDR says '843419 fixed' still gets the workaround; 7.2 passes the REVIDR."""
    a53, n1 = str(PROFILES / "cortex-a53.yaml"), str(PROFILES / "neoverse-n1.yaml")
    for line, fixed in (("6.17", False), ("7.1", False), ("7.2", True), ("7.3", True)):
        d = errata_json(n1, "--kernel", line, "--target-impl", a53, "--target-impl", n1)
        assert ("843419" not in selected(d)) == fixed, line
        if tree(line):
            src = cited_line(d["target_impl"]["errata_union"])
            assert "target_impl_cpus[i].midr" in src


def test_bad_input() -> None:
    code, out = run("errata", str(PROFILES / "neoverse-n1.yaml"), "--kernel", "5.4")
    assert code == 2 and "no errata tables for kernel '5.4'" in out


def test_profile_without_midr(write) -> None:  # type: ignore[no-untyped-def]
    p = write("nomidr.yaml", "name: x\nregisters:\n  ID_AA64ISAR0_EL1: 0\n")
    code, out = run("errata", str(p))
    assert code == 2 and "no MIDR_EL1" in out


@pytest.mark.parametrize("line", list(TREES))
def test_data_matches_the_tree(line: str) -> None:
    """The shipped tables are what tools/gen_errata.py extracts today, and every range it cites is on
    the line it names (a quote check of the MIDR constant)."""
    root = tree(line)
    if root is None:
        pytest.skip(f"no Linux {TREES[line]} tree")
    from tools.gen_errata import generate

    fresh = json.loads(json.dumps(generate(root)))
    assert fresh == identity.load(line), "run: python -m tools.gen_errata /work/src/linux-*"

    def ranges(obj: object):  # type: ignore[no-untyped-def]
        if isinstance(obj, dict):
            if "model" in obj and "min" in obj:
                yield obj
            for v in obj.values():
                yield from ranges(v)
        elif isinstance(obj, list):
            for v in obj:
                yield from ranges(v)

    n = 0
    for r in ranges(fresh):
        text = cited_line(r["source"])
        assert r["model"] in text or "midr_range.model" in text, (r, text)
        n += 1
    assert n > 100
    for name, core in fresh["cores"].items():
        assert name in cited_line(core["source"])
