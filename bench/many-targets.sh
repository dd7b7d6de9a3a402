#!/usr/bin/env bash
# Benchmark of issue 14: many targets from one archive. TARGETS local
# targets (default 100) of PVS package-versions each (default 5,000: 500
# packages x 10 versions, one empty descpkg each), all wanting the same
# release:
#
#   fanout    the first `sync --all` to empty targets, at --jobs JOBS (and
#             at --jobs 1 when FANOUT_SERIAL=1): wall time, user+sys CPU and
#             CPU utilisation = (user+sys) / wall / cores
#   nochange  a no-change `sync --all` (goal: at most 10 s on 2 cores)
#             against what a user would run to check the same targets: a
#             loop of `rsync -a -n` (archive -> each target), and a loop of
#             `find` over each target; RUNS runs each, taking turns, medians
#             with min-max
#
# The targets hold 500,000 package-versions in all: they live on a tmpfs
# (TARGET_DIR, default /dev/shm/blat-bench-many; about 1 GiB of kernel
# memory, no data pages: every file is empty), the archive, config and
# state under WORK (default /tmp/blat-bench-many, ~60 MB). Both are removed
# at the end unless KEEP=1.
#
#   bench/many-targets.sh
#   RUNS=5 JOBS=4 FANOUT_SERIAL=1 bench/many-targets.sh
#   BLAT=/tmp/other/blat TARGETS=20 bench/many-targets.sh
#   KEEP=1 bench/many-targets.sh; FANOUT=0 bench/many-targets.sh   # nochange again on the same targets
#
# Needs python3, rsync, /usr/bin/time.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
TARGETS=${TARGETS:-100}
PACKAGES=${PACKAGES:-500}
VERSIONS=${VERSIONS:-10}
JOBS=${JOBS:-4}
WORK=${BLAT_BENCH_DIR:-/tmp/blat-bench-many}
TARGET_DIR=${TARGET_DIR:-/dev/shm/blat-bench-many}
CORES=$(nproc)
for tool in python3 rsync /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "bench/many-targets.sh: $tool is needed" >&2; exit 1; }
done
if [ -z "${BLAT:-}" ]; then
    cargo build --release -q
    BLAT=$PWD/target/release/blat
fi

cleanup() {
    [ "${KEEP:-0}" = 1 ] && return
    chmod -R u+w "$WORK" "$TARGET_DIR" 2>/dev/null || true
    rm -rf "$WORK" "$TARGET_DIR"
}
trap cleanup EXIT

# ---------------------------------------------------------------- fixture

FANOUT=${FANOUT:-1}
if [ "$FANOUT" = 0 ] && [ ! -d "$TARGET_DIR/t000" ]; then
    echo "FANOUT=0 needs the targets of an earlier KEEP=1 run in $TARGET_DIR" >&2
    exit 1
fi
[ "$FANOUT" = 1 ] && rm -rf "$TARGET_DIR"
if [ ! -f "$WORK/config/blat.toml" ]; then
    bench/gen-archive --out "$WORK" --packages "$PACKAGES" --versions "$VERSIONS" \
        --files 1 --alias-every 0 --size-mix tiny -q --force >&2
    # Empty descpkgs (same mtimes): a file with no data takes no page on
    # the targets' tmpfs.
    python3 - "$WORK/archive" <<'EOF'
import os, sys
root = sys.argv[1]
for p in os.listdir(root):
    for v in os.listdir(os.path.join(root, p)):
        f = os.path.join(root, p, v, "descpkg")
        st = os.stat(f)
        with open(f, "w"):
            pass
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
EOF
fi
rm -rf "$WORK/config/targets"
[ "$FANOUT" = 1 ] && rm -rf "$WORK/state"
mkdir -p "$WORK/config/targets" "$WORK/state" "$TARGET_DIR"
for i in $(seq -f '%03g' 0 $((TARGETS - 1))); do
    mkdir -p "$TARGET_DIR/t$i"
    cat >"$WORK/config/targets/t$i.conf" <<EOF
kind = "archive"
transport = "local"
path = "$TARGET_DIR/t$i"
projects = ["BENCH"]
writable_grace = "1h"
EOF
done
PVS=$((PACKAGES * VERSIONS))
echo "many-targets: $TARGETS targets x $PVS package-versions, $CORES cores, blat $("$BLAT" --version)"
echo "load before: $(uptime)"

