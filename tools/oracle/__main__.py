"""Real-KVM oracle recorder (developer tool; the machinery is cpumodel.oracle).

    python -m tools.oracle setup [--kernel SPEC ...]
    python -m tools.oracle list-kernels
    python -m tools.oracle gen-cases -o cases.jsonl [--features none,pmu,...] [--sample N]
    python -m tools.oracle record (--kernel SPEC | --kernel-image PATH) --cpu MODEL
                                  [--cases FILE | --cases-from-recording REC] [--sample N]
                                  [--migrate-from REC ...] -o OUT.json.gz [--compare REC]
    python -m tools.oracle record-all [--kernels 6.1,7.2,...] [--cpus max,...] [--dir DIR] [--missing]
    python -m tools.oracle compare EXPECTED.json.gz ACTUAL.json.gz
    python -m tools.oracle record-firmware [--kernels 6.12.117+deb13,...] [--cpus max] [--dir DIR | -o OUT]
    python -m tools.oracle firmware-check REC.json.gz [--compare COMMITTED.json.gz]

Exit codes: 0 fine, 1 recordings differ, 2 error (message on stderr).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from cpumodel.oracle import (
    DEFAULT_FEATURE_SETS,
    Case,
    FeatureSet,
    OracleError,
    compare_recordings,
    feature_key,
    generate_cases,
    get_kernel,
    load_recording,
    read_cases,
    run_cases,
    save_recording,
    write_cases,
)
from cpumodel.oracle.cases import (
    MIGRATION_FEATURE_SETS,
    MigrationSource,
    features_of_key,
    migration_cases,
)
from cpumodel.oracle.kernel import AptCache, KernelInfo, default_cache_dir
from cpumodel.oracle.recording import Recording
from cpumodel.oracle.sysregs import ORACLE_REGISTERS, encoding_of

#: Debian packages the oracle needs (binary -> package), installed by `setup`.
PACKAGES: dict[str, str] = {
    "qemu-system-aarch64": "qemu-system-arm",
    "aarch64-linux-gnu-gcc": "gcc-aarch64-linux-gnu",
    "cpio": "cpio",
}
LIBC_PACKAGE = "libc6-dev-arm64-cross"

#: The committed recording set (tests/oracle/recordings/<version>_<cpu>.json.gz): one Debian
#: kernel per line (exact ABI, so that a re-run boots the same kernel) x these QEMU CPUs.
RECORDED_KERNELS: tuple[str, ...] = (
    "6.1.0-50-arm64",  # bookworm, linux-image-6.1.0-50-arm64-unsigned 6.1.176-1
    "6.12.117+deb13",
    "6.16.12+deb13",
    "6.17.8+deb13",  # the release of the 6.17 source tree (the rule set's)
    "6.17.13+deb13",
    "6.18.15+deb13",
    "6.19.11+deb13",  # the release of the 6.19 source tree (the rule set's)
    "6.19.14+deb13",
    "7.0.13+deb13",
    "7.1.13+deb13",
    "7.2.13+deb14",  # sid
    "7.3.4+deb13",
)
RECORDED_CPUS: tuple[str, ...] = ("max", "neoverse-n1", "cortex-a72", "a64fx")
RECORDINGS_DIR = Path("tests/oracle/recordings")


def _installed(package: str) -> bool:
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    return proc.returncode == 0 and "install ok installed" in proc.stdout


def cmd_setup(args: argparse.Namespace) -> int:
    wanted = [*PACKAGES.values(), LIBC_PACKAGE]
    missing = [p for p in wanted if not _installed(p)]
    if missing:
        print(f"installing {' '.join(missing)}", file=sys.stderr)
        env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdin=subprocess.DEVNULL)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
            check=True,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    else:
        print("host packages already installed: " + " ".join(wanted), file=sys.stderr)
    for spec in args.kernel or []:
        info = get_kernel(spec, args.cache_dir)
        print(f"kernel {spec}: {info.package} {info.package_version} -> {info.image}", file=sys.stderr)
    return 0


def cmd_list_kernels(args: argparse.Namespace) -> int:
    apt = AptCache(args.cache_dir or default_cache_dir())
    apt.update()
    for abi in apt.kernel_abis():
        print(abi)
    return 0


def parse_feature_sets(text: str | None) -> list[FeatureSet]:
    """ "none,pmu,pmu+sve" -> feature sets; None -> the standard ones."""
    if not text:
        return list(DEFAULT_FEATURE_SETS)
    return [features_of_key(k.strip()) for k in text.split(",") if k.strip()]


def sample(cases: Sequence[Case], n: int | None) -> list[Case]:
    """A deterministic spread of ``n`` cases (every k-th), keeping every feature set's
    after-run cases represented."""
    if not n or n >= len(cases):
        return list(cases)
    step = len(cases) / n
    picked = {int(i * step) for i in range(n)}
    return [c for i, c in enumerate(cases) if i in picked]


def cmd_gen_cases(args: argparse.Namespace) -> int:
    regs = [encoding_of(r.strip()) for r in args.registers.split(",")] if args.registers else ORACLE_REGISTERS
    cases = generate_cases(parse_feature_sets(args.features), regs, after_run=not args.no_after_run)
    cases = sample(cases, args.sample)
    n = write_cases(Path(args.output), cases)
    print(f"wrote {n} cases to {args.output}", file=sys.stderr)
    return 0


def migration_sources(recordings: Sequence[Recording]) -> list[MigrationSource]:
    """Each recording's KVM defaults in the migration feature sets (where KVM accepted them),
    labelled "<kernel version>/<cpu>"."""
    out: list[MigrationSource] = []
    for rec in recordings:
        for fs in MIGRATION_FEATURE_SETS:
            fsr = rec.feature_sets.get(feature_key(fs))
            if fsr is None or not fsr.accepted:
                continue
            values = {encoding_of(r): v for r, v in fsr.defaults.items() if v is not None}
            out.append(MigrationSource(f"{rec.kernel_version}/{rec.cpu}", fs, values))
    return out


def recording_name(rec: Recording) -> str:
    return f"{rec.kernel_version}_{rec.cpu}.json.gz"


def cmd_record(args: argparse.Namespace) -> int:
    cache = args.cache_dir or default_cache_dir()
    kernel: KernelInfo | None = None
    if args.kernel_image:
        image = Path(args.kernel_image)
    else:
        kernel = get_kernel(args.kernel, cache)
        image = kernel.image
        print(f"kernel: {kernel.package} {kernel.package_version}", file=sys.stderr)

    feature_sets: list[FeatureSet] | None = None
    if args.cases_from_recording:
        ref = load_recording(args.cases_from_recording)
        cases = [c.to_case() for c in ref.cases]
        feature_sets = [features_of_key(k) for k in ref.feature_sets]
    elif args.cases:
        cases = read_cases(Path(args.cases))
    else:
        cases = generate_cases(parse_feature_sets(args.features))
    if args.features and not args.cases_from_recording:
        feature_sets = parse_feature_sets(args.features)
        keep = set(feature_sets)
        cases = [c for c in cases if c.features in keep]
    cases = sample(cases, args.sample)
    if args.migrate_from:
        sources = migration_sources([load_recording(p) for p in args.migrate_from])
        cases += migration_cases(sources)
    if feature_sets is None:
        feature_sets = list(dict.fromkeys(c.features for c in cases if c.seq is None)) or list(DEFAULT_FEATURE_SETS)

    print(f"booting -cpu {args.cpu} with {len(cases)} cases in {len(feature_sets)} feature sets", file=sys.stderr)
    t0 = time.monotonic()
    rec = run_cases(image, args.cpu, cases, feature_sets, kernel=kernel, cache_dir=cache, timeout=args.timeout)
    save_recording(rec, Path(args.output))
    t = rec.timing
    print(
        f"recorded {t['cases']} cases from {rec.kernel['release']} -cpu {args.cpu} in"
        f" {time.monotonic() - t0:.1f} s (boot {t['boot_seconds']} s, probe {t['probe_seconds']} s,"
        f" {t['cases_per_second']} cases/s) -> {args.output}",
        file=sys.stderr,
    )
    for key, fs in rec.feature_sets.items():
        if not fs.accepted:
            print(
                f"  feature set {key}: refused (init {fs.init_errno}, finalize {fs.finalize_errno},"
                f" vgic {fs.vgic_errno}, writable_imp_id {fs.imp_id_errno})",
                file=sys.stderr,
            )
    if args.compare:
        return _report(compare_recordings(load_recording(args.compare), rec), args.compare)
    return 0


def cmd_record_all(args: argparse.Namespace) -> int:
    """Regenerate the recording set: for each kernel, every CPU's standard cases plus
    migrations from every other CPU's defaults on the same kernel (CPUs without a
    recording yet get a quick defaults-only boot first, so the set does not depend on
    the order it is made in)."""
    cache = args.cache_dir or default_cache_dir()
    out_dir = Path(args.dir)
    kernels = [k.strip() for k in args.kernels.split(",")] if args.kernels else list(RECORDED_KERNELS)
    cpus = [c.strip() for c in args.cpus.split(",")] if args.cpus else list(RECORDED_CPUS)
    all_cpus = list(dict.fromkeys([*cpus, *RECORDED_CPUS]))
    failures = 0
    for spec in kernels:
        kernel = get_kernel(spec, cache)
        version = kernel.package_version.split("-")[0].split("~")[0]
        existing = {cpu: out_dir / f"{version}_{cpu}.json.gz" for cpu in all_cpus}
        todo = [c for c in cpus if not (args.missing and existing[c].exists())]
        if not todo:
            continue
        defaults: dict[str, Recording] = {}
        for cpu in all_cpus:
            if existing[cpu].exists():
                defaults[cpu] = load_recording(existing[cpu])
            elif cpu in cpus:
                print(f"[{version} {cpu}] defaults-only boot", file=sys.stderr)
                defaults[cpu] = run_cases(kernel.image, cpu, [], MIGRATION_FEATURE_SETS, kernel=kernel, cache_dir=cache)
        for cpu in todo:
            sources = migration_sources([defaults[c] for c in all_cpus if c != cpu and c in defaults])
            cases = generate_cases(DEFAULT_FEATURE_SETS, migrations=sources)
            t0 = time.monotonic()
            try:
                rec = run_cases(kernel.image, cpu, cases, DEFAULT_FEATURE_SETS, kernel=kernel, cache_dir=cache)
            except OracleError as e:
                print(f"[{version} {cpu}] FAILED: {e}", file=sys.stderr)
                failures += 1
                continue
            path = out_dir / recording_name(rec)
            save_recording(rec, path)
            defaults[cpu] = rec
            print(
                f"[{version} {cpu}] {rec.timing['cases']} cases, {len(rec.sequences)} migrations, boot"
                f" {rec.timing['boot_seconds']} s, total {time.monotonic() - t0:.1f} s -> {path}"
                f" ({path.stat().st_size // 1024} KiB)",
                file=sys.stderr,
            )
    return 1 if failures else 0


#: Kernels whose firmware pseudo-register restores are recorded (tests/oracle/firmware/): the
#: release of each modelled line's tables (cpumodel/data/errata/<line>.json, judged by the model), and
#: the other kernels of RECORDED_KERNELS (6.16 and 7.0 have no tables; 6.17.13 and 6.19.14 must answer
#: as their line's release does).
FIRMWARE_KERNELS: tuple[str, ...] = (
    "6.1.0-50-arm64", "6.12.117+deb13", "6.16.12+deb13", "6.17.8+deb13", "6.17.13+deb13", "6.18.15+deb13",
    "6.19.11+deb13", "6.19.14+deb13", "7.0.13+deb13", "7.1.13+deb13", "7.2.13+deb14", "7.3.4+deb13",
)
FIRMWARE_DIR = Path("tests/oracle/firmware")


def cmd_record_firmware(args: argparse.Namespace) -> int:
    """Record the firmware pseudo-register restores (cpumodel/oracle/firmware.py) of kernels x CPUs."""
    from cpumodel.oracle import firmware

    cache = args.cache_dir or default_cache_dir()
    kernels = [k.strip() for k in args.kernels.split(",")] if args.kernels else list(FIRMWARE_KERNELS)
    failures = 0
    for spec in kernels:
        kernel = get_kernel(spec, cache)
        for cpu in [c.strip() for c in args.cpus.split(",")]:
            try:
                rec = firmware.record(kernel.image, cpu, kernel=kernel, cache_dir=cache)
            except OracleError as e:
                print(f"[{spec} {cpu}] FAILED: {e}", file=sys.stderr)
                failures += 1
                continue
            path = Path(args.dir) / f"{rec.kernel_version}_{cpu}.json.gz"
            if args.output:
                path = Path(args.output)
            firmware.save(rec, path)
            n = len(rec.restores())
            print(f"[{rec.kernel_version} {cpu}] {n} firmware restores, boot {rec.probe['boot_seconds']} s"
                  f" -> {path}", file=sys.stderr)
    return 1 if failures else 0


def cmd_firmware_check(args: argparse.Namespace) -> int:
    """A firmware recording judged by cpumodel's model (check_model F001), and compared with another."""
    import tempfile

    from cpumodel.oracle import firmware
    from tools.oracle import firmware_check

    rec = firmware.load(Path(args.recording))
    if firmware_check.line_of(rec) is None:
        print(f"{args.recording}: Linux {rec.kernel_version} is not the release of a modelled line", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="cpumodel-fwcheck-") as tmp:
        judged, total, bad = firmware_check.replay([Path(args.recording)], Path(tmp))
    for line in bad:
        print("  " + line, file=sys.stderr)
    print(f"firmware-check: {judged - len(bad)} of {total} recorded restores as the model says"
          f" (Linux {rec.kernel_version}, -cpu {rec.cpu})", file=sys.stderr)
    status = 1 if bad else 0
    if args.compare:
        status = max(status, _report(firmware_check.compare(firmware.load(Path(args.compare)), rec), args.compare))
    return status


