#!/usr/bin/env python3
"""Benchmarks: cpumodel's time and memory as ratios to yardsticks measured in the same run.

Usage (from the repository root)::

    python3 -m venv .venv && .venv/bin/pip install -q -e '.[bench]'   # yamllint comes with the extra
    .venv/bin/python benchmarks/run.py                 # sets of 1, 100 and 1,000 profiles, 5 runs each
    .venv/bin/python benchmarks/run.py --sizes 1 100 1000 10000 --repeat 3 --profile
    git archive OLDCOMMIT | tar -x -C /tmp/old && .venv/bin/python benchmarks/run.py --before /tmp/old --no-baseline

It generates two kinds of profile sets under ``benchmarks/out/sets/``: ``N/`` (copies and
mutations of the shipped profiles, a third of them inheriting from a copy through ``base:``, many
of them with violations) and ``hosts-N/`` (copies of the shipped host profiles with a varied MIDR
revision: valid CPUs). Every command runs in a fresh process pinned to one CPU, ``--repeat``
times, in rounds (each round runs every command once, so load changes hit all of them alike);
the report gives medians of wall time, of CPU time (user + system: steadier on a loaded
machine) and the peak RSS (``getrusage``). The targets are ratios to yardsticks from the same
run: a one-profile check against ``python -c 'import yaml, click'``; a check of N files against
parsing the same files with PyYAML's C loader and against yamllint; ``--jobs`` (the default: the
idle cores) and ``-j <usable cores>``, both unpinned, against the C-loader parse. Results: a table on stdout and
``benchmarks/out/results.json``. ``--before TREE`` also runs the checks with another source tree's
cpumodel in the same rounds (its ratios to the same yardsticks are the table's "before" column);
``--no-baseline`` leaves out ``baseline`` of N files. ``--profile`` also runs cProfile over ``check`` of the
1,000-profile set; the import-time breakdown of ``--version`` and of a one-profile ``check``
(``python -X importtime``) is always printed.
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
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
PRECISE_CPU = True  # getrusage (microseconds) rather than /usr/bin/time -v (10 ms steps)

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


def make_host_set(n: int, seed: int = 2) -> list[Path]:
    """``n`` copies of the shipped host profiles in ``out/sets/hosts-n/``, each with its own MIDR revision."""
    d = OUT / "sets" / f"hosts-{n}"
    if d.is_dir() and len(list(d.glob("*.yaml"))) == n:
        return sorted(d.glob("*.yaml"))
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    rng = random.Random(seed)
    texts = {p.stem: p.read_text(encoding="utf-8") for p in SHIPPED}
    hosts = sorted(k for k, t in texts.items() if re.search(r"^role: host", t, re.M))
    paths = []
    for i in range(n):
        src = hosts[i % len(hosts)]
        text = re.sub(r"^name: .*$", f"name: h{i:05d}-{src}", texts[src], count=1, flags=re.M)
        p = d / f"h{i:05d}-{src}.yaml"
        p.write_text(_mutate_raw(text, rng), encoding="utf-8")
        paths.append(p)
    return paths


# What the C-loader yardstick does: read and construct every file with PyYAML's libyaml binding.
C_PARSE = ("import sys, yaml\n"
           "for p in sys.argv[1:]:\n"
           "    with open(p, 'rb') as f:\n"
           "        yaml.load(f, Loader=yaml.CSafeLoader)\n")


# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------

def _pin() -> list[str]:
    """Run on one CPU: ``taskset -c <first allowed CPU>`` when available."""
    if shutil.which("taskset") and hasattr(os, "sched_getaffinity"):
        return ["taskset", "-c", str(min(os.sched_getaffinity(0)))]
    return []


_RUSAGE_HELPER = ("import resource, subprocess, sys, time\n"
                  "t = time.perf_counter()\n"
                  "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
                  "w = time.perf_counter() - t\n"
                  "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
                  "print(u.ru_maxrss, u.ru_utime + u.ru_stime, r.returncode, w)\n")


def run_once(argv: list[str], env: dict[str, str], pin: bool = True, cwd: Path = REPO) -> dict[str, float]:
    """Wall time (s), CPU time (s), peak RSS (MiB) and exit code of one run of a command."""
    pre = _pin() if pin else []
    if TIME and not PRECISE_CPU:
        cmd = [*pre, "/usr/bin/time", "-v", *argv]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           errors="replace", env=env, cwd=cwd)
        wall = time.perf_counter() - t0
        err = r.stderr
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
        u = re.search(r"User time \(seconds\): ([\d.]+)", err)
        s = re.search(r"System time \(seconds\): ([\d.]+)", err)
        c = re.search(r"Exit status: (\d+)", err)
        return {"wall": wall, "rss": int(m.group(1)) / 1024 if m else float("nan"),
                "cpu": float(u.group(1)) + float(s.group(1)) if u and s else float("nan"),
                "exit": int(c.group(1)) if c else r.returncode}
    cmd = [*pre, sys.executable, "-c", _RUSAGE_HELPER, *argv]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    maxrss, cputime, code, wall = r.stdout.split()
    return {"wall": float(wall), "rss": int(maxrss) / 1024, "cpu": float(cputime), "exit": int(code)}


#: A command: (argv, pinned) or (argv, pinned, source tree): a tree runs ``python -m cpumodel`` from
#: that tree (``--before``: an earlier version measured in the same rounds, against the same yardsticks).
Command = tuple[Any, ...]


def measure_rounds(commands: dict[str, Command], repeat: int, env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Run every command once per round, ``repeat`` rounds; medians per command."""
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in commands}
    for _ in range(repeat):
        for label, (argv, pin, *tree) in commands.items():
            if tree:
                runs[label].append(run_once(argv, dict(env, PYTHONPATH=str(tree[0])), pin, cwd=tree[0]))
            else:
                runs[label].append(run_once(argv, env, pin))
    out = {}
    for label, rs in runs.items():
        out[label] = {"wall_s": statistics.median(r["wall"] for r in rs), "wall_min_s": min(r["wall"] for r in rs),
                      "cpu_s": statistics.median(r["cpu"] for r in rs), "peak_rss_mib": max(r["rss"] for r in rs),
                      "exit": rs[-1]["exit"], "runs": len(rs), "pinned": commands[label][1]}
    return out


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
            "peak_rss_from": "/usr/bin/time -v" if TIME and not PRECISE_CPU else "getrusage(RUSAGE_CHILDREN)",
            "bytecode": "cpumodel precompiled (compileall)", "load_average": os.getloadavg()}


