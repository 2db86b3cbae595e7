"""Atomic output: write to a temporary file beside the target, then rename over it."""

from __future__ import annotations

import os
import tempfile

from cpumodel.errors import CpumodelError, Location


def write_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one, never half."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CpumodelError(f"cannot write output: directory {directory} does not exist", Location(path))
    if os.path.isdir(path):
        raise CpumodelError("cannot write output: is a directory", Location(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".cpumodel-", suffix=".tmp", dir=directory)
    except OSError as e:
        raise CpumodelError(f"cannot write output: {e.strerror}", Location(path)) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as e:
        os.unlink(tmp)
        raise CpumodelError(f"cannot write output: {e.strerror}", Location(path)) from None
    except BaseException:
        os.unlink(tmp)
        raise
