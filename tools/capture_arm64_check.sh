#!/usr/bin/env bash
# Run `cpumodel capture` for real on emulated arm64 (not part of the default CI).
#
#   tools/capture_arm64_check.sh [--vm] [SYSROOT] [OUTPUT.yaml]
#
# SYSROOT (default $CPUMODEL_ARM64_SYSROOT, else ~/.cache/cpumodel/arm64-sysroot) is a Debian
# bookworm arm64 Python 3.11 unpacked from .debs. It is made on first use (needs apt-get, dpkg-deb
# and network access; nothing is installed on the system: apt gets private state and cache dirs).
#
# Default mode, user space only: the capture runs under qemu-aarch64-static (apt-get install
# qemu-user-static), whose linux-user mode emulates MRS of the ID registers at EL0 like the Linux
# kernel does, so the mrs source executes real MRS instructions from an mmap'd page. If
# aarch64-linux-gnu-gcc is installed, a static C program reads some registers with inline-asm MRS
# as an independent cross-check. Known differences from real arm64 Linux: QEMU 7.2 linux-user does
# not emulate the AArch32 ID registers with CRm=2,3 (MRS raises SIGILL, capture reports them as not
# captured, QEMU prints "uncaught target signal 4" for each probing child); no sysfs
# regs/identification and no KVM (qemu-user does not pass KVM ioctls through).
#
# --vm: a whole arm64 machine instead. qemu-system-aarch64 (apt-get install qemu-system-arm) boots a
# Debian arm64 kernel (CPUMODEL_ARM64_KERNEL=vmlinuz, else linux-image-arm64 of bookworm-backports is
# downloaded next to SYSROOT) with -cpu max and virtualization=on; the sysroot plus cpumodel is the
# initramfs and a Python /init captures with every source: kvm (real KVM_* ioctls on the guest
# kernel's /dev/kvm), sysfs and the kernel's own MRS emulation. About 20 s under TCG.
# CPUMODEL_ARM64_CPU sets QEMU's -cpu (default max); CPUMODEL_ARM64_CONSOLE=FILE keeps the console,
# whose "=== VALUES <source> {json}" lines (each source alone) `python -m tools.oracle
# capture-compare FILE RECORDING` compares with the oracle probe's reading (tools/oracle/ci_live.sh).
#
# OUTPUT gets the auto capture. `CPUMODEL_ARM64_SYSROOT=SYSROOT pytest tests/test_capture.py` runs
# the user-space check as a test; with CPUMODEL_ARM64_VM=1 as well, the --vm check too.
set -euo pipefail

VM=0
if [ "${1:-}" = "--vm" ]; then VM=1; shift; fi
REPO=$(cd "$(dirname "$0")/.." && pwd)
SYSROOT=${1:-${CPUMODEL_ARM64_SYSROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/cpumodel/arm64-sysroot}}
OUT=${2:-$(mktemp -d)/arm64-capture.yaml}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PY=$SYSROOT/usr/bin/python3.11
PACKAGES="python3.11-minimal libpython3.11-minimal libpython3.11-stdlib libc6 zlib1g libexpat1 libffi8
          libgcc-s1 python3-click python3-yaml libyaml-0-2"
WORK=$SYSROOT.apt

need() { command -v "$1" >/dev/null || { echo "need $1: apt-get install $2" >&2; exit 2; }; }

apt_private() {  # apt_private SUITE apt-get|apt-cache ARGS...: apt on private lists/cache for arm64
    local suite=$1 tool=$2; shift 2
    local dir=$WORK/$suite
    mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
    if [ ! -f "$dir/sources.list" ]; then
        echo "deb [arch=arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR $suite main" \
            > "$dir/sources.list"
        apt-get -o APT::Architecture=arm64 -o APT::Architectures=arm64 -o "Dir::State::Lists=$dir/lists" \
            -o "Dir::Etc::SourceList=$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null \
            -o "Dir::Cache=$dir/cache" update >&2
    fi
    "$tool" -o APT::Architecture=arm64 -o APT::Architectures=arm64 -o "Dir::State::Lists=$dir/lists" \
        -o "Dir::Etc::SourceList=$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null \
        -o "Dir::Cache=$dir/cache" "$@"
}

