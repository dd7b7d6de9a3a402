#!/usr/bin/env bash
# bench/s3.sh — blat s3sync against the tool a user would reach for instead
# (awscli's `aws s3 sync`), on the same S3 server, in the same run.
#
# Why: a CI bucket is synced every few minutes. A pass that changes nothing
# must cost next to nothing (no request per object: S3 bills and throttles
# per request), and a pass that uploads must keep the link busy.
#
# Part 1, no-change pass: PVS (default 5000) package-versions already in the
# bucket (bench/gen-archive, tiny files, no aliases, all releases s3sync = 1).
#   - blat s3sync with its state file: wall time and requests;
#   - `aws s3 sync --dryrun` of a local mirror of the same ZIPs: wall time
#     and requests;
#   - blat's pass after its state file is deleted (one HEAD per object, once),
#     and the pass after that.
#   Requests are counted in the server's own request log (and for blat also in
#   its --json report), so both tools are counted the same way.
# Part 2, upload throughput: GIB (default 1) GiB of packages (64 per GiB, four
# 4 MiB files of random bytes each: incompressible, like the archive's build
# outputs at worst) uploaded into an empty bucket:
#   - blat s3sync (zip + upload, streamed);
#   - Info-ZIP `zip -r` of each package, then `aws s3 sync` of the ZIPs.
#
# Each figure of part 1 is the best and median of RUNS (default 3) runs.
# Needs: scripts/test-env (python3 with moto[server] and awscli), zip. Runs its
# own moto_server on 127.0.0.1:$BENCH_S3_PORT (default 54341) so that its log
# counts this benchmark only; stopped at the end. Scratch: $BENCH_DIR
# (default /tmp/blat-bench-s3), replaced on each run. BLAT=path uses another
# binary (default: a release build made here, copied into the scratch dir).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PVS=${PVS:-5000}
GIB=${GIB:-1}
RUNS=${RUNS:-3}
PORT=${BENCH_S3_PORT:-54341}
WORK=${BENCH_DIR:-/tmp/blat-bench-s3}
BLAT=${BLAT:-}
ENDPOINT=http://127.0.0.1:$PORT

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

scripts/test-env start >/dev/null
# shellcheck disable=SC1090
source <(scripts/test-env env)
command -v aws >/dev/null || die "awscli not found (scripts/test-env installs it with pip)"
command -v zip >/dev/null || die "zip (Info-ZIP) not found: apt-get install zip"

if [ -d "$WORK" ]; then chmod -R u+w "$WORK" && rm -rf "$WORK"; fi
mkdir -p "$WORK"

if [ -z "$BLAT" ]; then
    log "building blat (release, default features)"
    cargo build -q --release --bin blat
    # A copy: the shared target dir may get a build with other features.
    cp target/release/blat "$WORK/blat"
    BLAT=$WORK/blat
fi
BLAT=$(realpath "$BLAT")
"$BLAT" s3sync --help >/dev/null 2>&1 || die "$BLAT has no s3sync (built without the s3 feature?)"

# ---- our own S3 server, whose log counts requests ----------------------------
PY=$(command -v python3)
"$PY" -m moto.server -H 127.0.0.1 -p "$PORT" >"$WORK/moto.log" 2>&1 &
MOTO=$!
trap 'kill "$MOTO" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break
    sleep 0.2
