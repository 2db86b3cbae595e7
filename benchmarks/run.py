#!/usr/bin/env python3
"""Benchmarks: wall time and peak memory of cpumodel against plain Python and yamllint.

Usage (from the repository root)::

    python3 -m venv .venv && .venv/bin/pip install -q -e '.[bench]'   # yamllint comes with the extra
    .venv/bin/python benchmarks/run.py                 # sets of 1, 100, 1,000 and 10,000 profiles
    .venv/bin/python benchmarks/run.py --sizes 1 100 --repeat 5 --profile

It generates profile sets under ``benchmarks/out/sets/N/`` (copies and mutations of the shipped
profiles, a third of them inheriting from a copy through ``base:``), then runs every command
in a fresh process pinned to one CPU, ``--repeat`` times, and records the best wall time and the
peak RSS (from ``/usr/bin/time -v`` when present, else ``getrusage(RUSAGE_CHILDREN)`` in a
helper process). Results: a table on stdout and ``benchmarks/out/results.json``. ``--profile``
also runs cProfile over ``check`` of the 1,000-profile set (``benchmarks/out/check-1000.prof``)
and prints the top functions; the import-time breakdown of ``--version`` and of a one-profile
``check`` (``python -X importtime``) is always printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out"
SHIPPED = sorted((REPO / "profiles").glob("*.yaml"))
TIME = shutil.which("time") and Path("/usr/bin/time").exists()

# A few field overrides that keep a profile well-formed (names from the register database).
OVERRIDES = [
    ("ID_AA64ISAR0_EL1", "AES", ["NI", "AES", "PMULL"]),
    ("ID_AA64ISAR0_EL1", "CRC32", ["NI", "IMP"]),
    ("ID_AA64ISAR0_EL1", "SHA1", ["NI", "IMP"]),
    ("ID_AA64PFR0_EL1", "CSV2", ["NI", "IMP"]),
    ("ID_AA64PFR0_EL1", "DIT", ["NI", "IMP"]),
    ("ID_AA64MMFR0_EL1", "PARANGE", ["0x2", "0x4", "0x5"]),
    ("ID_AA64MMFR1_EL1", "PAN", ["NI", "IMP", "PAN2"]),
    ("ID_AA64ISAR1_EL1", "DPB", ["NI", "IMP"]),
]


# --------------------------------------------------------------------------------------------
# Profile sets
# --------------------------------------------------------------------------------------------

def _mutate_raw(text: str, rng: random.Random) -> str:
    """Change MIDR's revision and flip REVIDR: a different, equally valid CPU."""
    text = re.sub(r"(MIDR_EL1: 0x[0-9a-fA-F]*?)([0-9a-fA-F])\b",
                  lambda m: m.group(1) + f"{rng.randrange(16):x}", text, count=1)
    return re.sub(r"(REVIDR_EL1: )0x[0-9a-fA-F]+", lambda m: m.group(1) + f"{rng.randrange(1 << 16):#010x}",
                  text, count=1)


def make_set(n: int, seed: int = 1) -> list[Path]:
    """``n`` profiles in ``out/sets/n/``: a third copies, a third mutated copies, a third with ``base:``."""
    d = OUT / "sets" / str(n)
    if d.is_dir() and len(list(d.glob("*.yaml"))) == n:
        return sorted(d.glob("*.yaml"))
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    rng = random.Random(seed)
    texts = {p.stem: p.read_text(encoding="utf-8") for p in SHIPPED}
    names = sorted(texts)
    paths = []
    for i in range(n):
        src = names[i % len(names)]
        kind = "copy" if i < len(names) else rng.choice(["copy", "mutated", "child"])
        name = f"{i:05d}-{src}"
        if kind == "child":
            parent = f"{names.index(src) % n:05d}-{src}" if names.index(src) < n else None
            lines = [f"name: {name}", f"base: {parent}" if parent else f"base: {src}", "registers:"]
            fields: dict[str, list[str]] = {}
            for reg, field, values in rng.sample(OVERRIDES, k=rng.randint(1, 3)):
                fields.setdefault(reg, []).append(f"{field}: {rng.choice(values)}")
            lines += [f"  {reg}: {{{', '.join(fv)}}}" for reg, fv in fields.items()]
            text = "\n".join(lines) + "\n"
        else:
            text = re.sub(r"^name: .*$", f"name: {name}", texts[src], count=1, flags=re.M)
            if kind == "mutated":
                text = _mutate_raw(text, rng)
        p = d / f"{name}.yaml"
        p.write_text(text, encoding="utf-8")
        paths.append(p)
    return paths


# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------

def _pin() -> list[str]:
    """Run on one CPU: ``taskset -c <first allowed CPU>`` when available."""
    if shutil.which("taskset") and hasattr(os, "sched_getaffinity"):
        return ["taskset", "-c", str(min(os.sched_getaffinity(0)))]
    return []