# Prints "wall user sys" of a command (its output dropped); fails loudly.
timed() {
    local tf rc=0
    tf=$(mktemp)
    /usr/bin/time -f '%e %U %S' -o "$tf" "$@" >/dev/null 2>"$tf.err" || rc=$?
    if [ "$rc" != 0 ]; then
        echo "failed ($rc): $*" >&2
        tail -5 "$tf.err" >&2
        exit 1
    fi
    tail -n 1 "$tf"
    rm -f "$tf" "$tf.err"
}

utilisation() { # wall user sys -> "wall s, cpu s, util %"
    awk -v w="$1" -v u="$2" -v s="$3" -v c="$CORES" \
        'BEGIN {printf "%6.1f s wall, %6.1f s CPU (user %.1f + sys %.1f), %3.0f%% of %d cores\n", w, u + s, u, s, (u + s) / w / c * 100, c}'
}

# ---------------------------------------------------------------- fanout

empty_targets() {
    for d in "$TARGET_DIR"/t*; do
        chmod -R u+w "$d" 2>/dev/null || true
        rm -rf "$d"
        mkdir "$d"
    done
    rm -rf "$WORK/state"
}

if [ "$FANOUT" = 1 ] && [ "${FANOUT_SERIAL:-0}" = 1 ]; then
    empty_targets
    read -r w u s < <(timed "$BLAT" -q -c "$WORK/config" sync --all --jobs 1)
    printf 'fanout   --jobs 1   %s' "$(utilisation "$w" "$u" "$s")"
    echo
    empty_targets
fi
if [ "$FANOUT" = 1 ]; then
    read -r w u s < <(timed "$BLAT" -q -c "$WORK/config" sync --all --jobs "$JOBS")
    printf 'fanout   --jobs %-3s %s' "$JOBS" "$(utilisation "$w" "$u" "$s")"
    echo
fi
# Every target got every package-version.
for d in "$TARGET_DIR"/t*; do
    n=$(find "$d" -mindepth 3 -maxdepth 3 -name descpkg | wc -l)
    [ "$n" = "$PVS" ] || { echo "$d holds $n package-versions, not $PVS" >&2; exit 1; }
done

# ---------------------------------------------------------------- nochange

rsync_all() {
    for d in "$TARGET_DIR"/t*; do
        rsync -a -n "$WORK/archive/" "$d/" --exclude=/.dpkg_archive
    done
}
find_all() {
    for d in "$TARGET_DIR"/t*; do
        find "$d" -mindepth 3 -maxdepth 3 -name descpkg -printf '%h %T@\n'
    done
}
export -f rsync_all find_all
export WORK TARGET_DIR

declare -A T U
for _ in $(seq "$RUNS"); do
    read -r w u s < <(timed "$BLAT" -q -c "$WORK/config" sync --all --jobs "$JOBS")
    T[blat]+="$w "; U[blat]+="$(awk -v u="$u" -v s="$s" 'BEGIN {print u + s}') "
    read -r w u s < <(timed bash -c rsync_all)
    T[rsync]+="$w "; U[rsync]+="$(awk -v u="$u" -v s="$s" 'BEGIN {print u + s}') "
    read -r w u s < <(timed bash -c find_all)
    T[find]+="$w "; U[find]+="$(awk -v u="$u" -v s="$s" 'BEGIN {print u + s}') "
done

median() { # values... -> "median (min-max)"
    printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {printf "%.2f s (%.2f-%.2f)", a[int((NR+1)/2)], a[1], a[NR]}'
}
echo "nochange, medians of $RUNS runs, taking turns (wall, min-max; CPU):"
for tool in blat rsync find; do
    # shellcheck disable=SC2086
    printf '  %-6s %s, CPU %s\n' "$tool" "$(median ${T[$tool]})" "$(median ${U[$tool]})"
done
# shellcheck disable=SC2086
blat_med=$(printf '%s\n' ${T[blat]} | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
awk -v b="$blat_med" 'BEGIN {printf "goal: no-change sync --all <= 10 s: %s\n", (b <= 10 ? "met" : "NOT met")}'
echo "load after: $(uptime)"
