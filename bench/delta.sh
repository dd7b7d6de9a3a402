#!/usr/bin/env bash
# Benchmark of issue 13, goals 3 and 4, on the slow link (bench/slowlink: a
# veth pair shaped to 100 Mbit/s each way, OpenSSH server in a namespace):
#
#   delta    a package of FILES files (SIZE KiB each, incompressible) whose
#            version 1.0 is on the target; version 2.0 has CHANGED % of its
#            files rewritten (same size, new content), the rest identical
#            (content and mtime). Sent by: blat with delta = "link", blat
#            with delta = "off" (a full send), `rsync -a` of the new version
#            directory, and `rsync -a --link-dest=<1.0>` (the expert's
#            anchor). Figures: wall time and bytes on the link (the near
#            veth's tx+rx counters), medians of RUNS interleaved runs.
#   bwlimit  blat sending BW_MB MiB in full with bwlimit = 2m and 5m: the
#            rate on the link over the middle 80 % of the transfer (sampled
#            every 0.2 s from the veth's counter) and over the whole run.
#
#   bench/delta.sh                          # FILES=400 SIZE=512 CHANGED=10 RUNS=3
#   CASES=bwlimit bench/delta.sh
#   BLAT=/path/to/blat bench/delta.sh       # another build
#
# Needs root (bench/slowlink), openssh-server, rsync. The link gets its own
# namespace, addresses and port (DELTA_* below), so it does not disturb
# another slow link that is up. Data: about 2 x FILES x SIZE KiB on the
# master plus as much on the target, removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
FILES=${FILES:-400}
SIZE=${SIZE:-512}
CHANGED=${CHANGED:-10}
BW_MB=${BW_MB:-40}
CASES=${CASES:-"delta bwlimit"}
WORK=${BLAT_BENCH_DIR:-/tmp/blat-bench-delta}
export SLOWLINK_DIR=${DELTA_SLOWLINK_DIR:-/tmp/blat-slowlink-delta}
export SLOWLINK_NS=${DELTA_NS:-blat-delta}
export SLOWLINK_NET=${DELTA_NET:-10.214.0}
export SLOWLINK_PORT=${DELTA_PORT:-2232}
NEAR_DEV=blatsl0

if [ -z "${BLAT:-}" ]; then
    cargo build --release -q
    BLAT=$PWD/target/release/blat
fi

cleanup() {
    bench/slowlink down 2>/dev/null || true
    if [ -d "$WORK" ]; then chmod -R u+w "$WORK" && rm -rf "$WORK"; fi
}
trap cleanup EXIT
cleanup
bench/slowlink up
# shellcheck disable=SC1090
source <(bench/slowlink env)
ARCH=$SLOWLINK_ARCHIVE
REMOTE=(ip netns exec "$SLOWLINK_NS") # for clearing the target, off the link
mkdir -p "$WORK/archive" "$WORK/config/targets" "$WORK/state"

# ---------------------------------------------------------------- data

# make_version DIR FILES SIZE: FILES files of SIZE KiB of noise in 4 dirs.
make_version() {
    local dir=$1 n=$2 size=$3
    mkdir -p "$dir"
    for i in $(seq 0 $((n - 1))); do
        mkdir -p "$dir/d$((i % 4))"
        head -c $((size * 1024)) /dev/urandom >"$dir/d$((i % 4))/f$i"
    done
    printf 'Package: pkg\n' >"$dir/descpkg"
}

old=$WORK/archive/pkg/1.0
new=$WORK/archive/pkg/2.0
make_version "$old" "$FILES" "$SIZE"
touch -d @1700000000 "$old/descpkg"
cp -a "$old" "$new"
nchanged=$((FILES * CHANGED / 100))
for i in $(seq 0 $((nchanged - 1))); do
    f=$new/d$(((i * 10) % 4))/f$((i * 100 / CHANGED))
    head -c $((SIZE * 1024)) /dev/urandom >"$f"
done
touch -d @1700000100 "$new/descpkg"
chmod -R a-w "$old" "$new"
bw=$WORK/archive/bw/1.0
make_version "$bw" "$((BW_MB * 4))" 256
chmod -R a-w "$bw"

cat >"$WORK/rm.sql" <<'EOF'
CREATE TABLE projects (project_id INTEGER PRIMARY KEY, name TEXT UNIQUE);
CREATE TABLE releases (release_id INTEGER PRIMARY KEY, project_id INTEGER, name TEXT, state TEXT, s3sync INTEGER);
CREATE TABLE packages (package_id INTEGER PRIMARY KEY, name TEXT UNIQUE);
CREATE TABLE package_versions (pv_id INTEGER PRIMARY KEY, package_id INTEGER, version TEXT);
CREATE TABLE release_content (release_id INTEGER, pv_id INTEGER);
EOF
cat >"$WORK/config/blat.toml" <<EOF
archive = "$WORK/archive"
state_dir = "$WORK/state"
verbose = 0
[release_manager]
kind = "sqlite"
path = "$WORK/rm.sql"
EOF

# target NAME PINS EXTRA: a target on the far side of the link.
target() {
    cat >"$WORK/config/targets/$1.conf" <<EOF
kind = "archive"
transport = "ssh"
host = "$SLOWLINK_HOST"
port = $SLOWLINK_PORT
user = "$SLOWLINK_USER"
identity = "$SLOWLINK_IDENTITY"
known_hosts = "$SLOWLINK_KNOWN_HOSTS"
remote_archive = "$ARCH"
packages = [$2]
compression = "none"
$3
EOF
}
target base '"pkg/1.0"' ''
target link '"pkg/1.0", "pkg/2.0"' 'delta = "link"'
target off '"pkg/1.0", "pkg/2.0"' 'delta = "off"'
target bw2 '"bw/1.0"' 'bwlimit = "2m"'
target bw5 '"bw/1.0"' 'bwlimit = "5m"'

