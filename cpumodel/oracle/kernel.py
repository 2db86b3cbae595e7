"""Find, download and unpack Debian arm64 kernels (private apt state, no system change).

apt is run with its own options (the system's sources and lists are untouched)::

    -o APT::Architecture=arm64 -o APT::Architectures=arm64
    -o Dir::State::Lists=<cache>/lists -o Dir::Etc::SourceList=<cache>/sources.list
    -o Dir::Etc::SourceParts=/dev/null -o Dir::Cache=<cache>/apt

Up to ~6.15 the kernel is ``boot/vmlinuz-<abi>`` in ``linux-image-<abi>-arm64``; from ~6.16
it is ``usr/lib/modules/<abi>/vmlinuz`` in ``linux-binary-<abi>-arm64`` (linux-image-* is
then a small signed package). Both are handled.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cpumodel.oracle.errors import KernelNotFound, OracleError, ToolMissing

DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SUITES: tuple[str, ...] = ("bookworm", "bookworm-backports", "trixie", "trixie-backports", "sid")
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
LISTS_MAX_AGE = 24 * 3600
APT_TIMEOUT = 900


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cpumodel" / "oracle"


@dataclass(frozen=True)
class KernelInfo:
    """A kernel Image ready for QEMU's -kernel, and where it came from."""

    image: Path
    abi: str  # e.g. "6.12.117+deb13-arm64" (uname -r)
    package: str  # e.g. "linux-image-6.12.117+deb13-arm64"
    package_version: str  # e.g. "6.12.117-1"

    @property
    def version(self) -> str:
        """Major.minor, e.g. "6.12"."""
        return ".".join(self.abi.split(".")[:2])


