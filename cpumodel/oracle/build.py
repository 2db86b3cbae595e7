"""Build the guest side: compile the probe (cached by source hash) and pack the initramfs."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from cpumodel.oracle.cpio import chardev, directory, gzip_newc_archive, regular
from cpumodel.oracle.errors import OracleError, ToolMissing

CROSS_GCC = "aarch64-linux-gnu-gcc"
CFLAGS = ("-static", "-O2", "-s", "-Wall", "-Wextra")


def probe_source() -> str:
    """The C source of the probe (package data cpumodel/oracle/probe.c)."""
    return resources.files("cpumodel.oracle").joinpath("probe.c").read_text()


def probe_hash() -> str:
    h = hashlib.sha256()
    h.update(probe_source().encode())
    h.update(" ".join((CROSS_GCC, *CFLAGS)).encode())
    return h.hexdigest()[:16]


def build_probe(cache_dir: Path) -> Path:
    """Compile probe.c with aarch64-linux-gnu-gcc -static; reuse a binary of the same source."""
    out = cache_dir / "probe" / probe_hash() / "probe"
    if out.is_file():
        return out
    gcc = shutil.which(CROSS_GCC)
    if not gcc:
        raise ToolMissing(CROSS_GCC, "gcc-aarch64-linux-gnu")
    out.parent.mkdir(parents=True, exist_ok=True)
    src = out.parent / "probe.c"
    src.write_text(probe_source())
    tmp = out.with_suffix(".tmp")
    try:
        proc = subprocess.run(
            [gcc, *CFLAGS, "-o", str(tmp), str(src)],
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise OracleError("compiling the probe took more than 300 s") from None
    if proc.returncode != 0:
        err = proc.stderr.strip()
        if ("No such file or directory" in err and ".h" in err) or "cannot find -lc" in err:
            raise ToolMissing(
                "the arm64 C library for cross-compiling", "libc6-dev-arm64-cross", f": {err.splitlines()[0]}"
            )
        raise OracleError(f"compiling the probe failed:\n{err[-2000:]}")
    tmp.replace(out)
    return out


def build_initramfs(probe: Path, case_text: str, level: int = 6) -> bytes:
    """A gzip newc initramfs: /init (the probe), /cases.txt, /dev/console, /proc."""
    entries = [
        directory("dev"),
        chardev("dev/console", 5, 1),
        directory("proc"),
        regular("init", probe.read_bytes(), 0o755),
        regular("cases.txt", case_text.encode()),
    ]
    return gzip_newc_archive(entries, level=level)
