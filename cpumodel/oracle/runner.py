"""run_cases(): boot a real KVM host in QEMU, run the probe, and build a Recording."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cpumodel.oracle.build import build_initramfs, build_probe, probe_hash
from cpumodel.oracle.cases import (
    DEFAULT_FEATURE_SETS,
    Case,
    CaseFile,
    FeatureSet,
    FieldValue,
    MaskedValue,
    check_features,
    encode_case_file,
    feature_key,
)
from cpumodel.oracle.console import ProbeOutput, check_complete, errno_name, parse_console
from cpumodel.oracle.errors import OracleError, ProbeCrash
from cpumodel.oracle.kernel import ARM64_IMAGE_MAGIC, KernelInfo, default_cache_dir
from cpumodel.oracle.qemu import MACHINE, boot, qemu_version
from cpumodel.oracle.recording import CaseResult, FeatureSetRecord, Recording, SequenceRecord
from cpumodel.oracle.sysregs import (
    ORACLE_REGISTERS,
    encoding_of_id,
    encoding_of_mask_index,
    mask_index,
    one_reg_id,
    sysreg_name,
)

FNV_OFFSET = 14695981039346656037
FNV_PRIME = 1099511628211


def fnv1a_values(values: Iterable[int]) -> int:
    """The probe's per-batch hash of the values it wrote (FNV-1a over little-endian bytes)."""
    h = FNV_OFFSET
    for v in values:
        for k in range(8):
            h ^= (v >> (8 * k)) & 0xFF
            h = (h * FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return h


def _i(msg: dict[str, object], key: str, default: int | None = None) -> int:
    """An integer field of a probe message (ProbeCrash if missing or malformed)."""
    v = msg.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int):
        raise ProbeCrash(f"probe message {msg.get('t')!r} has a bad {key!r}: {v!r}")
    return v


def _h(msg: dict[str, object], key: str) -> int:
    """A "0x..." field of a probe message."""
    v = msg.get(key)
    try:
        return int(str(v), 16)
    except ValueError:
        raise ProbeCrash(f"probe message {msg.get('t')!r} has a bad {key!r}: {v!r}") from None


def _attempted(e: int) -> int | str | None:
    """The probe's -1 means "not attempted" (an earlier step failed): None."""
    return None if e < 0 else errno_name(e)


def default_timeout(n_cases: int, n_blocks: int) -> float:
    """Generous: boot (~10-30 s under TCG) + 10 s per VM + 5 ms per case."""
    return 180.0 + 10.0 * n_blocks + 0.005 * n_cases


def run_cases(
    kernel_image: Path,
    cpu: str,
    cases: Sequence[Case],
    feature_sets: Sequence[Iterable[str]] | None = None,
    *,
    kernel: KernelInfo | None = None,
    cache_dir: Path | None = None,
    timeout: float | None = None,
    memory_mb: int = 1024,
) -> Recording:
    """Boot ``kernel_image`` under ``qemu-system-aarch64 -cpu <cpu>`` and run ``cases``.

    ``feature_sets`` are the vCPU-feature sets to create VMs for, in order (default: those
    the cases use, or the standard seven if there are no cases); every case's feature set
    must be among them. Defaults and writable masks are recorded for each set even without
    cases. A set whose KVM_ARM_VCPU_INIT is refused is recorded with its init_errno and its
    cases are left out of ``Recording.cases`` (counted in ``skipped_cases``).

    Raises OracleError (ToolMissing, BootTimeout, ProbeCrash, ...) with a readable message.
    """
    cache = cache_dir or default_cache_dir()
    if feature_sets is None:
        fsl: list[FeatureSet] = list(dict.fromkeys(c.features for c in cases if c.seq is None))
        if not cases:
            fsl = list(DEFAULT_FEATURE_SETS)
    else:
        fsl = [check_features(fs) for fs in feature_sets]
    _check_image(Path(kernel_image))
    limit = timeout if timeout is not None else default_timeout(len(cases), len(fsl))
    # the probe's own watchdog fires first, so a hang inside the guest gets a readable message
    case_file = encode_case_file(cases, fsl, watchdog_seconds=max(30, int(limit) - 30))
    probe = build_probe(cache)
    initrd_bytes = build_initramfs(probe, case_file.text)
    qver = qemu_version()

    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cpumodel-oracle-") as tmp:
        initrd = Path(tmp) / "initrd.gz"
        initrd.write_bytes(initrd_bytes)
        result = boot(Path(kernel_image), initrd, cpu, limit, memory_mb)
    total = time.monotonic() - t0

    out = parse_console(result.console)
    done = check_complete(out, result.console)
    hello = out.first("hello") or {}
    blocks = _blocks(out, case_file)
    _read_blocks(out, blocks)
    results = _case_results(out, cases, case_file, blocks)
    return Recording(
        kernel=_kernel_meta(hello, kernel),
        qemu={"version": qver, "cpu": cpu, "machine": MACHINE, "memory_mb": memory_mb},
        feature_sets={feature_key(b.rec.features): b.rec for b in blocks.values() if b.seq is None},
        sequences=_sequences(blocks),
        cases=results,
        timing=_timing(done, result.first_marker_seconds, total, len(results)),
        probe=_probe_meta(hello, out),
        kernel_warnings=[str(m.get("text")) for m in out.of_type("dmesg")],
    )


