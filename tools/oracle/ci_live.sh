#!/usr/bin/env bash
# Live check of the real-KVM oracle: install the parts (Debian packages + one Debian arm64
# kernel), boot it once under QEMU and replay a few hundred cases of the committed
# recording for the same kernel/CPU, failing if the boot fails or KVM answers differently.
#
#   bash tools/oracle/ci_live.sh                 # defaults below
#   ORACLE_KERNEL=7.3.4+deb13 ORACLE_CPU=max ORACLE_CASES=500 bash tools/oracle/ci_live.sh
#
# Needs root (apt-get install) and the Debian mirror; takes ~1-3 minutes, capped at 20.
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
echo "ci_live: OK ($KERNEL, -cpu $CPU, $CASES cases, $(($(date +%s) - start)) s) -> $OUT"