_RUSAGE_HELPER = ("import resource, subprocess, sys\n"
                  "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
                  "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
                  "print(u.ru_maxrss, u.ru_utime + u.ru_stime, r.returncode)\n")


def measure(argv: list[str], repeat: int, env: dict[str, str]) -> dict[str, Any]:
    """Best wall time (s), peak RSS (MiB, max over runs), CPU time (s) and exit code of a command."""
    walls, rss, cpu, codes = [], [], [], []
    for _ in range(repeat):
        if TIME:
            cmd = [*_pin(), "/usr/bin/time", "-v", *argv]
            t0 = time.perf_counter()
            r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               errors="replace", env=env, cwd=REPO)
            walls.append(time.perf_counter() - t0)
            err = r.stderr
            m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
            rss.append(int(m.group(1)) / 1024 if m else float("nan"))
            u = re.search(r"User time \(seconds\): ([\d.]+)", err)
            s = re.search(r"System time \(seconds\): ([\d.]+)", err)
            cpu.append(float(u.group(1)) + float(s.group(1)) if u and s else float("nan"))
            c = re.search(r"Exit status: (\d+)", err)
            codes.append(int(c.group(1)) if c else r.returncode)
        else:
            cmd = [*_pin(), sys.executable, "-c", _RUSAGE_HELPER, *argv]
            t0 = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
            walls.append(time.perf_counter() - t0)
            maxrss, cputime, code = r.stdout.split()
            rss.append(int(maxrss) / 1024)
            cpu.append(float(cputime))
            codes.append(int(code))
    return {"wall_s": min(walls), "wall_median_s": statistics.median(walls), "peak_rss_mib": max(rss),
            "cpu_s": min(cpu), "exit": codes[-1], "runs": repeat}