def _check_image(kernel_image: Path) -> None:
    """OracleError unless ``kernel_image`` is an arm64 kernel Image."""
    if not kernel_image.is_file():
        raise OracleError(f"kernel image {kernel_image} does not exist")
    with kernel_image.open("rb") as f:
        if f.read(0x40)[0x38:0x3C] != ARM64_IMAGE_MAGIC:
            raise OracleError(
                f"{kernel_image} is not an arm64 kernel Image (no ARM\\x64 magic at 0x38)",
                hint="use --kernel VERSION to fetch a Debian kernel, or unpack vmlinuz first",
            )


@dataclass
class _Block:
    """One VM the probe created (a feature set, or a sequence): its record and its defaults by register id."""

    rec: FeatureSetRecord
    defaults: dict[int, int | None] = field(default_factory=dict)
    seq: str | None = None  # the sequence this VM ran (writes kept), None for a feature set's VM


def _blocks(out: ProbeOutput, case_file: CaseFile) -> dict[int, _Block]:
    """The probe's "fs" messages, one per block (feature sets, then sequences) in order: how far
    each VM's set-up got."""
    blocks: dict[int, _Block] = {}
    fs_msgs = out.of_type("fs")
    if len(fs_msgs) != len(case_file.blocks):
        raise ProbeCrash(f"the probe reported {len(fs_msgs)} blocks, expected {len(case_file.blocks)}")
    for msg, (fs, seq) in zip(fs_msgs, case_file.blocks, strict=True):
        b = _i(msg, "b")
        fin = _i(msg, "finalize_errno")
        imp = _i(msg, "imp_id_errno", -1)
        if _i(msg, "init_errno") < 0 and imp <= 0:
            raise ProbeCrash("KVM_ARM_VCPU_INIT was not attempted")
        blocks[b] = _Block(FeatureSetRecord(
            features=fs,
            init_errno=_attempted(_i(msg, "init_errno")),
            imp_id_errno=_attempted(imp) if "writable_imp_id" in fs else None,
            finalize_errno=_attempted(fin) if "sve" in fs else None,
            vgic_errno=_attempted(_i(msg, "vgic_errno", -1)) if "vgic" in fs else None,
            masks_errno=None,  # set by the "masks" message (none for a refused VM)
        ), seq=seq)
        if _i(msg, "preferred_target_errno"):
            err = errno_name(_i(msg, "preferred_target_errno"))
            raise ProbeCrash(f"KVM_ARM_PREFERRED_TARGET failed: {err}")
    return blocks


def _read_blocks(out: ProbeOutput, blocks: dict[int, _Block]) -> None:
    """Each VM's defaults ("get"), writable masks ("masks"), KVM_RUN outcome ("run") and drift."""
    for msg in out.of_type("get"):
        block = blocks[_i(msg, "b")]
        reg_id = _h(msg, "id")
        name = sysreg_name(encoding_of_id(reg_id))
        e = _i(msg, "e")
        value = None if e else _h(msg, "v")
        block.rec.defaults[name] = value
        block.defaults[reg_id] = value
        if e:
            block.rec.get_errno[name] = errno_name(e)
    for msg in out.of_type("masks"):
        _read_masks(msg, blocks[_i(msg, "b")].rec)
    for msg in out.of_type("run"):
        b = _i(msg, "b")
        run: dict[str, object] = {}
        for key, val in msg.items():
            if key not in ("n", "t", "b"):
                run[key] = errno_name(val) if key.endswith("errno") and isinstance(val, int) else val
        blocks[b].rec.run = run
    for msg in out.of_type("drift"):
        b = _i(msg, "b")
        reg_id = _h(msg, "id")
        blocks[b].rec.drift.append(
            {
                "reg": sysreg_name(encoding_of_id(reg_id)),
                "when": msg.get("when"),
                "errno": errno_name(_i(msg, "e")),
                "value": msg.get("v"),
            }
        )


def _read_masks(msg: dict[str, object], rec: FeatureSetRecord) -> None:
    """KVM_ARM_GET_REG_WRITABLE_MASKS: the oracle's registers first, then any other index reported."""
    rec.masks_errno = _attempted(_i(msg, "e"))
    if rec.masks_errno != 0:  # not attempted (Linux < 6.7: no such ioctl) or refused
        return
    raw = msg.get("m") or {}
    assert isinstance(raw, dict)
    masks = {int(k): int(str(v), 16) for k, v in raw.items()}
    for enc in ORACLE_REGISTERS:
        idx = mask_index(enc)
        if idx is not None:
            rec.writable_masks[sysreg_name(enc)] = masks.pop(idx, 0)
    for idx, mval in sorted(masks.items()):
        rec.writable_masks[sysreg_name(encoding_of_mask_index(idx))] = mval


