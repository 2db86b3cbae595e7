"""A pure-Python writer for Linux initramfs archives (cpio "newc", optionally gzip).

Format: Documentation/driver-api/early-userspace/buffer-format.rst in the kernel tree:
each entry is a 110-byte ASCII header ("070701" + 13 eight-digit hex fields), the
NUL-terminated name padded to a multiple of 4, then the data padded to a multiple of 4;
the archive ends with an entry named "TRAILER!!!".
"""

from __future__ import annotations

import gzip
import stat
from dataclasses import dataclass

NEWC_MAGIC = b"070701"


@dataclass(frozen=True)
class CpioEntry:
    """One archive member. ``mode`` includes the file type bits (e.g. stat.S_IFREG | 0o755)."""

    name: str
    mode: int
    data: bytes = b""
    rdev_major: int = 0
    rdev_minor: int = 0


def regular(name: str, data: bytes, perm: int = 0o644) -> CpioEntry:
    return CpioEntry(name, stat.S_IFREG | perm, data)


def directory(name: str, perm: int = 0o755) -> CpioEntry:
    return CpioEntry(name, stat.S_IFDIR | perm)


def chardev(name: str, major: int, minor: int, perm: int = 0o600) -> CpioEntry:
    return CpioEntry(name, stat.S_IFCHR | perm, b"", major, minor)


def _pad4(n: int) -> bytes:
    return b"\0" * ((4 - n % 4) % 4)


def _entry(ino: int, entry: CpioEntry) -> bytes:
    name = entry.name.lstrip("/").encode() + b"\0"
    nlink = 2 if stat.S_ISDIR(entry.mode) else 1
    fields = (
        ino,
        entry.mode,
        0,  # uid
        0,  # gid
        nlink,
        0,  # mtime (fixed: reproducible archives)
        len(entry.data),
        0,  # dev major
        0,  # dev minor
        entry.rdev_major,
        entry.rdev_minor,
        len(name),
        0,  # check
    )
    header = NEWC_MAGIC + b"".join(b"%08x" % f for f in fields)
    out = header + name + _pad4(len(header) + len(name)) + entry.data + _pad4(len(entry.data))
    return out


def newc_archive(entries: list[CpioEntry]) -> bytes:
    """The uncompressed newc archive of ``entries`` (in order) with its trailer."""
    parts = [_entry(i + 1, e) for i, e in enumerate(entries)]
    parts.append(_entry(0, CpioEntry("TRAILER!!!", 0)))
    return b"".join(parts)


def gzip_newc_archive(entries: list[CpioEntry], level: int = 6) -> bytes:
    """The gzip-compressed newc archive (what QEMU's -initrd and the kernel accept)."""
    return gzip.compress(newc_archive(entries), compresslevel=level, mtime=0)