def importtime(argv: list[str], env: dict[str, str], top: int = 12) -> dict[str, Any]:
    """Self and cumulative import times (ms) of the slowest modules, from ``python -X importtime``."""
    r = subprocess.run([sys.executable, "-X", "importtime", *argv], capture_output=True, text=True, env=env,
                       cwd=REPO)
    rows = []
    for line in r.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m:
            rows.append({"module": m.group(4), "self_ms": int(m.group(1)) / 1000,
                         "cumulative_ms": int(m.group(2)) / 1000, "depth": (len(m.group(3)) - 1) // 2})
    total = sum(r["self_ms"] for r in rows)
    by_pkg: dict[str, float] = {}
    for row in rows:
        pkg = row["module"].split(".")[0]
        by_pkg[pkg] = by_pkg.get(pkg, 0.0) + row["self_ms"]
    return {"total_ms": round(total, 1), "modules": len(rows),
            "top_self": sorted(rows, key=lambda x: -x["self_ms"])[:top],
            "by_package": dict(sorted(((k, round(v, 1)) for k, v in by_pkg.items()), key=lambda kv: -kv[1])[:top])}


def cprofile_check(paths: list[Path], env: dict[str, str], top: int = 25) -> str:
    prof = OUT / f"check-{len(paths)}.prof"
    code = ("import cProfile, pstats, sys\n"
            "from cpumodel.cli import main\n"
            f"sys.argv = ['cpumodel', 'check', '-q', *sys.argv[1:]]\n"
            f"cProfile.run('try:\\n    main()\\nexcept SystemExit:\\n    pass', {str(prof)!r})\n"
            f"pstats.Stats({str(prof)!r}, stream=sys.stderr).sort_stats('cumulative').print_stats({top})\n"
            f"pstats.Stats({str(prof)!r}, stream=sys.stderr).sort_stats('tottime').print_stats({top})\n")
    r = subprocess.run([sys.executable, "-c", code, *map(str, paths)], capture_output=True, text=True, env=env,
                       cwd=REPO)
    return r.stderr


# --------------------------------------------------------------------------------------------
# Machine, table, main
# --------------------------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "implementation": platform.python_implementation(), "platform": platform.platform(),
            "executable": sys.executable, "commit": commit, "pinned": " ".join(_pin()) or "no",
            "peak_rss_from": "/usr/bin/time -v" if TIME else "getrusage(RUSAGE_CHILDREN)",
            "bytecode": "cpumodel precompiled (compileall)", "load_average": os.getloadavg()}


def fmt_cell(r: dict[str, Any] | None) -> str:
    if not r:
        return "-"
    return f"{r['wall_s']:.2f} s / {r['peak_rss_mib']:.0f} MiB"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 100, 1000, 10000])
    ap.add_argument("--repeat", type=int, default=3, help="runs per command (best wall time is kept)")
    ap.add_argument("--profile", action="store_true", help="cProfile 'check' over the 1,000-profile set")
    args = ap.parse_args()

    OUT.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(REPO), NO_COLOR="1")
    # An installed package has its bytecode compiled (pip does it); a checkout run with
    # PYTHONDONTWRITEBYTECODE=1 would recompile every module on every start. Compile once.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "cpumodel")], check=True)
    py = sys.executable
    cpumodel = [py, "-m", "cpumodel"]
    yamllint = shutil.which("yamllint")
    sets = {n: make_set(n) for n in args.sizes}
    one = sets[min(sets)][0]
    other = sets[min(sets)][-1] if len(sets[min(sets)]) > 1 else SHIPPED[1]

    fixed: dict[str, list[str]] = {
        "python -c pass": [py, "-c", "pass"],
        "python -c 'import yaml'": [py, "-c", "import yaml"],
        "python -c 'import yaml, click'": [py, "-c", "import yaml, click"],
        "cpumodel --version": [*cpumodel, "--version"],
        "cpumodel emit (1 profile)": [*cpumodel, "emit", "--format", "yaml", str(one)],
        "cpumodel diff (2 profiles)": [*cpumodel, "diff", str(one), str(other)],
    }
    results: dict[str, Any] = {"machine": machine(), "sizes": args.sizes, "repeat": args.repeat,
                               "fixed": {}, "per_size": {}, "importtime": {}, "targets": {}}
    for label, argv in fixed.items():
        results["fixed"][label] = measure(argv, args.repeat, env)
        print(f"{label:34s} {fmt_cell(results['fixed'][label])}", flush=True)

    for n, paths in sets.items():
        files = [str(p) for p in paths]
        rep = args.repeat if n <= 1000 else 1
        row: dict[str, Any] = {}
        row["cpumodel check"] = measure([*cpumodel, "check", "-q", *files], rep, env)
        row["cpumodel check --no-kvm"] = measure([*cpumodel, "check", "-q", "--no-kvm", *files], rep, env)
        row["cpumodel baseline"] = measure([*cpumodel, "baseline", *files], rep, env) if n > 1 else None
        row["yamllint"] = measure([yamllint, "-f", "parsable", *files], rep, env) if yamllint else None
        results["per_size"][str(n)] = row
        for label, r in row.items():
            print(f"{label + f' ({n:,})':34s} {fmt_cell(r)}  exit {r['exit'] if r else '-'}", flush=True)

    results["importtime"]["--version"] = importtime(["-m", "cpumodel", "--version"], env)
    results["importtime"]["check (1 profile)"] = importtime(["-m", "cpumodel", "check", "-q", str(one)], env)

    # Targets from the issue
    base = results["fixed"]["python -c 'import yaml, click'"]["wall_s"]
    per = results["per_size"]
    t: dict[str, Any] = {}
    if "1" in per:
        c1 = per["1"]["cpumodel check"]["wall_s"]
        t["check 1 profile within 2x of import yaml, click"] = {"ratio": round(c1 / base, 2), "ok": c1 <= 2 * base}
    if "1000" in per:
        c = per["1000"]["cpumodel check"]["wall_s"]
        t["check 1,000 profiles under 2 s"] = {"seconds": round(c, 2), "ok": c < 2.0}
        if per["1000"]["yamllint"]:
            y = per["1000"]["yamllint"]["wall_s"]
            t["check 1,000 faster than yamllint"] = {"cpumodel_s": round(c, 2), "yamllint_s": round(y, 2), "ok": c < y}
    sizes = sorted(int(k) for k in per)
    if len(sizes) > 1:
        lo, hi = per[str(sizes[0])]["cpumodel check"], per[str(sizes[-1])]["cpumodel check"]
        growth = hi["peak_rss_mib"] - lo["peak_rss_mib"]
        t[f"memory flat from {sizes[0]:,} to {sizes[-1]:,} profiles"] = {
            "growth_mib": round(growth, 1), "ok": growth < max(20.0, 0.25 * lo["peak_rss_mib"])}
    results["targets"] = t

    # Table
    print("\n| command | " + " | ".join(f"{n:,} profile{'s' if n > 1 else ''}" for n in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for label, r in results["fixed"].items():
        print(f"| `{label}` | {fmt_cell(r)} |" + " |" * (len(sizes) - 1))
    for label in ("cpumodel check", "cpumodel check --no-kvm", "cpumodel baseline", "yamllint"):
        print(f"| `{label}` | " + " | ".join(fmt_cell(per[str(n)][label]) for n in sizes) + " |")
    print("\nTargets:")
    for k, v in t.items():
        print(f"  [{'ok' if v['ok'] else 'MISSED'}] {k}: {json.dumps({a: b for a, b in v.items() if a != 'ok'})}")
    for label, it in results["importtime"].items():
        print(f"\nImport time of {label}: {it['total_ms']:.0f} ms over {it['modules']} modules; by package (ms): "
              + ", ".join(f"{k} {v}" for k, v in it["by_package"].items()))
        print("  slowest modules (self ms): " + ", ".join(f"{r['module']} {r['self_ms']:.1f}" for r in it["top_self"]))

    if args.profile and 1000 in sets:
        report = cprofile_check(sets[1000], env)
        results["cprofile_check_1000"] = report
        print("\ncProfile of check over 1,000 profiles:\n" + report)

    (OUT / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {OUT / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
