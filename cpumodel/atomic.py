"""Atomic output: write to a temporary file beside the target, then rename over it."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile

from cpumodel.errors import CpumodelError, Location


def write_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one, never half.

    A regular file (or a symlink to one: the link is kept, its target replaced) gets a
    temporary file beside it, renamed over it once complete; the new file keeps the old
    one's permissions, or gets the umask's. An existing non-regular target (``/dev/null``,
    ``/dev/stdout``, a FIFO) is written directly: renaming over a device node would
    replace it with a regular file.
    """
    try:
        st: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise CpumodelError(f"cannot write output: {e.strerror}", Location(path)) from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise CpumodelError("cannot write output: is a directory", Location(path))
    data = text.encode("utf-8", "surrogateescape")
    if st is not None and not stat.S_ISREG(st.st_mode):
        _write_stream(path, data)
        return
    target = os.path.realpath(path)  # through symlinks: keep the link, replace what it points to
    directory = os.path.dirname(target)
    if not os.path.isdir(directory):
        raise CpumodelError(f"cannot write output: directory {directory} does not exist", Location(path))
    if st is not None:
        mode = stat.S_IMODE(st.st_mode)
    else:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    try:
        fd, tmp = tempfile.mkstemp(prefix=".cpumodel-", suffix=".tmp", dir=directory)
    except OSError as e:
        raise CpumodelError(f"cannot write output: {e.strerror}", Location(path)) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as e:
        _unlink_quietly(tmp)
        raise CpumodelError(f"cannot write output: {e.strerror}", Location(path)) from None
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _write_stream(path: str, data: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | getattr(os, "O_NOCTTY", 0))
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    except OSError as e:
        raise CpumodelError(f"cannot write output: {e.strerror}", Location(path)) from None


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