if [ ! -x "$PY" ]; then
    echo "== preparing the arm64 sysroot in $SYSROOT" >&2
    mkdir -p "$WORK/debs" "$SYSROOT"
    # shellcheck disable=SC2086
    (cd "$WORK/debs" && apt_private bookworm apt-get download $PACKAGES >&2)
    for deb in "$WORK"/debs/*.deb; do dpkg-deb -x "$deb" "$SYSROOT"; done
fi

if [ "$VM" = 1 ]; then
    need qemu-system-aarch64 qemu-system-arm
    need cpio cpio
    KERNEL=${CPUMODEL_ARM64_KERNEL:-}
    if [ -z "$KERNEL" ]; then
        KERNEL=$(find "$WORK/kernel" -name 'vmlinuz*' -type f 2>/dev/null | head -n1 || true)
        if [ -z "$KERNEL" ]; then
            pkg=$(apt_private bookworm-backports apt-cache depends linux-image-arm64 | awk '/Depends: linux-image-/ {print $2; exit}')
            echo "== downloading $pkg" >&2
            mkdir -p "$WORK/kdebs" && (cd "$WORK/kdebs" && apt_private bookworm-backports apt-get download "$pkg:arm64" >&2)
            dpkg-deb -x "$WORK"/kdebs/"$pkg"_*.deb "$WORK/kernel"
            KERNEL=$(find "$WORK/kernel" -name 'vmlinuz*' -type f | head -n1)
        fi
    fi
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    cp -a "$SYSROOT" "$tmp/root"
    mkdir -p "$tmp/root/opt" "$tmp/root/proc" "$tmp/root/sys" "$tmp/root/dev"
    (cd "$REPO" && tar -cf - --exclude=__pycache__ cpumodel) | tar -xf - -C "$tmp/root/opt"
    cat > "$tmp/root/init" <<'EOF'
#!/usr/bin/python3.11
import ctypes
import os
import sys

libc = ctypes.CDLL(None, use_errno=True)
for src, target, fs in (("proc", "/proc", "proc"), ("sysfs", "/sys", "sysfs"), ("devtmpfs", "/dev", "devtmpfs")):
    if libc.mount(src.encode(), target.encode(), fs.encode(), 0, None) != 0:
        print(f"mount {target}: {os.strerror(ctypes.get_errno())}")
sys.path.insert(0, "/opt")
from cpumodel import capture as c  # noqa: E402
from cpumodel.errors import CpumodelError  # noqa: E402

for sources, cpu in ((None, None), (["kvm"], None), (["mrs"], None), (["mrs"], 1), (["sysfs"], None)):
    try:
        got = c.capture(sources, cpu=cpu)
        print(f"== {sources or 'auto'} cpu={cpu}: {c.summary(got)}")
        if sources is None:
            print("=== BEGIN PROFILE\n" + c.to_profile_yaml(got, "arm64-vm") + "=== END PROFILE")
    except CpumodelError as e:
        print(f"== {sources or 'auto'} cpu={cpu}: error: {e}")
import json  # noqa: E402

for src in ("kvm", "sysfs", "mrs"):  # each source alone, for tools/oracle/capture_live.py
    try:
        got = c.capture([src])
        data = {"values": {k: f"{v:#x}" for k, v in got.values.items()}, "unread": got.unread}
    except CpumodelError as e:
        data = {"error": str(e)}
    print(f"=== VALUES {src} " + json.dumps(data, separators=(",", ":")))
sys.stdout.flush()
libc.sync()
libc.reboot(0x4321FEDC)  # LINUX_REBOOT_CMD_POWER_OFF
EOF
    chmod +x "$tmp/root/init"
    (cd "$tmp/root" && find . | cpio -o -H newc --quiet | gzip -1) > "$tmp/initrd.gz"
    QCPU=${CPUMODEL_ARM64_CPU:-max}
    echo "== booting $KERNEL under qemu-system-aarch64 -cpu $QCPU (virtualization=on)" >&2
    timeout 900 qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 -cpu "$QCPU" -m 1024 -smp 2 \
        -nographic -nic none -no-reboot -kernel "$KERNEL" -initrd "$tmp/initrd.gz" \
        -append "console=ttyAMA0 panic=-1 quiet" | tr -d '\r' > "$tmp/console.txt"
    grep '^== ' "$tmp/console.txt" >&2 || true
    if [ -n "${CPUMODEL_ARM64_CONSOLE:-}" ]; then cp "$tmp/console.txt" "$CPUMODEL_ARM64_CONSOLE"; fi
    sed -n '/^=== BEGIN PROFILE$/,/^=== END PROFILE$/p' "$tmp/console.txt" | sed '1d;$d' > "$OUT"
    if [ ! -s "$OUT" ]; then cat "$tmp/console.txt" >&2; echo "no profile captured" >&2; exit 1; fi
    cat "$OUT"
    exit 0
fi

need qemu-aarch64-static qemu-user-static
echo "== cpumodel capture under qemu-aarch64-static ($(qemu-aarch64-static -L "$SYSROOT" "$PY" -V))" >&2
qemu-aarch64-static -L "$SYSROOT" "$PY" - "$REPO" "$OUT" <<'EOF'
import platform
import sys

sys.path.insert(0, sys.argv[1])
from cpumodel import capture as engine  # noqa: E402
from cpumodel.cli_capture import capture  # noqa: E402

print(f"platform.machine() = {platform.machine()}, HWCAP = {engine.hwcap():#x}", file=sys.stderr)
try:
    capture.main(["-o", sys.argv[2], "--name", "qemu-user-arm64"], prog_name="cpumodel capture")
except SystemExit as e:
    if e.code:
        raise
EOF
cat "$OUT"

# Independent cross-check: the same registers read by a C program's inline-asm MRS.
if command -v aarch64-linux-gnu-gcc >/dev/null; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    cat > "$tmp/mrs.c" <<'EOF'
#include <stdio.h>
/* The generic S<op0>_<op1>_C<n>_C<m>_<op2> names assemble without -march extensions. */
#define SHOW(name, reg) do { unsigned long v; __asm__ volatile("mrs %0, " reg : "=r"(v)); \
                             printf("%s 0x%lx\n", name, v); } while (0)
