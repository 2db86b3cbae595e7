"""Checking many profiles in worker processes, with the output of one process.

``check_paths(..., jobs=N)`` hands slices of the file list to N forked workers. Each worker
resolves and checks its slices with its own caches, so profiles that share work share it inside
a worker: a base profile is resolved once per worker, and the feature-constraint verdict is
memoised for profiles whose ID fields agree (slices are contiguous, and files that sit together
usually share a base). Per file a worker sends back its findings or its error; the
parent passes them on in the order of the file list, so the output is the same as one process's.
The default is one worker per idle usable core; below ``MIN_FILES`` files, with one idle core, or
where ``fork`` is not available, the check runs in one process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

CHUNK = 8  # files per task at least (a quarter of a worker's share when that is more)
MIN_FILES = 48  # fewer files: one process (starting workers would cost more than it saves)

Outcome = tuple[list[Any] | None, Any]  # (findings, None) or (None, the CpumodelError, with its location)

_JOB: dict[str, Any] = {}  # what every worker checks with (options, search path); inherited on fork


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask, which taskset and cgroups narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def idle_cores() -> int:
    """Usable cores that are not already busy (the 1-minute load average, as ``make -l`` reads it)."""
    cores = usable_cores()
    try:
        busy = round(os.getloadavg()[0])
    except (AttributeError, OSError):
        busy = 0
    return max(1, min(cores, cores - busy + 1))


def workers_for(jobs: int | None, files: int) -> int:
    """How many worker processes to use for ``files`` files (0: check in this process).

    ``jobs`` None or 0: the idle usable cores (on a loaded machine extra processes would only
    add their start-up and duplicate cache work); otherwise exactly ``jobs``."""
    n = idle_cores() if not jobs or jobs < 1 else jobs
    if n <= 1 or files < MIN_FILES:
        return 0
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods():
        return 0
    return min(n, (files + CHUNK - 1) // CHUNK)


def outcomes(paths: list[str], workers: int, opts: Any, search: list[str] | None,
             allow_outside: bool) -> Iterator[Outcome]:
    """Each path's outcome, in the order of ``paths``, computed by ``workers`` forked processes."""
    import multiprocessing

    from cpumodel import regdb
    from cpumodel.features import FeatureModel

    regdb.load()  # loaded once here, shared by the forked workers
    FeatureModel.load()
    _JOB.update(opts=opts, search=search, allow_outside=allow_outside, resolver=None)
    size = max(CHUNK, len(paths) // (4 * workers))  # few, large tasks: less pool traffic, warmer caches
    chunks = [paths[i:i + size] for i in range(0, len(paths), size)]
    ctx = multiprocessing.get_context("fork")
    try:
        with ctx.Pool(workers) as pool:
            for batch in pool.imap(_check_chunk, chunks):
                yield from batch
    finally:
        _JOB.clear()


def _check_chunk(paths: list[str]) -> list[Outcome]:
    from cpumodel.check import check_one
    from cpumodel.resolve import Resolver

    if _JOB["resolver"] is None:
        _JOB["resolver"] = Resolver(_JOB["search"], _JOB["allow_outside"])
    return [check_one(_JOB["resolver"], p, _JOB["opts"]) for p in paths]
