#!/usr/bin/env bash
# Benchmark of issue 2: a no-change `blat sync` to a local target against
# `rsync -a -n` of the same trees, in the same run, at 5,000 × 40, 20,000 × 40
# and 5,000 × 80 files per package-version; medians of RUNS runs (warm cache
# for both tools) and peak memory (max RSS). Prints a table and the ratios.
#
#   bench/sync-local.sh            # RUNS=5, data under /tmp/blat-bench-sync
#   RUNS=3 CASES="5000x40" bench/sync-local.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
WORK=${BLAT_BENCH_DIR:-/tmp/blat-bench-sync}
CASES=${CASES:-"5000x40 20000x40 5000x80"}
command -v rsync >/dev/null || { echo "rsync is needed (apt-get install rsync)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time is needed (apt-get install time)" >&2; exit 1; }

cargo build --release -q
BLAT=$PWD/target/release/blat
mkdir -p "$WORK"

# Runs a command RUNS times; prints "median_seconds max_rss_kib".
measure() {
    local times=() rss=0 out t m tf
    tf=$(mktemp)
    for _ in $(seq "$RUNS"); do
        /usr/bin/time -f '%e %M' -o "$tf" "$@" >/dev/null 2>&1 || true
        out=$(tail -n 1 "$tf")
        t=${out% *}; m=${out#* }
        times+=("$t")
        [ "$m" -gt "$rss" ] && rss=$m
    done
    rm -f "$tf"
    printf '%s\n' "${times[@]}" | sort -n | awk -v n="$RUNS" -v rss="$rss" \
        '{a[NR]=$1} END {printf "%s %s\n", a[int((n+1)/2)], rss}'
}

printf '%-10s %10s %10s %8s %12s %12s\n' case blat_s rsync_s ratio blat_rss_k rsync_rss_k
declare -A BLAT_T
for c in $CASES; do
    pvs=${c%x*}; files=${c#*x}
    dir=$WORK/$c
    if [ ! -f "$dir/config/blat.toml" ]; then
        bench/gen-archive --out "$dir" --packages "$pvs" --versions 1 --files "$files" -q --force >&2
    fi
    # Populate the target once; every measured run is then a no-change run.
    "$BLAT" -q -c "$dir/config" sync --all >/dev/null
    read -r bt bm < <(measure "$BLAT" -q -c "$dir/config" sync --all)
    read -r rt rm < <(measure rsync -a -n "$dir/archive/" "$dir/target/dpkg_archive/")
    BLAT_T[$c]=$bt
    ratio=$(awk -v a="$rt" -v b="$bt" 'BEGIN {printf "%.1fx", (b > 0 ? a / b : 0)}')
    printf '%-10s %10s %10s %8s %12s %12s\n' "$c" "$bt" "$rt" "$ratio" "$bm" "$rm"
done
if [ -n "${BLAT_T[5000x40]:-}" ] && [ -n "${BLAT_T[5000x80]:-}" ]; then
    awk -v a="${BLAT_T[5000x40]}" -v b="${BLAT_T[5000x80]}" \
        'BEGIN {printf "blat 5000x40 -> 5000x80: %+.0f%% (goal: < +10%%)\n", (b - a) / a * 100}'
fi