def _case_errnos(out: ProbeOutput, cases: Sequence[Case], case_file: CaseFile,
                 blocks: dict[int, _Block], block_of: dict[tuple[FeatureSet, str | None], int]) -> list[int | None]:
    """Each sent case's errno (None: not run), checking the probe wrote the values this side computed."""
    n = len(case_file.order)
    errs: list[int | None] = [None] * n
    for msg in out.of_type("res"):
        start = _i(msg, "i")
        es = msg["e"]
        assert isinstance(es, list)
        values: list[int] = []
        for j, e in enumerate(es):
            k = start + j
            if not 0 <= k < n:
                raise ProbeCrash(f"the probe reported case {k}, but only {n} were sent")
            errs[k] = int(e)
            case = cases[case_file.order[k]]
            b = block_of[(case.features, case.seq)]
            values.append(case.resolve(blocks[b].defaults.get(case.reg_id)))
        if f"{fnv1a_values(values):016x}" != msg.get("h"):
            raise ProbeCrash(
                f"values written for cases {start}..{start + len(es) - 1} differ from"
                " what this side computed (probe/resolver mismatch)"
            )
    return errs


def _case_results(out: ProbeOutput, cases: Sequence[Case], case_file: CaseFile,
                  blocks: dict[int, _Block]) -> list[CaseResult]:
    """The cases' results in the caller's order; a refused VM's cases are counted as skipped."""
    block_of = {(block.rec.features, block.seq): b for b, block in blocks.items()}
    errs = _case_errnos(out, cases, case_file, blocks, block_of)
    restore_by_case = {_i(m, "i"): m for m in out.of_type("restore")}
    results: list[tuple[int, CaseResult]] = []
    for k, idx in enumerate(case_file.order):
        case = cases[idx]
        block = blocks[block_of[(case.features, case.seq)]]
        rec = block.rec
        got = errs[k]
        if got is None:
            if rec.accepted:
                raise ProbeCrash(f"the probe reported no result for case {k} ({case.reg})")
            rec.skipped_cases += 1
            continue
        value = case.resolve(block.defaults.get(case.reg_id))
        request = case.value_json() if isinstance(case.value, (FieldValue, MaskedValue)) else None
        results.append(
            (
                idx,
                CaseResult(
                    case.reg, case.encoding, value, case.features, case.after_run, errno_name(got), request, case.seq
                ),
            )
        )
        if k in restore_by_case:
            rmsg = restore_by_case[k]
            rec.restore_failures.append(
                {"reg": case.reg, "value": f"{value:#018x}", "errno": errno_name(_i(rmsg, "e"))}
            )
    results.sort(key=lambda r: r[0])  # the caller's order
    return [r for _, r in results]


def _sequences(blocks: dict[int, _Block]) -> dict[str, SequenceRecord]:
    """Each sequence's VM: how far its set-up got and the registers that differ from the defaults at the end."""
    out: dict[str, SequenceRecord] = {}
    for block in blocks.values():
        if block.seq is None:
            continue
        r = block.rec
        final = [{"reg": d["reg"], "value": d["value"]} for d in r.drift if d["when"] == "end" and not d["errno"]]
        out[block.seq] = SequenceRecord(
            r.features, r.init_errno, r.finalize_errno, r.vgic_errno, r.imp_id_errno, final, r.skipped_cases
        )
    return out


def _timing(done: dict[str, object], first_marker_seconds: float | None, total: float,
            n_done: int) -> dict[str, object]:
    ps = done.get("probe_seconds", 0.0)
    probe_seconds = float(ps) if isinstance(ps, (int, float)) else 0.0
    return {
        "boot_seconds": round(first_marker_seconds or 0.0, 3),
        "guest_uptime_at_init": done.get("uptime_at_start"),
        "probe_seconds": round(probe_seconds, 3),
        "total_seconds": round(total, 3),
        "cases": n_done,
        "cases_per_second": round(n_done / probe_seconds, 1) if probe_seconds > 0 else None,
    }


def _kernel_meta(hello: dict[str, object], kernel: KernelInfo | None) -> dict[str, object]:
    release = str(hello.get("release", ""))
    return {
        "release": release,
        "version": ".".join(release.split(".")[:2]),
        "uname_version": hello.get("version"),
        "debian_package": kernel.package if kernel else None,
        "package_version": kernel.package_version if kernel else None,
    }


def _probe_meta(hello: dict[str, object], out: ProbeOutput) -> dict[str, object]:
    probe_meta = {k: v for k, v in hello.items() if k not in ("n", "t", "release", "version")}
    probe_meta["source_hash"] = probe_hash()
    probe_meta["console_noise_lines"] = out.noise_lines
    return probe_meta


__all__ = ["fnv1a_values", "one_reg_id", "run_cases"]