done
(exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null || die "moto_server did not start on $PORT (see $WORK/moto.log)"

requests() { sleep 0.3; grep -cE '"(GET|PUT|POST|HEAD|DELETE) ' "$WORK/moto.log" || true; }
now_ms() { date +%s%3N; }
awss3() { aws --endpoint-url "$ENDPOINT" "$@"; }
# best and median of a list of numbers
stats() { tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {printf "best %s, median %s", a[1], a[int((NR+1)/2)]}'; }
# a field of blat's --json report of target s3
report() { "$PY" -c 'import json,sys; r=json.load(open(sys.argv[1]))["targets"][0]["report"]; print(eval(sys.argv[2], {}, r))' "$@"; }

s3_target() { # DIR BUCKET
    cat >"$1/config/targets/s3.conf" <<EOF
kind = "s3"
bucket = "$2"
prefix = "packages/"
endpoint = "$ENDPOINT"
region = "us-east-1"
EOF
}

# ---- part 1: no-change pass ----------------------------------------------------
NC=$WORK/nochange
log "part 1: generating $PVS package-versions"
bench/gen-archive --out "$NC" --packages "$PVS" --versions 1 --files 4 --size-mix tiny \
    --alias-every 0 --s3sync -q >/dev/null
s3_target "$NC" bench-nochange
awss3 s3 mb s3://bench-nochange >/dev/null

log "first pass: blat uploads $PVS ZIPs"
t0=$(now_ms)
"$BLAT" -c "$NC/config" -q --json s3sync --target s3 >"$WORK/first.json"
t1=$(now_ms)
uploaded=$(report "$WORK/first.json" 'len(uploaded)')
[ "$uploaded" = "$PVS" ] || die "first pass uploaded $uploaded, expected $PVS"
first_ms=$((t1 - t0))

log "mirroring the bucket for awscli"
awss3 s3 sync s3://bench-nochange/packages/ "$NC/mirror" --only-show-errors
pending=$(awss3 s3 sync --dryrun "$NC/mirror" s3://bench-nochange/packages/ | wc -l)
[ "$pending" = 0 ] || die "aws s3 sync --dryrun would still copy $pending files: not a no-change comparison"

blat_ms=() blat_req=() blat_list=() aws_ms=() aws_req=()
for run in $(seq "$RUNS"); do
    log "no-change run $run/$RUNS"
    r0=$(requests); t0=$(now_ms)
    "$BLAT" -c "$NC/config" -q --json s3sync --target s3 >"$WORK/nochange.json"
    t1=$(now_ms); r1=$(requests)
    [ "$(report "$WORK/nochange.json" 'len(uploaded)')" = 0 ] || die "a no-change pass uploaded something"
    blat_ms+=($((t1 - t0))); blat_req+=($((r1 - r0)))
    blat_list+=("$(report "$WORK/nochange.json" 'requests["list"]')")

    r0=$(requests); t0=$(now_ms)
    out=$(awss3 s3 sync --dryrun "$NC/mirror" s3://bench-nochange/packages/)
    t1=$(now_ms); r1=$(requests)
    [ -z "$out" ] || die "aws s3 sync --dryrun found changes"
    aws_ms+=($((t1 - t0))); aws_req+=($((r1 - r0)))
done

log "state file deleted: one HEAD per object, once"
rm -f "$NC/state/blat.db" "$NC/state/blat.db-wal" "$NC/state/blat.db-shm"
r0=$(requests); t0=$(now_ms)
"$BLAT" -c "$NC/config" -q --json s3sync --target s3 >"$WORK/lost.json"
t1=$(now_ms); r1=$(requests)
lost_ms=$((t1 - t0)); lost_req=$((r1 - r0))
lost_heads=$(report "$WORK/lost.json" 'requests["head"]')
lost_up=$(report "$WORK/lost.json" 'len(uploaded)')
r0=$(requests)
"$BLAT" -c "$NC/config" -q --json s3sync --target s3 >"$WORK/after.json"
after_req=$(( $(requests) - r0 ))

# ---- part 2: upload throughput ------------------------------------------------
UP=$WORK/upload
NPKG=${NPKG:-$((64 * GIB))}
log "part 2: generating $GIB GiB in $NPKG packages"
mkdir -p "$UP/config/targets" "$UP/state"
"$PY" - "$UP" "$NPKG" <<'EOF'
import os, sys
up, n = sys.argv[1], int(sys.argv[2])
rows = []
for i in range(n):
    d = os.path.join(up, "archive", f"big{i:04d}", "1.0")
    os.makedirs(os.path.join(d, "data"))
    with open(os.path.join(d, "descpkg"), "w") as f:
        f.write(f"Package: big{i:04d}\nVersion: 1.0\n")
    for j in range(4):
        with open(os.path.join(d, "data", f"blob{j}"), "wb") as f:
            f.write(os.urandom(4 << 20))
    for root, dirs, files in os.walk(d, topdown=False):
        for x in files:
            os.chmod(os.path.join(root, x), 0o444)
        os.chmod(root, 0o555)
    rows.append((i + 1, f"big{i:04d}"))
with open(os.path.join(up, "rm.sql"), "w") as f:
    f.write("""CREATE TABLE projects (project_id INTEGER PRIMARY KEY, name TEXT UNIQUE);
CREATE TABLE releases (release_id INTEGER PRIMARY KEY, project_id INTEGER, name TEXT, state TEXT, s3sync INTEGER);
CREATE TABLE packages (package_id INTEGER PRIMARY KEY, name TEXT UNIQUE);
CREATE TABLE package_versions (pv_id INTEGER PRIMARY KEY, package_id INTEGER, version TEXT);
CREATE TABLE release_content (release_id INTEGER, pv_id INTEGER);
INSERT INTO projects VALUES (1, 'BENCH');
INSERT INTO releases VALUES (1, 1, 'BIG', 'open', 1);
""")
    for pid, name in rows:
        f.write(f"INSERT INTO packages VALUES ({pid}, '{name}');\n")
        f.write(f"INSERT INTO package_versions VALUES ({pid}, {pid}, '1.0');\n")
        f.write(f"INSERT INTO release_content VALUES (1, {pid});\n")
with open(os.path.join(up, "config", "blat.toml"), "w") as f:
    f.write(f'archive = "{up}/archive"\nstate_dir = "{up}/state"\n'
            f'[release_manager]\nkind = "sqlite"\npath = "{up}/rm.sql"\n')
EOF
s3_target "$UP" bench-upload
awss3 s3 mb s3://bench-upload >/dev/null
src_bytes=$(du -sb "$UP/archive" | cut -f1)
sync

log "blat s3sync: zip + upload"
load_blat=$(cut -d' ' -f1 /proc/loadavg)
r0=$(requests); t0=$(now_ms)
"$BLAT" -c "$UP/config" -q --json s3sync --target s3 >"$WORK/upload.json"
t1=$(now_ms); r1=$(requests)
up_ms=$((t1 - t0)); up_req=$((r1 - r0))
up_bytes=$(report "$WORK/upload.json" 'bytes_uploaded')
[ "$(report "$WORK/upload.json" 'len(uploaded)')" = "$NPKG" ] || die "blat did not upload every package"

log "zip -r + aws s3 sync"
load_aws=$(cut -d' ' -f1 /proc/loadavg)
mkdir -p "$UP/zips"
t0=$(now_ms)
(cd "$UP/archive" && for p in *; do mkdir -p "$UP/zips/$p" && zip -qr -X "$UP/zips/$p/${p}_1.0.zip" "$p/1.0"; done)
t1=$(now_ms)
r0=$(requests)
awss3 s3 sync "$UP/zips" s3://bench-upload/awscli/ --only-show-errors
t2=$(now_ms); r1=$(requests)
zip_ms=$((t1 - t0)); awsup_ms=$((t2 - t1)); awsup_req=$((r1 - r0))
zips_bytes=$(du -sb "$UP/zips" | cut -f1)

mbps() { awk -v b="$1" -v ms="$2" 'BEGIN {printf "%.1f MB/s", b / 1e6 / (ms / 1000)}'; }

cat <<EOF

== blat s3sync vs awscli, moto_server on 127.0.0.1, $(nproc) CPUs, $(date -u +%Y-%m-%dT%H:%MZ)
part 1: $PVS package-versions in the bucket ($RUNS runs each)
  first upload (blat)                    $((first_ms)) ms
  no-change pass, blat s3sync            $(echo "${blat_ms[*]}" | stats) ms; requests ${blat_req[*]} (listing pages: ${blat_list[*]})
  no-change pass, aws s3 sync --dryrun   $(echo "${aws_ms[*]}" | stats) ms; requests ${aws_req[*]}
  blat, state file deleted               $lost_ms ms; requests $lost_req ($lost_heads HEAD), $lost_up re-uploaded
  blat, the pass after that              requests $after_req
part 2: upload of $((src_bytes / 1048576)) MiB ($NPKG packages, $src_bytes bytes of files)
  blat s3sync (zip + upload)             $up_ms ms, $up_req requests, $(mbps "$src_bytes" "$up_ms") ($up_bytes bytes of ZIPs; load average $load_blat at start)
  zip -r, then aws s3 sync               $((zip_ms + awsup_ms)) ms = zip $zip_ms + upload $awsup_ms, $awsup_req requests, $(mbps "$src_bytes" $((zip_ms + awsup_ms))) ($zips_bytes bytes of ZIPs; load average $load_aws at start)
EOF