int main(void)
{
	SHOW("MIDR_EL1", "S3_0_C0_C0_0");
	SHOW("ID_AA64PFR0_EL1", "S3_0_C0_C4_0");
	SHOW("ID_AA64PFR1_EL1", "S3_0_C0_C4_1");
	SHOW("ID_AA64ZFR0_EL1", "S3_0_C0_C4_4");
	SHOW("ID_AA64SMFR0_EL1", "S3_0_C0_C4_5");
	SHOW("ID_AA64DFR0_EL1", "S3_0_C0_C5_0");
	SHOW("ID_AA64ISAR0_EL1", "S3_0_C0_C6_0");
	SHOW("ID_AA64ISAR1_EL1", "S3_0_C0_C6_1");
	SHOW("ID_AA64MMFR0_EL1", "S3_0_C0_C7_0");
	SHOW("CTR_EL0", "S3_3_C0_C0_1");
	SHOW("DCZID_EL0", "S3_3_C0_C0_7");
	return 0;
}
EOF
    aarch64-linux-gnu-gcc -static -O1 -o "$tmp/mrs" "$tmp/mrs.c"
    qemu-aarch64-static "$tmp/mrs" > "$tmp/c.txt"
    status=0
    while read -r name value; do
        got=$(python3 -c "import sys, yaml; print(hex(yaml.safe_load(open(sys.argv[1]))['registers'][sys.argv[2]]))" \
              "$OUT" "$name")
        if [ "$got" = "$value" ]; then echo "cross-check $name: $value == capture" >&2
        else echo "cross-check $name: C says $value, capture says $got" >&2; status=1; fi
    done < "$tmp/c.txt"
    exit $status
fi
