"""Boot a kernel + initramfs in qemu-system-aarch64 (TCG, EL2) and capture the console."""

from __future__ import annotations

import os
import re
import selectors
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cpumodel.oracle.console import MARKER
from cpumodel.oracle.errors import BootTimeout, OracleError, ToolMissing

QEMU = "qemu-system-aarch64"
MACHINE = "virt,virtualization=on,gic-version=3"
KERNEL_CMDLINE = "console=ttyAMA0 panic=-1 quiet"


@dataclass(frozen=True)
class BootResult:
    console: str
    stderr: str
    returncode: int
    seconds: float  # QEMU start to exit
    first_marker_seconds: float | None  # QEMU start to the probe's first line


def qemu_binary() -> str:
    exe = shutil.which(QEMU)
    if not exe:
        raise ToolMissing(QEMU, "qemu-system-arm")
    return exe


def qemu_version() -> str:
    out = subprocess.run(
        [qemu_binary(), "--version"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
    ).stdout
    m = re.search(r"version\s+(\S+)", out)
    return m.group(1) if m else out.strip().splitlines()[0] if out.strip() else "unknown"


def qemu_command(kernel: Path, initrd: Path, cpu: str, memory_mb: int = 1024) -> list[str]:
    return [
        qemu_binary(),
        "-M",
        MACHINE,
        "-cpu",
        cpu,
        "-m",
        str(memory_mb),
        "-smp",
        "1",
        "-nodefaults",
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
        "-kernel",
        str(kernel),
        "-initrd",
        str(initrd),
        "-append",
        KERNEL_CMDLINE,
    ]


def boot(kernel: Path, initrd: Path, cpu: str, timeout: float, memory_mb: int = 1024) -> BootResult:
    """Run QEMU until it exits (the probe powers off) or ``timeout`` seconds pass."""
    cmd = qemu_command(kernel, initrd, cpu, memory_mb)
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    out, err = bytearray(), bytearray()
    first_marker: float | None = None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, out)
    sel.register(proc.stderr, selectors.EVENT_READ, err)
    marker = MARKER.encode()
    try:
        while sel.get_map():
            left = timeout - (time.monotonic() - start)
            if left <= 0:
                raise BootTimeout(
                    f"QEMU (-cpu {cpu}) did not finish within {timeout:.0f} s",
                    hint="the guest hung or the case list is too long for the timeout",
                    console_tail=_tail(out.decode(errors="replace")),
                )
            for key, _ in sel.select(timeout=min(left, 1.0)):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                buf: bytearray = key.data
                buf += chunk
                if first_marker is None and buf is out and marker in out[-len(chunk) - len(marker) :]:
                    first_marker = time.monotonic() - start
        rc = proc.wait(timeout=max(1.0, timeout - (time.monotonic() - start)))
    except subprocess.TimeoutExpired:
        raise BootTimeout(
            f"QEMU (-cpu {cpu}) did not exit within {timeout:.0f} s", console_tail=_tail(out.decode(errors="replace"))
        ) from None
    finally:
        sel.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    seconds = time.monotonic() - start
    stderr = err.decode(errors="replace")
    if rc != 0 and not out:
        raise OracleError(f"QEMU failed to start (exit {rc}): {stderr.strip()[-800:]}")
    return BootResult(out.decode(errors="replace"), stderr, rc, seconds, first_marker)


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.replace("\r", "").splitlines()[-lines:])
