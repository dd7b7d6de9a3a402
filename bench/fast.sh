#!/usr/bin/env bash
# bench/fast.sh [SAMPLES] — latency of fast transfer: from writing a tag to
# the package being visible on the target, with `blat fast --watch` and
# default settings (fast_poll 5s, gzip), as cron or systemd run it.
#
# Why: issue 4 promises that a released package reaches every target within
# 5 seconds (goal: worst < 5 s, median < 3 s). This measures exactly that
# path: `blat tag`, the watcher waking, stat on the target, pack + send +
# verify + rename on the target, the tag removed.
#
# Setup (in $BENCH_DIR, default /tmp/blat-bench-fast, replaced on each run):
# an archive with SAMPLES+1 released package-versions big/0 … big/N, each one
# file of $SIZE_MIB MiB (default 10) of random bytes (does not compress) plus
# a descpkg; one target `bench`:
#   TRANSPORT=ssh (default): a real OpenSSH server (/usr/sbin/sshd) on
#     127.0.0.1 at a free port, logging in as user blattest (created when
#     missing; root needed) or as yourself when not root. Loopback: no WAN
#     latency or bandwidth limit is in these figures.
#   TRANSPORT=local: a local directory target (same receiver, run by sh).
# One `blat fast --all --watch` runs for the whole bench. big/0 is tagged
# first and reported apart ("cold": includes the SSH connection and the
# receiver's install); then each sample waits a random 0.3–1.5 s, writes
# its tag with `blat tag`, and polls every 5 ms until the version directory
# appears on the target (it is renamed into place whole, so appearing means
# complete).
#
# Prints each sample, then median and worst. Builds blat in release mode
# without the S3 feature (BLAT=/path/to/blat skips the build).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SAMPLES=${1:-20}
SIZE_MIB=${SIZE_MIB:-10}
TRANSPORT=${TRANSPORT:-ssh}
WORK=${BENCH_DIR:-/tmp/blat-bench-fast}

log() { printf '[bench] %s\n' "$*" >&2; }

if [ -z "${BLAT:-}" ]; then
    log "building blat (release, no S3)"
    cargo build -q --release --no-default-features --bin blat
    BLAT=$PWD/target/release/blat
fi

if [ -d "$WORK" ]; then chmod -R u+w "$WORK" 2>/dev/null || true; rm -rf "$WORK"; fi
mkdir -p "$WORK"/{archive,config/targets,state,tags}
chmod 755 "$WORK"

log "archive: $((SAMPLES + 1)) package-versions of $SIZE_MIB MiB"
head -c $((SIZE_MIB << 20)) /dev/urandom >"$WORK/blob"
for i in $(seq 0 "$SAMPLES"); do
    d=$WORK/archive/big/$i
    mkdir -p "$d"
    printf 'Package: big\nVersion: %s\n' "$i" >"$d/descpkg"
    cp "$WORK/blob" "$d/blob.bin"
    chmod -R a-w "$d"
done

cat >"$WORK/config/blat.toml" <<EOF
archive = "$WORK/archive"
state_dir = "$WORK/state"
tag_dir = "$WORK/tags"
[release_manager]
kind = "sqlite"
path = "$WORK/rm.sql"
EOF
: >"$WORK/rm.sql"

SSHD_PID=
WATCH_PID=
cleanup() {
    [ -n "$WATCH_PID" ] && kill "$WATCH_PID" 2>/dev/null || true
    [ -n "$SSHD_PID" ] && kill "$SSHD_PID" 2>/dev/null || true
}
trap cleanup EXIT

if [ "$TRANSPORT" = ssh ]; then
    [ -x /usr/sbin/sshd ] || { log "/usr/sbin/sshd missing (apt-get install openssh-server)"; exit 2; }
    if [ "$(id -u)" = 0 ]; then
        USER_=${BLAT_TEST_SSH_USER:-blattest}
        id "$USER_" >/dev/null 2>&1 || useradd -m -s /bin/sh "$USER_"
        usermod -p '*' "$USER_"
        mkdir -p /run/sshd
    else
        USER_=$(id -un)
    fi
    S=$WORK/sshd
    mkdir -p "$S/home/dpkg_archive"
    ssh-keygen -q -t ed25519 -N '' -f "$S/host_ed25519"
    ssh-keygen -q -t ed25519 -N '' -f "$S/id_ed25519"
    cp "$S/id_ed25519.pub" "$S/authorized_keys"
    chmod 755 "$S" "$S/home"
    chmod 644 "$S/authorized_keys"
    [ "$(id -u)" = 0 ] && chown -R "$USER_:" "$S/home"
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    cat >"$S/sshd_config" <<EOF
Port $PORT
ListenAddress 127.0.0.1
HostKey $S/host_ed25519
PidFile none
AuthorizedKeysFile $S/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowUsers $USER_
SetEnv HOME=$S/home
PrintMotd no
EOF
    /usr/sbin/sshd -D -e -f "$S/sshd_config" 2>"$S/sshd.log" &
    SSHD_PID=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
        sleep 0.05
    done
    echo "[127.0.0.1]:$PORT $(cat "$S/host_ed25519.pub")" >"$S/known_hosts"
    cat >"$WORK/config/targets/bench.conf" <<EOF
kind = "archive"
transport = "ssh"
host = "127.0.0.1"
port = $PORT
user = "$USER_"
identity = "$S/id_ed25519"
known_hosts = "$S/known_hosts"
EOF
    TARGET_ARCHIVE=$S/home/dpkg_archive
else
    TARGET_ARCHIVE=$WORK/target
    cat >"$WORK/config/targets/bench.conf" <<EOF
kind = "archive"
transport = "local"
path = "$TARGET_ARCHIVE"
EOF
fi

export BLAT_CONFIG=$WORK/config
"$BLAT" -q fast --all --watch 1h >"$WORK/fast.out" 2>"$WORK/fast.err" &
WATCH_PID=$!
sleep 1

log "transport $TRANSPORT, $SAMPLES samples of $SIZE_MIB MiB, watcher pid $WATCH_PID"
python3 - "$BLAT" "$TARGET_ARCHIVE" "$SAMPLES" "$TRANSPORT" "$SIZE_MIB" <<'EOF'
import os, random, statistics, subprocess, sys, time

blat, target, samples, transport, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
random.seed(4)

def sample(version):
    visible = os.path.join(target, "big", str(version))
    start = time.monotonic()
    subprocess.run([blat, "-q", "tag", "big", str(version)], check=True, stdout=subprocess.DEVNULL)
    while not os.path.isdir(visible):
        if time.monotonic() - start > 60:
            sys.exit(f"big/{version} did not arrive within 60 s")
        time.sleep(0.005)
    return time.monotonic() - start

cold = sample(0)
print(f"cold (first tag of the watcher: connection, receiver install): {cold:.3f} s")
times = []
for v in range(1, samples + 1):
    time.sleep(random.uniform(0.3, 1.5))
    t = sample(v)
    times.append(t)
    print(f"sample {v:2d}: {t:.3f} s")
times.sort()
print(f"fast --watch, {transport} target, {size} MiB package, {samples} samples: "
      f"median {statistics.median(times):.3f} s, worst {times[-1]:.3f} s, best {times[0]:.3f} s")
EOF