def fmt_cell(r: dict[str, Any] | None) -> str:
    if not r:
        return "-"
    return f"{r['wall_s']:.2f} s / {r['peak_rss_mib']:.0f} MiB"


def ratio(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
    return {"wall": round(a["wall_s"] / b["wall_s"], 2), "cpu": round(a["cpu_s"] / b["cpu_s"], 2)}


def targets(res: dict[str, dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """The issue's targets, each a ratio to a yardstick measured in the same rounds."""
    t: list[dict[str, Any]] = []

    def add(what: str, num: str, den: str, limit: float) -> None:
        if num in res and den in res:
            r = ratio(res[num], res[den])
            t.append({"target": what, "ratio": r, "limit": limit, "ok": r["wall"] <= limit})
            if f"{num} (before)" in res:
                t[-1]["before"] = ratio(res[f"{num} (before)"], res[den])

    add("one profile within 1.3x `python -c 'import yaml, click'`", "check 1 profile", "import yaml, click", 1.3)
    add(f"{n:,} profiles within 1.5x of parsing them with PyYAML's C loader", f"check {n:,}", f"C loader {n:,}", 1.5)
    add(f"{n:,} host profiles within 1.5x of the C loader", f"check hosts {n:,}", f"C loader hosts {n:,}", 1.5)
    add(f"{n:,} profiles, --jobs (default: idle cores) within 1.5x of the C loader", f"check --jobs {n:,}",
        f"C loader {n:,}", 1.5)
    add(f"{n:,} profiles, -j {CORES} within 1.5x of the C loader", f"check -j {CORES} {n:,}", f"C loader {n:,}", 1.5)
    add(f"{n:,} profiles at <= 0.06x yamllint's time", f"check {n:,}", f"yamllint {n:,}", 0.06)
    for label in (f"check {n:,}", f"check hosts {n:,}"):
        if label in res:
            mib = res[label]["peak_rss_mib"]
            t.append({"target": f"peak memory of `{label}` <= 40 MiB", "mib": round(mib, 1), "limit": 40,
                      "ok": mib <= 40})
            if f"{label} (before)" in res:
                t[-1]["before_mib"] = round(res[f"{label} (before)"]["peak_rss_mib"], 1)
    return t


def commands_for(n: int, paths: list[Path], hosts: list[Path], yamllint: str | None,
                 baseline: bool = True, before: Path | None = None) -> dict[str, Command]:
    py = sys.executable
    cpumodel = [py, "-m", "cpumodel"]
    files, hfiles = [str(p) for p in paths], [str(p) for p in hosts]
    c: dict[str, Command] = {
        f"C loader {n:,}": ([py, "-c", C_PARSE, *files], True),
        f"check {n:,}": ([*cpumodel, "check", "-q", *files], True),
        f"check --no-kvm {n:,}": ([*cpumodel, "check", "-q", "--no-kvm", *files], True),
        f"check --jobs {n:,}": ([*cpumodel, "check", "-q", *files], False),  # default: the idle cores
        f"check -j {CORES} {n:,}": ([*cpumodel, "check", "-q", "-j", str(CORES), *files], False),
        f"C loader hosts {n:,}": ([py, "-c", C_PARSE, *hfiles], True),
        f"check hosts {n:,}": ([*cpumodel, "check", "-q", *hfiles], True),
    }
    if before is not None:
        c[f"check {n:,} (before)"] = ([*cpumodel, "check", "-q", *files], True, before)
        c[f"check hosts {n:,} (before)"] = ([*cpumodel, "check", "-q", *hfiles], True, before)
    if n > 1 and baseline:
        c[f"baseline {n:,}"] = ([*cpumodel, "baseline", *files], True)
    if yamllint:
        c[f"yamllint {n:,}"] = ([yamllint, "-f", "parsable", *files], True)
    return c


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 100, 1000])
    ap.add_argument("--repeat", type=int, default=5, help="rounds (medians are reported)")
    ap.add_argument("--profile", action="store_true", help="cProfile 'check' over the 1,000-profile set")
    ap.add_argument("--no-baseline", action="store_true", help="leave out `cpumodel baseline` of N files (slow)")
    ap.add_argument("--before", type=Path, metavar="TREE",
                    help="also measure the checks with the cpumodel of this source tree (e.g. `git archive` of an "
                         "earlier commit, unpacked), in the same rounds: before/after against the same yardsticks")
    args = ap.parse_args()
    before = args.before.resolve() if args.before else None

    OUT.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(REPO), NO_COLOR="1")
    # An installed package has its bytecode compiled (pip does it); a checkout run with
    # PYTHONDONTWRITEBYTECODE=1 would recompile every module on every start. Compile once.
    for tree in (REPO, *([before] if before else [])):
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "cpumodel")], check=True)
    py = sys.executable
    cpumodel = [py, "-m", "cpumodel"]
    yamllint = shutil.which("yamllint") or shutil.which("yamllint", path=str(Path(sys.executable).parent))
    results: dict[str, Any] = {"machine": machine(), "sizes": args.sizes, "repeat": args.repeat,
                               "load_before": os.getloadavg(), "rounds": {}, "importtime": {}, "targets": {}}
    fixed = {
        "python -c pass": ([py, "-c", "pass"], True),
        "import yaml, click": ([py, "-c", "import yaml, click"], True),
        "cpumodel --version": ([*cpumodel, "--version"], True),
        "check 1 profile": ([*cpumodel, "check", "profiles/neoverse-n1.yaml"], True),
        "check 1 guest profile": ([*cpumodel, "check", "profiles/firecracker-v1n1.yaml"], True),
        "emit 1 profile": ([*cpumodel, "emit", "--format", "yaml", "profiles/neoverse-n1.yaml"], True),
    }
    if before is not None:
        fixed["check 1 profile (before)"] = ([*cpumodel, "check", str(REPO / "profiles/neoverse-n1.yaml")], True,
                                             before)
    res = measure_rounds(fixed, max(args.repeat, 5), env)
    results["rounds"]["fixed"] = res
    for label, r in res.items():
        print(f"{label:34s} {fmt_cell(r)}  cpu {r['cpu_s']:.3f} s", flush=True)
    results["targets"]["start-up"] = targets(res, 1)[:1]
    for n in args.sizes:
        cmds = commands_for(n, make_set(n), make_host_set(n), yamllint, not args.no_baseline, before)
        res = measure_rounds(cmds, args.repeat if n <= 1000 else 1, env)
        results["rounds"][str(n)] = res
        for label, r in res.items():
            print(f"{label:34s} {fmt_cell(r)}  cpu {r['cpu_s']:.3f} s  exit {r['exit']}", flush=True)
        if n >= 100:
            results["targets"][str(n)] = targets(res, n)

    results["importtime"]["--version"] = importtime(["-m", "cpumodel", "--version"], env)
    results["importtime"]["check (1 profile)"] = importtime(["-m", "cpumodel", "check", "profiles/neoverse-n1.yaml"],
                                                            env)
    results["load_after"] = os.getloadavg()
    print(f"\nload average before {results['load_before']}, after {results['load_after']}")
    print("\n| target | before (wall / CPU) | ratio (wall, median) | ratio (CPU time, median) | met |\n"
          "|---|---|---|---|---|")
    for group in results["targets"].values():
        for t in group:
            if "ratio" in t:
                b = t.get("before")
                was = f"{b['wall']:.2f}x / {b['cpu']:.2f}x" if b else ""
                print(f"| {t['target']} | {was} | "
                      f"{t['ratio']['wall']:.2f}x | {t['ratio']['cpu']:.2f}x | {'yes' if t['ok'] else 'no'} |")
            else:
                b = t.get("before_mib")
                print(f"| {t['target']} | {f'{b} MiB' if b else ''} | {t['mib']} MiB | | "
                      f"{'yes' if t['ok'] else 'no'} |")
    sizes = [str(n) for n in args.sizes]
    if len(sizes) > 1:
        lo, hi = results["rounds"][sizes[0]], results["rounds"][sizes[-1]]
        grow = hi[f"check {int(sizes[-1]):,}"]["peak_rss_mib"] - lo[f"check {int(sizes[0]):,}"]["peak_rss_mib"]
        print(f"memory growth of check from {int(sizes[0]):,} to {int(sizes[-1]):,} profiles: {grow:.1f} MiB")
        results["memory_growth_mib"] = round(grow, 1)
    for label, it in results["importtime"].items():
        print(f"\nImport time of {label}: {it['total_ms']:.0f} ms over {it['modules']} modules; by package (ms): "
              + ", ".join(f"{k} {v}" for k, v in it["by_package"].items()))
        print("  slowest modules (self ms): " + ", ".join(f"{r['module']} {r['self_ms']:.1f}" for r in it["top_self"]))

    if args.profile and 1000 in args.sizes:
        report = cprofile_check(make_set(1000), env)
        results["cprofile_check_1000"] = report
        print("\ncProfile of check over 1,000 profiles:\n" + report)

    (OUT / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {OUT / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