def _mirror_from_system() -> str:
    """The Debian URI already configured on this machine (deb822 or one-line format)."""
    candidates = [Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")]
    candidates += sorted(Path("/etc/apt/sources.list.d").glob("*")) if Path("/etc/apt/sources.list.d").is_dir() else []
    for path in candidates:
        try:
            text = path.read_text()
        except OSError:
            continue
        for m in re.finditer(r"^\s*URIs:\s*(\S+)", text, re.M):
            if "security" not in m.group(1):
                return m.group(1)
        for m in re.finditer(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text, re.M):
            if "security" not in m.group(1):
                return m.group(1)
    return DEFAULT_MIRROR


class AptCache:
    """apt-get/apt-cache with private state under ``root`` (lists, sources, archives)."""

    def __init__(self, root: Path | None = None, suites: tuple[str, ...] = DEFAULT_SUITES, mirror: str | None = None):
        self.root = (root or default_cache_dir()) / "apt"
        self.suites = suites
        self.mirror = mirror or _mirror_from_system()

    @property
    def options(self) -> list[str]:
        r = self.root
        return [
            "-o",
            "APT::Architecture=arm64",
            "-o",
            "APT::Architectures=arm64",
            "-o",
            f"Dir::State::Lists={r / 'lists'}",
            "-o",
            f"Dir::Etc::SourceList={r / 'sources.list'}",
            "-o",
            "Dir::Etc::SourceParts=/dev/null",
            "-o",
            f"Dir::Cache={r / 'cache'}",
            "-o",
            "Debug::NoLocking=1",
        ]

    def _run(self, tool: str, args: list[str], cwd: Path | None = None) -> str:
        exe = shutil.which(tool)
        if not exe:
            raise ToolMissing(tool, "apt")
        try:
            proc = subprocess.run(
                [exe, *self.options, *args],
                cwd=cwd,
                capture_output=True,
                text=True,
                timeout=APT_TIMEOUT,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise OracleError(f"{tool} {' '.join(args)} did not finish in {APT_TIMEOUT} s") from None
        if proc.returncode != 0:
            raise OracleError(f"{tool} {' '.join(args)} failed: {proc.stderr.strip()[-800:]}")
        return proc.stdout

    def update(self, force: bool = False) -> None:
        """Write the private sources.list and run ``apt-get update`` if lists are stale."""
        (self.root / "lists" / "partial").mkdir(parents=True, exist_ok=True)
        (self.root / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
        sources = "".join(f"deb [arch=arm64 signed-by={KEYRING}] {self.mirror} {s} main\n" for s in self.suites)
        src_file = self.root / "sources.list"
        stamp = self.root / "lists" / ".updated"
        changed = not src_file.exists() or src_file.read_text() != sources
        if changed:
            src_file.write_text(sources)
        fresh = stamp.exists() and time.time() - stamp.stat().st_mtime < LISTS_MAX_AGE
        if force or changed or not fresh:
            self._run("apt-get", ["-q", "update"])
            stamp.touch()

    def kernel_abis(self) -> list[str]:
        """All arm64 kernel ABI names (e.g. "7.3.4+deb13-arm64") the suites carry, oldest first."""
        out = self._run("apt-cache", ["pkgnames", "linux-"])
        abis = set()
        for name in out.split():
            # 6.12.117+deb13-arm64 (trixie on), 6.1.0-50-arm64 (bookworm: linux-image-*-arm64-unsigned)
            m = re.fullmatch(r"linux-(?:image|binary)-(\d+\.\d+\.\d+(?:\+[\w.~]+|-\d+)-arm64)(?:-unsigned)?", name)
            if m:
                abis.add(m.group(1))
        return sorted(abis, key=_abi_sort_key)

    def show_version(self, package: str) -> str | None:
        try:
            out = self._run("apt-cache", ["show", f"{package}:arm64"])
        except OracleError:
            return None
        m = re.search(r"^Version:\s*(\S+)", out, re.M)
        return m.group(1) if m else None

    def download(self, package: str, version: str, dest: Path) -> Path:
        dest.mkdir(parents=True, exist_ok=True)
        self._run("apt-get", ["-q", "download", f"{package}:arm64={version}"], cwd=dest)
        debs = sorted(dest.glob(f"{package}_*_arm64.deb"))
        if not debs:
            raise OracleError(f"apt-get download {package} left no .deb in {dest}")
        return debs[-1]


def _abi_sort_key(abi: str) -> tuple[tuple[int, ...], str]:
    m = re.match(r"(\d+)\.(\d+)\.(\d+)(.*)", abi)
    if not m:
        return ((0,), abi)
    return ((int(m.group(1)), int(m.group(2)), int(m.group(3))), m.group(4))


def match_abi(spec: str, abis: list[str]) -> str | None:
    """Pick the ABI for a user spec: exact ("6.12.117+deb13" or with "-arm64"), or the newest
    one of a version prefix ("6.12", "7.3.4")."""
    s = spec.removeprefix("linux-image-").removeprefix("linux-binary-").removesuffix("-unsigned")
    for cand in (s, f"{s}-arm64"):
        if cand in abis:
            return cand
    pref = [a for a in abis if a.startswith(s + ".") or a.startswith(s + "+")]
    return pref[-1] if pref else None


# ---------------------------------------------------------------------------------------
# .deb unpacking (ar + tar, stdlib only; dpkg-deb as fallback for zstd members)

_IMAGE_MEMBER = re.compile(r"^\.?/?(boot/vmlinuz-[^/]+|usr/lib/modules/[^/]+/vmlinuz)$")


def _ar_members(f: BinaryIO) -> list[tuple[str, int, int]]:
    """(name, offset, size) of each member of an ar archive."""
    if f.read(8) != b"!<arch>\n":
        raise OracleError("not a Debian package (no ar header)")
    members: list[tuple[str, int, int]] = []
    while True:
        hdr = f.read(60)
        if len(hdr) < 60:
            return members
        name = hdr[:16].decode().strip().rstrip("/")
        size = int(hdr[48:58].decode().strip())
        off = f.tell()
        members.append((name, off, size))
        f.seek(off + size + (size & 1))


class _Slice:
    """A read-only file view of [offset, offset+size) of another file."""

    def __init__(self, f: BinaryIO, offset: int, size: int):
        self.f, self.pos, self.end = f, offset, offset + size
        f.seek(offset)

    def read(self, n: int = -1) -> bytes:
        n = self.end - self.pos if n < 0 else min(n, self.end - self.pos)
        self.f.seek(self.pos)
        data = self.f.read(n)
        self.pos += len(data)
        return data


def extract_vmlinuz(deb: Path, dest: Path) -> Path:
    """Write the kernel from a linux-image-*/linux-binary-* .deb to ``dest`` as a plain Image."""
    raw: bytes | None = None
    with deb.open("rb") as f:
        members = _ar_members(f)
        data = [m for m in members if m[0].startswith("data.tar")]
        if not data:
            raise OracleError(f"{deb.name} has no data.tar member")
        name, off, size = data[0]
        if name.endswith((".zst", ".zstd")):
            raw = _extract_with_dpkg_deb(deb)
        else:
            with tarfile.open(fileobj=_Slice(f, off, size), mode="r|*") as tar:  # type: ignore[call-overload]
                for member in tar:
                    if member.isfile() and _IMAGE_MEMBER.match(member.name):
                        fobj = tar.extractfile(member)
                        raw = fobj.read() if fobj else None
                        break
    if raw is None:
        raise KernelNotFound(
            f"{deb.name} contains no kernel (boot/vmlinuz-* or usr/lib/modules/*/vmlinuz)",
            hint="from Linux 6.16 on the kernel is in linux-binary-<version>-arm64",
        )
    image = to_plain_image(raw)
    tmp = dest.with_suffix(".tmp")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_bytes(image)
    tmp.replace(dest)
    return dest


def _extract_with_dpkg_deb(deb: Path) -> bytes | None:
    exe = shutil.which("dpkg-deb")
    if not exe:
        raise ToolMissing("dpkg-deb", "dpkg", " (needed for zstd-compressed packages)")
    proc = subprocess.Popen([exe, "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    raw = None
    with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
        for member in tar:
            if member.isfile() and _IMAGE_MEMBER.match(member.name):
                fobj = tar.extractfile(member)
                raw = fobj.read() if fobj else None
                break
    proc.kill()
    proc.wait()
    return raw


ARM64_IMAGE_MAGIC = b"ARM\x64"  # at offset 0x38 of an arm64 Image (Documentation/arch/arm64/booting.rst)


def to_plain_image(raw: bytes) -> bytes:
    """Accept a plain Image, a gzip'd Image, or a gzip EFI zboot image; return the Image."""
    if raw[0x38:0x3C] == ARM64_IMAGE_MAGIC:
        return raw
    if raw[:2] == b"\x1f\x8b":
        return to_plain_image(gzip.decompress(raw))
    if raw[:2] == b"MZ" and raw[4:8] == b"zimg":  # drivers/firmware/efi/libstub/zboot-header.S
        off = int.from_bytes(raw[8:12], "little")
        size = int.from_bytes(raw[12:16], "little")
        comp = raw[0x18:0x20].rstrip(b"\0").decode(errors="replace")
        if comp == "gzip":
            return to_plain_image(gzip.decompress(raw[off : off + size]))
        raise OracleError(f"EFI zboot kernel compressed with {comp}, which this tool cannot unpack")
    raise OracleError("the package's vmlinuz is not an arm64 Image (no ARM\\x64 magic)")


def get_kernel(spec: str, cache_dir: Path | None = None, *, update: bool = True) -> KernelInfo:
    """Resolve ``spec`` (e.g. "6.12.117+deb13", "7.3", "6.12") to an unpacked, cached Image.

    The Image is cached at ``<cache>/kernels/<abi>/Image`` with a ``package`` file naming
    the .deb it came from; a cached Image is reused without asking apt.
    """
    cache = cache_dir or default_cache_dir()
    kdir = cache / "kernels"
    s = spec.removeprefix("linux-image-").removeprefix("linux-binary-")
    for cand in (s, f"{s}-arm64"):
        info = _cached_kernel(kdir / cand)
        if info:
            return info
    apt = AptCache(cache)
    if update:
        apt.update()
    abis = apt.kernel_abis()
    abi = match_abi(spec, abis)
    if not abi:
        near = ", ".join(abis[-12:]) or "none (did apt-get update work?)"
        raise KernelNotFound(f"no Debian arm64 kernel matches {spec!r}; newest available: {near}")
    info = _cached_kernel(kdir / abi)
    if info:
        return info
    for package in (f"linux-binary-{abi}", f"linux-image-{abi}-unsigned", f"linux-image-{abi}"):
        version = apt.show_version(package)
        if not version:
            continue
        deb = apt.download(package, version, cache / "debs")
        try:
            image = extract_vmlinuz(deb, kdir / abi / "Image")
        except KernelNotFound:
            continue
        (kdir / abi / "package").write_text(f"{package}\n{version}\n")
        deb.unlink()  # the Image is what is kept; the .deb is ~10-100 MB
        return KernelInfo(image, abi, package, version)
    raise KernelNotFound(f"neither linux-binary-{abi} nor linux-image-{abi} holds a kernel Image")


def _cached_kernel(d: Path) -> KernelInfo | None:
    image, pkg = d / "Image", d / "package"
    if image.is_file() and pkg.is_file():
        lines = pkg.read_text().split()
        if len(lines) == 2:
            return KernelInfo(image, d.name, lines[0], lines[1])
    return None