blat() { "$BLAT" -c "$WORK/config" "$@"; }
link_bytes() {
    echo $(($(cat /sys/class/net/$NEAR_DEV/statistics/tx_bytes) + $(cat /sys/class/net/$NEAR_DEV/statistics/rx_bytes)))
}
clear_new() { "${REMOTE[@]}" sh -c "chmod -R u+w '$ARCH/pkg/2.0' 2>/dev/null; rm -rf '$ARCH/pkg/2.0' '$ARCH/bw'"; sync; }

# timed NAME COMMAND...: runs COMMAND once, appends "seconds bytes" to $WORK/NAME.
timed() {
    local name=$1 b0 t0 t1 b1
    shift
    clear_new
    b0=$(link_bytes)
    t0=$(date +%s.%N)
    "$@" >/dev/null
    t1=$(date +%s.%N)
    b1=$(link_bytes)
    awk -v a="$t0" -v b="$t1" -v n=$((b1 - b0)) 'BEGIN { printf "%.3f %d\n", b - a, n }' >>"$WORK/$name"
}

# median FILE COLUMN: the median (and min-max) of a column.
median() {
    sort -g -k"$2" "$1" | awk -v c="$2" '{ v[NR] = $c } END {
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "%.2f (%.2f-%.2f)", m, v[1], v[NR] }'
}

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); link $SLOWLINK_RATE each way"

if [[ " $CASES " == *" delta "* ]]; then
    blat sync --target base >/dev/null
    total=$(du -sb "$new" | cut -f1)
    echo "delta: pkg/2.0 = $FILES files x $SIZE KiB ($((total >> 20)) MiB), $nchanged changed; 1.0 on the target; RUNS=$RUNS"
    ssh_e="$SLOWLINK_SSH"
    for run in $(seq "$RUNS"); do
        timed blat-delta blat sync --target link
        timed blat-full blat sync --target off
        timed rsync rsync -a -e "$ssh_e" "$new" "$SLOWLINK_USER@$SLOWLINK_HOST:$ARCH/pkg/"
        timed rsync-link-dest rsync -a -e "$ssh_e" --link-dest="$ARCH/pkg/1.0" "$new/" "$SLOWLINK_USER@$SLOWLINK_HOST:$ARCH/pkg/2.0/"
        echo "  run $run done (load $(cut -d' ' -f1 /proc/loadavg))"
    done
    full_bytes=$(sort -g -k2 "$WORK/blat-full" | awk '{ v[NR] = $2 } END { print v[int((NR + 1) / 2)] }')
    rsync_secs=$(sort -g "$WORK/rsync" | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
    printf '  %-26s %-22s %-26s %s\n' tool "seconds" "MB on the link" "vs full / rsync -a time"
    for t in blat-delta blat-full rsync rsync-link-dest; do
        b=$(sort -g -k2 "$WORK/$t" | awk '{ v[NR] = $2 } END { print v[int((NR + 1) / 2)] }')
        s=$(sort -g "$WORK/$t" | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
        printf '  %-26s %-22s %-26s %s\n' "$t" "$(median "$WORK/$t" 1)" \
            "$(awk -v b="$b" 'BEGIN { printf "%.1f", b / 1e6 }')" \
            "$(awk -v b="$b" -v f="$full_bytes" -v s="$s" -v r="$rsync_secs" 'BEGIN { printf "%.1f %% of full bytes, %.2fx faster than rsync -a", 100 * b / f, r / s }')"
    done
    echo "  (bytes: medians; both directions of the link, TCP/IP and SSH included)"
    echo "  first blat-delta run, hash cache empty: $(head -n 1 "$WORK/blat-delta" | cut -d' ' -f1) s"
fi

if [[ " $CASES " == *" bwlimit "* ]]; then
    payload=$(du -sb "$bw" | cut -f1)
    echo "bwlimit: bw/1.0 = $BW_MB MiB, sent in full (compression none); achieved/requested rate:"
    echo "  link = tx bytes of the veth (TCP/IP and SSH framing included), middle 80 % of the transfer;"
    echo "  stream = the same scaled to the bytes blat writes (file content / link bytes); whole = content / wall time of the run"
    for t in bw2 bw5; do
        want=$((${t#bw} * 1048576))
        for run in $(seq "$RUNS"); do
            clear_new
            samples=$WORK/samples-$t-$run
            (while :; do echo "$(date +%s.%N) $(cat /sys/class/net/$NEAR_DEV/statistics/tx_bytes)"; sleep 0.2; done) >"$samples" &
            sampler=$!
            t0=$(date +%s.%N)
            blat sync --target "$t" >/dev/null
            t1=$(date +%s.%N)
            kill "$sampler"
            wait "$sampler" 2>/dev/null || true
            awk -v want="$want" -v t0="$t0" -v t1="$t1" -v payload="$payload" '
                NR == 1 { b0 = $2 } { t[NR] = $1; b[NR] = $2 - b0 }
                END {
                    total = b[NR]
                    for (i = 1; i <= NR; i++) {
                        if (lo == "" && b[i] >= 0.1 * total) lo = i
                        if (b[i] <= 0.9 * total) hi = i
                    }
                    mid = (b[hi] - b[lo]) / (t[hi] - t[lo])
                    printf "%.4f %.4f %.4f\n", mid / want, mid * payload / total / want, payload / (t1 - t0) / want
                }' "$samples" >>"$WORK/$t"
        done
        printf '  bwlimit = "%s": link %s, stream %s, whole %s\n' \
            "${t#bw}m" "$(median "$WORK/$t" 1)" "$(median "$WORK/$t" 2)" "$(median "$WORK/$t" 3)"
    done
fi
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
