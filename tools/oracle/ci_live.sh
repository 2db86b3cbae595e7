#!/usr/bin/env bash
# Live check of the real-KVM oracle: install the parts (Debian packages + one Debian arm64
# kernel), boot it once under QEMU and replay a few hundred cases of the committed
# recording for the same kernel/CPU, failing if the boot fails or KVM answers differently.
#
#   bash tools/oracle/ci_live.sh                 # defaults below
#   ORACLE_KERNEL=7.3.4+deb13 ORACLE_CPU=max ORACLE_CASES=500 bash tools/oracle/ci_live.sh
#
# Then records the firmware pseudo-register restores on the same kernel and judges them with the
# model, and runs `cpumodel capture` on the same booted kernel and compares it with the probe's reading.
# Needs root (apt-get install) and the Debian mirror; takes ~2-5 minutes, capped at 20.
set -euo pipefail

cd "$(dirname "$0")/../.."
KERNEL="${ORACLE_KERNEL:-6.12.117+deb13}"
CPU="${ORACLE_CPU:-neoverse-n1}"
CASES="${ORACLE_CASES:-400}"
PY="${PYTHON:-python3}"
REF="tests/oracle/recordings/${KERNEL%%+*}_${CPU}.json.gz"
OUT="${ORACLE_OUT:-$(mktemp -d)/live_${KERNEL%%+*}_${CPU}.json.gz}"

if [ ! -f "$REF" ]; then
    echo "ci_live: no committed recording $REF" >&2
    exit 2
fi

start=$(date +%s)
# setup is idempotent: apt-get only runs for missing packages; the kernel is cached.
timeout 900 "$PY" -m tools.oracle setup --kernel "$KERNEL"
timeout $((1200 - ($(date +%s) - start))) "$PY" -m tools.oracle record \
    --kernel "$KERNEL" --cpu "$CPU" \
    --cases-from-recording "$REF" --sample "$CASES" \
    --timeout 300 -o "$OUT" --compare "$REF"
echo "ci_live: oracle OK ($KERNEL, -cpu $CPU, $CASES cases, $(($(date +%s) - start)) s) -> $OUT"

# Firmware pseudo-registers (cpumodel/oracle/firmware.py): the same kernel's answers to PSCI_VERSION,
# SMCCC_ARCH_WORKAROUND_1/2/3 and hypercall-bitmap restores, before and after the first run, judged
# by cpumodel's model (check_model F001, as `cpumodel check` runs it, with this boot's sysfs
# vulnerabilities as the host's) and compared with the committed recording. CI_LIVE_FIRMWARE=0 skips it.
if [ "${CI_LIVE_FIRMWARE:-1}" != 0 ]; then
    FW_REF="tests/oracle/firmware/${KERNEL%%+*}_${CPU}.json.gz"
    FW_OUT="$(dirname "$OUT")/live_firmware_${KERNEL%%+*}_${CPU}.json.gz"
    timeout 300 "$PY" -m tools.oracle record-firmware --kernels "$KERNEL" --cpus "$CPU" -o "$FW_OUT"
    "$PY" -m tools.oracle firmware-check "$FW_OUT" --compare "$FW_REF"
    echo "ci_live: firmware OK ($(($(date +%s) - start)) s) -> $FW_OUT"
fi

# `cpumodel capture`'s real paths (kvm, sysfs, MRS emulation) on the same kernel and QEMU CPU, in an
# arm64 Python booted as /init (tools/capture_arm64_check.sh --vm), compared with what the probe read
# (tools/oracle/capture_live.py). CI_LIVE_CAPTURE=0 skips it.
if [ "${CI_LIVE_CAPTURE:-1}" != 0 ]; then
    console=$(mktemp)
    CPUMODEL_ARM64_KERNEL=$("$PY" -m tools.oracle image --kernel "$KERNEL") CPUMODEL_ARM64_CPU="$CPU" \
        CPUMODEL_ARM64_CONSOLE="$console" timeout 900 bash tools/capture_arm64_check.sh --vm >/dev/null
    "$PY" -m tools.oracle capture-compare "$console" "$REF"
    echo "ci_live: capture OK (capture's kvm/sysfs/mrs sources == the probe, $(($(date +%s) - start)) s)"
fi
