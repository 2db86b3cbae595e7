"""Fuzz campaign over the outputs: generated and mutated profiles through check and every emit
format; no traceback, and every emitted file parsed back by its consumer.

Profiles come from test_properties' generators (random registers, fields, spellings, bases, arch,
features; byte and line mutations of valid ones), and the resolved model's name, description and
path are then replaced, half the time, by hostile text (terminal escapes, comment terminators,
newlines, bidirectional overrides, any code point). For each: ``check_model`` must not raise;
each of json, yaml, kvm, c-header, firecracker and qemu either refuses with ``CpumodelError`` or
writes text that parses (JSON loads; YAML loads through cpumodel's own loader with the same
values; the kvm list and qemu block follow their line grammar; gcc accepts the C header).

The default test tier runs ``CPUMODEL_FUZZ_OUTPUT_EXAMPLES`` (default 25) examples. The campaign:
``CPUMODEL_FUZZ_OUTPUT_EXAMPLES=10000 python -m pytest tests/test_fuzz_outputs.py -p no:cacheprovider
--hypothesis-show-statistics``; the figures of the last run are in the README ("Fuzzing").
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_hostile_outputs import NASTY
from test_properties import mutated, profile_set

from cpumodel import regdb
from cpumodel.check import Options, check_model
from cpumodel.emit import FORMATS, emit, kvmlist
from cpumodel.errors import CpumodelError
from cpumodel.profile import load
from cpumodel.resolve import Resolver

EXAMPLES = int(os.environ.get("CPUMODEL_FUZZ_OUTPUT_EXAMPLES", "25"))
GCC = shutil.which("gcc")
STATS = {"examples": 0, "resolved": 0, "emitted": 0, "refused": 0, "gcc": 0}

hostile = st.one_of(st.sampled_from(NASTY), st.text(max_size=30))


def _parse_kvm(text: str) -> dict[str, int]:
    regs = regdb.load().registers
    rows = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.fullmatch(r"0x([0-9a-f]{16}) 0x([0-9a-f]{16})  # ([A-Z0-9_]+)", line)
        assert m, f"kvm list: unexpected line {line!r}"
        assert regs[m[3]].onereg == int(m[1], 16)
        rows[m[3]] = int(m[2], 16)
    return rows


def _check_output(fmt: str, text: str, model, tmp: Path) -> None:  # type: ignore[no-untyped-def]
    if fmt in ("json", "firecracker"):
        doc = json.loads(text)
        if fmt == "json":
            assert doc["name"] == model.name and len(doc["registers"]) == len(model.values)
        else:
            assert set(doc) <= {"kvm_capabilities", "vcpu_features", "reg_modifiers"}
    elif fmt == "yaml":
        if any(0xD800 <= ord(c) <= 0xDFFF for c in model.name + model.description):
            return  # a lone surrogate has no YAML spelling (written as U+FFFD, tested elsewhere)
        p = tmp / "out.yaml"
        p.write_text(text, encoding="utf-8")
        prof = load(p)
        assert prof.name == model.name and prof.description == model.description
        assert {k: s.raw for k, s in prof.registers.items()} == model.values
    elif fmt == "kvm":
        assert _parse_kvm(text) == {k: v for k, v in model.values.items() if k not in kvmlist.NO_ONE_REG}
    elif fmt == "qemu":
        first, *rest = text.splitlines()
        assert re.fullmatch(r"host(,[A-Za-z0-9_]+=[A-Za-z0-9_]+)*", first), first
        assert all(line.startswith("# ") and line.isprintable() for line in rest)
    elif fmt == "c-header" and GCC:
        h = tmp / "m.h"
        h.write_text(text, encoding="utf-8", errors="surrogateescape")
        r = subprocess.run([GCC, "-fsyntax-only", "-std=c99", "-Wall", "-Wno-unused-const-variable", "-Werror",
                            "-x", "c", str(h)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr + text
        STATS["gcc"] += 1


@pytest.fixture(scope="module")
def workdir():  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory(prefix="cpumodel-fuzz-out-") as d:
        yield Path(d)
    if EXAMPLES >= 1000:
        print(f"\noutput fuzz campaign: {STATS}")


@pytest.mark.filterwarnings("ignore::cpumodel.emit.firecracker.EmitNote")
@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
@given(files=st.one_of(profile_set().map(lambda fs: {k: v.encode() for k, v in fs.items()}), mutated()),
       name=st.one_of(st.none(), hostile), description=hostile, path=hostile)
def test_outputs_parse_back(workdir: Path, files: dict[str, bytes], name: str | None, description: str,
                            path: str) -> None:
    STATS["examples"] += 1
    d = Path(tempfile.mkdtemp(dir=workdir))
    for fname, data in files.items():
        (d / fname).write_bytes(data)
    try:
        model = Resolver().resolve_file(str(d / "main.yaml"))
    except CpumodelError:
        return
    STATS["resolved"] += 1
    check_model(model, Options())
    if name is not None:  # the text of a hostile profile, as any of its strings could hold
        model.name, model.description, model.path = name or "x", description, path
    for fmt in FORMATS:
        try:
            text = emit(model, fmt)
        except CpumodelError:
            STATS["refused"] += 1
            continue
        STATS["emitted"] += 1
        _check_output(fmt, text, model, d)
    shutil.rmtree(d, ignore_errors=True)