def cmd_image(args: argparse.Namespace) -> int:
    """Print the path of a kernel's unpacked Image (downloading it first if needed)."""
    print(get_kernel(args.kernel, args.cache_dir).image)
    return 0


def cmd_capture_compare(args: argparse.Namespace) -> int:
    from tools.oracle.capture_live import compare_files

    diffs, agreed = compare_files(Path(args.console), Path(args.recording))
    for line in agreed:
        print(f"capture == probe: {line}", file=sys.stderr)
    return _report(diffs, args.recording)


def _report(diffs: list[str], against: str) -> int:
    if diffs:
        print(f"DIFFERENT from {against}:", file=sys.stderr)
        for d in diffs:
            print("  " + d, file=sys.stderr)
        return 1
    print(f"same as {against}", file=sys.stderr)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    return _report(compare_recordings(load_recording(args.expected), load_recording(args.actual)), args.expected)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m tools.oracle", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="cache for apt lists, kernels and the probe (default $XDG_CACHE_HOME/cpumodel/oracle)",
    )
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("setup", help="apt-get install the host tools (idempotent); optionally fetch kernels")
    s.add_argument("--kernel", action="append", help="also download this kernel (repeatable)")
    s.set_defaults(func=cmd_setup)

    s = sub.add_parser("list-kernels", help="list the Debian arm64 kernels apt can fetch")
    s.set_defaults(func=cmd_list_kernels)

    s = sub.add_parser("gen-cases", help="write the standard case set as JSON lines")
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--features", help="comma-separated feature sets, e.g. none,pmu,pmu+sve (default: standard)")
    s.add_argument("--registers", help="comma-separated register names (default: the whole ID space + extras)")
    s.add_argument("--no-after-run", action="store_true", help="leave out the after-run cases")
    s.add_argument("--sample", type=int, help="keep an even spread of N cases")
    s.set_defaults(func=cmd_gen_cases)

    s = sub.add_parser("record", help="boot a Debian kernel in QEMU and record KVM's answers")
    k = s.add_mutually_exclusive_group(required=True)
    k.add_argument("--kernel", help="Debian kernel: 6.12.117+deb13, 7.3.4+deb13, or a prefix like 7.3")
    k.add_argument("--kernel-image", help="an arm64 Image file to boot instead")
    s.add_argument("--cpu", required=True, help="QEMU CPU model: max, neoverse-n1, cortex-a72, ...")
    c = s.add_mutually_exclusive_group()
    c.add_argument("--cases", help="JSON-lines case file (default: the generated standard set)")
    c.add_argument("--cases-from-recording", help="replay the cases (and feature sets) of a recording")
    s.add_argument("--features", help="restrict to these feature sets (comma-separated keys)")
    s.add_argument("--sample", type=int, help="keep an even spread of N cases")
    s.add_argument("--timeout", type=float, help="seconds for the whole QEMU run (default: from the case count)")
    s.add_argument("--compare", help="compare with this recording; exit 1 if they differ")
    s.add_argument(
        "--migrate-from",
        action="append",
        metavar="REC",
        help="add migration sequences: this recording's defaults written in order (repeatable)",
    )
    s.add_argument("-o", "--output", required=True)
    s.set_defaults(func=cmd_record)

    s = sub.add_parser("record-all", help="regenerate the committed recording set (kernels x CPUs)")
    s.add_argument("--kernels", help=f"comma-separated kernel specs (default: {','.join(RECORDED_KERNELS)})")
    s.add_argument("--cpus", help=f"comma-separated QEMU CPUs (default: {','.join(RECORDED_CPUS)})")
    s.add_argument("--dir", default=str(RECORDINGS_DIR), help="where the recordings are (default %(default)s)")
    s.add_argument("--missing", action="store_true", help="only record kernel/CPU pairs that have no file yet")
    s.set_defaults(func=cmd_record_all)

    s = sub.add_parser("record-firmware", help="record firmware pseudo-register restores (kernels x CPUs)")
    s.add_argument("--kernels", help=f"comma-separated kernel specs (default: {','.join(FIRMWARE_KERNELS)})")
    s.add_argument("--cpus", default="max", help="comma-separated QEMU CPUs (default %(default)s)")
    s.add_argument("--dir", default=str(FIRMWARE_DIR), help="where the recordings go (default %(default)s)")
    s.add_argument("-o", "--output", help="write this one file instead (one kernel, one CPU)")
    s.set_defaults(func=cmd_record_firmware)

    s = sub.add_parser("firmware-check", help="judge a firmware recording with cpumodel's model (F001)")
    s.add_argument("recording")
    s.add_argument("--compare", help="also compare with this recording of the same kernel and CPU")
    s.set_defaults(func=cmd_firmware_check)

    s = sub.add_parser("image", help="print the path of a Debian kernel's unpacked Image (fetching it)")
    s.add_argument("--kernel", required=True)
    s.set_defaults(func=cmd_image)

    s = sub.add_parser(
        "capture-compare", help="compare `cpumodel capture` output (capture_arm64_check.sh --vm) with a recording"
    )
    s.add_argument("console", help="the console text of the --vm boot (=== VALUES lines)")
    s.add_argument("recording", help="the recording of the same kernel and QEMU CPU")
    s.set_defaults(func=cmd_capture_compare)

    s = sub.add_parser("compare", help="compare two recordings of the same kernel/CPU")
    s.add_argument("expected")
    s.add_argument("actual")
    s.set_defaults(func=cmd_compare)

    args = p.parse_args(argv)
    try:
        return int(args.func(args))
    except OracleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as e:
        print(f"error: {' '.join(map(str, e.cmd))} failed with exit code {e.returncode}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    if not shutil.which("dpkg-query"):
        print("warning: not a Debian system; `setup` will not work", file=sys.stderr)
    sys.exit(main())
