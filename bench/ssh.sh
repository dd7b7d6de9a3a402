#!/usr/bin/env bash
# Benchmark of issue 3: `blat sync` to an SSH target against what a user would
# run instead, over the same OpenSSH server on loopback, in the same run:
#
#   big       one package-version of 4 x 200 MiB of random bytes: blat
#             (compression none) vs `tar | ssh tar` vs `tar | ssh cat >/dev/null`
#   text      200 package-versions of text-like files (gen-archive --content
#             text, ~210 MiB, ~3x under gzip): blat's defaults and each
#             compression vs rsync -a, rsync -az, tar -z | ssh tar -z
#   bulk      ~1 GiB in 500 package-versions (gen-archive, 550 files each) to
#             an empty target: blat (compression none, gzip) vs
#             `tar -cf - | ssh … tar -xpf -` (and with -z) vs `rsync -a` (-az)
#   tiny      2,000 package-versions of 3 files of 1 KiB: blat vs rsync -a
#   nochange  no-change sync at 5,000 × 40 and 20,000 × 40 files: blat vs
#             `rsync -a -n` over ssh
#   bigtarget one target of 100,000 package-versions (4,000 packages × 25
#             versions, descpkg only; BIG_PACKAGES, BIG_VERSIONS), up to
#             date: no-change sync (read from the target's index), the full
#             check (`sync --verify`: a walk of the target), `rsync -a -n`;
#             and the master's peak RSS of each blat run (/usr/bin/time)
#
# Every figure is the median of RUNS runs. The tools take turns, run by run,
# so that load from elsewhere on a shared machine falls on all of them
# alike; the target is emptied (and the disk synced, and left to settle:
# SETTLE) before each run of a transfer, outside the timing. sshd offers one
# cipher, CIPHER (aes128-gcm@openssh.com), so every tool uses the same.
#
#   bench/ssh.sh                          # RUNS=5, everything
#   RUNS=5 CASES="tiny nochange" NOCHANGE="5000x40" bench/ssh.sh
#   BLAT=/tmp/other/blat BLAT_PARALLEL=2 CASES=tiny bench/ssh.sh   # another build, parallel = 2
#
# SLOWLINK=1 runs against the sshd of bench/slowlink (brought up when it
# is not), over a 100 Mbit/s link, instead of a private one on loopback:
#
#   SLOWLINK=1 CASES=text bench/ssh.sh    # then: bench/slowlink down
#
# Needs root (to run sshd for the unprivileged target user, `blattest`,
# created when missing) or runs sshd as yourself; openssh-server, rsync.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
WORK=${BLAT_BENCH_DIR:-/tmp/blat-bench-ssh}
CASES=${CASES:-"bulk tiny nochange"}
NOCHANGE=${NOCHANGE:-"5000x40 20000x40"}
# One cipher for every tool (sshd offers only it): AES-GCM, AES-NI's best.
CIPHER=${CIPHER:-aes128-gcm@openssh.com}
for tool in rsync ssh ssh-keygen /usr/sbin/sshd; do
    command -v "$tool" >/dev/null || { echo "bench/ssh.sh: $tool is needed (scripts/test-env start installs it)" >&2; exit 1; }
done

# BLAT=path/to/blat compares another build (then nothing is built here).
if [ -z "${BLAT:-}" ]; then
    cargo build --release -q
    BLAT=$PWD/target/release/blat
fi
mkdir -p "$WORK"

# ---------------------------------------------------------------- sshd

# A private sshd on 127.0.0.1 (loopback), or with SLOWLINK=1 the one of
# bench/slowlink, in a network namespace behind a 100 Mbit/s veth pair.
HOST=127.0.0.1
if [ "${SLOWLINK:-0}" = 1 ]; then
    [ -f "${SLOWLINK_DIR:-/tmp/blat-slowlink}/env" ] || bench/slowlink up
    # shellcheck disable=SC1090
    source <(bench/slowlink env)
    TUSER=$SLOWLINK_USER HOST=$SLOWLINK_HOST PORT=$SLOWLINK_PORT KEY=$SLOWLINK_IDENTITY
    KH=$SLOWLINK_KNOWN_HOSTS ARCH=$SLOWLINK_ARCHIVE THOME=$SLOWLINK_HOME
    # That sshd offers every cipher: the pipelines ask for CIPHER.
    SSH="$SLOWLINK_SSH -c $CIPHER"
    REMOTE=$TUSER@$HOST
    LINK="slow link ($SLOWLINK_RATE, veth + tbf) to $HOST:$PORT"
else
    if [ "$(id -u)" = 0 ]; then
        TUSER=${BLAT_TEST_SSH_USER:-blattest}
        id "$TUSER" >/dev/null 2>&1 || useradd -m -s /bin/sh "$TUSER"
        usermod -p '*' "$TUSER"
        install -d -m755 /run/sshd
    else
        TUSER=$(id -un)
    fi
    SRV=$WORK/sshd
    rm -rf "$SRV"
    install -d -m755 "$SRV"
    for k in ed25519 ecdsa; do ssh-keygen -q -t "$k" -N '' -f "$SRV/host_$k"; done
    KEY=$SRV/id_ed25519
    ssh-keygen -q -t ed25519 -N '' -f "$KEY"
    install -m644 "$KEY.pub" "$SRV/authorized_keys"
    THOME=$SRV/home
    ARCH=$THOME/dpkg_archive
    install -d -m755 "$THOME" "$ARCH"
    [ "$(id -u)" = 0 ] && chown -R "$TUSER:" "$THOME"
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    cat >"$SRV/sshd_config" <<EOF
Port $PORT
ListenAddress 127.0.0.1
HostKey $SRV/host_ed25519
HostKey $SRV/host_ecdsa
PidFile none
AuthorizedKeysFile $SRV/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowUsers $TUSER
SetEnv HOME=$THOME
MaxStartups 100
Ciphers $CIPHER
EOF
    /usr/sbin/sshd -D -e -f "$SRV/sshd_config" 2>"$SRV/sshd.log" &
    SSHD_PID=$!
    cleanup() { kill "$SSHD_PID" 2>/dev/null || true; }
    trap cleanup EXIT
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
        sleep 0.1
    done
    KH=$SRV/known_hosts
    echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$SRV/host_ed25519.pub")" >"$KH"
    SSH="ssh -p $PORT -i $KEY -o UserKnownHostsFile=$KH -o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes"
    REMOTE=$TUSER@127.0.0.1
    $SSH "$REMOTE" true || { cat "$SRV/sshd.log" >&2; exit 1; }
    LINK="sshd on 127.0.0.1:$PORT"
fi

# ---------------------------------------------------------------- helpers

# An empty target archive, its writes flushed, the receiver kept installed.
# Then SETTLE seconds of rest: for 30 s after a mass delete, ext4 without a
# journal (this VM's root file system) searches past the recently deleted
# inodes on every create (perf: recently_deleted() under ext4_create), which
# made whichever tool ran right after a reset pay for the delete, up to 3x
# on 275,000 files.
SETTLE=${SETTLE:-35}
reset_target() {
    if [ -d "$ARCH" ]; then chmod -R u+w "$ARCH" && rm -rf "$ARCH"; fi
    install -d -m755 "$ARCH"
    [ "$(id -u)" = 0 ] && chown "$TUSER:" "$ARCH"
    sync
    sleep "$SETTLE"
}

# ssh_target DIR NAME COMPRESSION [SSH_CLIENT]: a target conf for the
# generated world in DIR; an empty COMPRESSION leaves blat's default.
ssh_target() {
    cat >"$1/config/targets/$2.conf" <<EOF
kind = "archive"
transport = "ssh"
host = "$HOST"
port = $PORT
user = "$TUSER"
identity = "$KEY"
known_hosts = "$KH"
remote_archive = "$ARCH"
projects = ["BENCH"]
${3:+compression = \"$3\"}
${4:+ssh_client = \"$4\"}
${BLAT_PARALLEL:+parallel = $BLAT_PARALLEL}
EOF
}

# gen DIR ARGS...: a generated world, reused when it exists.
gen() {
    local dir=$1
    shift
    [ -f "$dir/config/blat.toml" ] || bench/gen-archive --out "$dir" --force -q "$@" >&2
    ssh_target "$dir" none none
    ssh_target "$dir" gzip gzip
}

# time_of CMD...: seconds, to the millisecond.
time_of() {
    local t0=$EPOCHREALTIME
    "$@" >/dev/null 2>"$WORK/last.err" || { echo "bench/ssh.sh: failed: $*" >&2; cat "$WORK/last.err" >&2; exit 1; }
    awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.3f\n", b - a}'
}

# rounds RESET NAME CMD [NAME CMD]...: RUNS rounds of every tool in turn,
# RESET before each run, so that load from elsewhere falls on all tools
# alike; leaves the median seconds of each in MEDIAN[NAME].
declare -A MEDIAN SPREAD
rounds() {
    local reset=$1 i
    shift
    local -a names=() cmds=() times=()
    while [ $# -gt 0 ]; do
        names+=("$1")
        cmds+=("$2")
        times+=("")
        shift 2
    done
    for _ in $(seq "$RUNS"); do
        for i in "${!names[@]}"; do
            $reset
            # shellcheck disable=SC2086 # a command line of plain words
            times[i]+="$(time_of ${cmds[i]}) "
        done
    done
    echo "load after the runs: $(uptime | sed 's/.*load average: //')"
    for i in "${!names[@]}"; do
        # shellcheck disable=SC2086 # a list of numbers
        MEDIAN[${names[i]}]=$(printf '%s\n' ${times[i]} | sort -n | awk -v n="$RUNS" '{a[NR]=$1} END {print a[int((n+1)/2)]}')
        # shellcheck disable=SC2086 # a list of numbers
        SPREAD[${names[i]}]=$(printf '%s\n' ${times[i]} | sort -n | awk '{a[NR]=$1} END {printf "%.1f-%.1f", a[1], a[NR]}')
    done
}

noop() { :; }

# table TITLE BYTES NAME...: the medians; MB/s when BYTES > 0; time
# relative to the first NAME (blat).
table() {
    local title=$1 bytes=$2 n
    shift 2
    printf '\n%s\n%-28s %9s %11s %9s %s\n' "$title" tool median_s spread_s MB/s "time vs blat"
    local base=${MEDIAN[$1]}
    for n in "$@"; do
        awk -v n="$n" -v t="${MEDIAN[$n]}" -v s="${SPREAD[$n]}" -v b="$base" -v bytes="$bytes" \
            'BEGIN {printf "%-28s %9.3f %11s %9.1f %6.2fx\n", n, t, s, (bytes > 0 ? bytes / t / 1e6 : 0), t / b}'
    done
}

tree_bytes() { du -sb --apparent-size "$1" | cut -f1; }

check_copy() { # SRC: the target holds as many files as the source
    local want have
    want=$(find "$1" -mindepth 3 | wc -l)
    have=$(find "$ARCH" -mindepth 3 -path "$ARCH/.dpkg_archive" -prune -o -print | wc -l)
    [ "$want" = "$have" ] || { echo "bench/ssh.sh: target has $have entries, source $want" >&2; exit 1; }
}

blat_sync() { "$BLAT" -q -c "$1/config" sync --target "$2"; }
blat_verify() { "$BLAT" -q -c "$1/config" sync --verify --target "$2"; }
tar_cat() { tar -C "$1/archive" -cf - . | $SSH "$REMOTE" "cat >/dev/null"; }
tar_pipe() { tar -C "$1/archive" -cf - . | $SSH "$REMOTE" "tar -C $ARCH -xpf -"; }
tarz_pipe() { tar -C "$1/archive" -czf - . | $SSH "$REMOTE" "tar -C $ARCH -xzpf -"; }
rsync_a() { rsync -a -e "$SSH" "$1/archive/" "$REMOTE:$ARCH/"; }
rsync_az() { rsync -az -e "$SSH" "$1/archive/" "$REMOTE:$ARCH/"; }
rsync_an() { rsync -a -n -e "$SSH" "$1/archive/" "$REMOTE:$ARCH/"; }

# peak_rss NAME CMD...: the median peak RSS (MiB) of RUNS runs of CMD, in
# PEAK[NAME], and the median CPU seconds (user + system) in CPU[NAME]: on
# a loaded machine the CPU time says what the wall time would be on an
# idle one.
declare -A PEAK CPU
peak_rss() {
    local name=$1 kb=() cpu=()
    shift
    for _ in $(seq "$RUNS"); do
        /usr/bin/time -f '%M %U %S' -o "$WORK/rss" "$@" >/dev/null 2>"$WORK/last.err" ||
            { echo "bench/ssh.sh: failed: $*" >&2; cat "$WORK/last.err" >&2; exit 1; }
        kb+=("$(awk '{print $1}' "$WORK/rss")")
        cpu+=("$(awk '{print $2 + $3}' "$WORK/rss")")
    done
    PEAK[$name]=$(printf '%s\n' "${kb[@]}" | sort -n | awk -v n="$RUNS" '{a[NR]=$1} END {printf "%.1f", a[int((n+1)/2)] / 1024}')
    CPU[$name]=$(printf '%s\n' "${cpu[@]}" | sort -n | awk -v n="$RUNS" '{a[NR]=$1} END {printf "%.2f", a[int((n+1)/2)]}')
}

# receiver_cpu ARGS...: the median CPU seconds of the receiver on the
# target (`blat-receiver ARGS`, over ssh, /usr/bin/time there).
receiver_cpu() {
    local cpu=()
    for _ in $(seq "$RUNS"); do
        cpu+=("$($SSH "$REMOTE" "/usr/bin/time -f '%U %S' ~/.blat/blat-receiver -a $ARCH $* 2>&1 >/dev/null" | tail -1 | awk '{print $1 + $2}')")
    done
    printf '%s\n' "${cpu[@]}" | sort -n | awk -v n="$RUNS" '{a[NR]=$1} END {printf "%.2f", a[int((n+1)/2)]}'
}

# The bigtarget case: the target is made on disk (a copy of the source that keeps
# modes, mtimes and links, owned by the target user: what a sync leaves),
# then one unmeasured sync writes the PackageList and builds the target's
# index (the first sync of a target is a full check). The Release Manager
# is a SQLite file (a .sql fixture would be loaded at every run).
# verify_every = 0 so that the no-change runs all read the index: the
# periodic full check costs what the --verify row says, once every
# verify_every syncs.
bigtarget_case() {
    local d=$WORK/bigtarget n=$((${BIG_PACKAGES:-4000} * ${BIG_VERSIONS:-25}))
    gen "$d" --packages "${BIG_PACKAGES:-4000}" --versions "${BIG_VERSIONS:-25}" --files 1 \
        --size-mix tiny --releases 10
    [ -f "$d/rm.db" ] || python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[2]); c.executescript(open(sys.argv[1]).read()); c.commit()' "$d/rm.sql" "$d/rm.db"
    sed -i "s|$d/rm.sql|$d/rm.db|" "$d/config/blat.toml"
    echo "verify_every = 0" >>"$d/config/targets/none.conf"
    if [ ! -f "$ARCH/.dpkg_archive/blat-index.txt" ]; then
        SETTLE=0 reset_target
        cp -a "$d/archive/." "$ARCH/"
        [ "$(id -u)" = 0 ] && chown -R "$TUSER:" "$ARCH"
        blat_sync "$d" none >/dev/null 2>&1
    fi
    check_copy "$d/archive"
    rounds noop "blat sync (index)" "blat_sync $d none" "blat sync --verify" "blat_verify $d none" \
        "rsync -a -n" "rsync_an $d"
    table "bigtarget: $n package-versions on one target, up to date" 0 \
        "blat sync (index)" "blat sync --verify" "rsync -a -n"
    peak_rss "sync" "$BLAT" -q -c "$d/config" sync --target none
    peak_rss "verify" "$BLAT" -q -c "$d/config" sync --verify --target none
    printf 'master peak RSS (median of %s): blat sync %s MiB, blat sync --verify %s MiB\n' \
        "$RUNS" "${PEAK[sync]}" "${PEAK[verify]}"
    printf 'CPU seconds (user + sys, medians): master: sync %s, sync --verify %s; receiver: list (index) %s, list --full (no index write) %s\n' \
        "${CPU[sync]}" "${CPU[verify]}" "$(receiver_cpu list --read-only)" "$(receiver_cpu list --full --read-only)"
    echo "machine load: $(uptime)"
    awk -v b="${MEDIAN[blat sync (index)]}" -v m="${PEAK[sync]}" -v v="${MEDIAN[blat sync --verify]}" \
        -v r="${MEDIAN[rsync -a -n]}" 'BEGIN {
        printf "goals: no-change sync %.2f s (<= 1 s), master peak %.1f MiB (<= 100 MB); full check %.2f s (%.1fx faster than rsync -a -n)\n",
            b, m, v, r / v }'
}

echo "blat over SSH: $(nproc) CPUs, $LINK as $TUSER, RUNS=$RUNS, $(ssh -V 2>&1), load: $(uptime | sed 's/.*load average: //')"

# ---------------------------------------------------------------- cases

for c in $CASES; do
    case $c in
    bulk)
        d=$WORK/bulk
        gen "$d" --packages 500 --versions 1 --files 550 --size-mix mixed
        bytes=$(tree_bytes "$d/archive")
        # Warm the page cache and install the receiver, unmeasured.
        reset_target; blat_sync "$d" none >/dev/null 2>&1; check_copy "$d/archive"
        rounds reset_target "blat (compression none)" "blat_sync $d none" "tar | ssh tar" "tar_pipe $d" \
            "rsync -a" "rsync_a $d" "blat (gzip)" "blat_sync $d gzip" "tar -z | ssh tar -z" "tarz_pipe $d" \
            "rsync -az" "rsync_az $d"
        table "bulk: 500 package-versions, $((bytes >> 20)) MiB, empty target" "$bytes" \
            "blat (compression none)" "tar | ssh tar" "rsync -a" "blat (gzip)" "tar -z | ssh tar -z" "rsync -az"
        awk -v b="${MEDIAN[blat (compression none)]}" -v t="${MEDIAN[tar | ssh tar]}" -v r="${MEDIAN[rsync -a]}" \
            -v bz="${MEDIAN[blat (gzip)]}" -v tz="${MEDIAN[tar -z | ssh tar -z]}" 'BEGIN {
            printf "goals: blat none vs tar: %.2fx (<= 1), vs rsync -a: %.2fx (< 1); blat gzip vs tar -z: %.2fx (< 1)\n",
                b / t, b / r, bz / tz }'
        ;;
    text)
        # Text-like, compressible content: blat's defaults against each
        # compression and what a user would run instead.
        d=$WORK/text
        [ -f "$d/config/blat.toml" ] || bench/gen-archive --out "$d" --force -q --packages "${TEXT_PACKAGES:-200}" \
            --versions 1 --files "${TEXT_FILES:-275}" --size-mix mixed --content text >&2
        ssh_target "$d" default ""
        for c in none gzip:1 gzip:6 zstd:1 zstd:3; do ssh_target "$d" "${c/:/}" "$c"; done
        bytes=$(tree_bytes "$d/archive")
        reset_target; blat_sync "$d" default >/dev/null 2>&1; check_copy "$d/archive"
        rounds reset_target "blat (defaults)" "blat_sync $d default" "blat (none)" "blat_sync $d none" \
            "blat (gzip:1)" "blat_sync $d gzip1" "blat (gzip:6)" "blat_sync $d gzip6" \
            "blat (zstd:1)" "blat_sync $d zstd1" "blat (zstd:3)" "blat_sync $d zstd3" \
            "rsync -a" "rsync_a $d" "rsync -az" "rsync_az $d" "tar -z | ssh tar -z" "tarz_pipe $d"
        table "text: $(find "$d/archive" -mindepth 2 -maxdepth 2 -type d | wc -l) package-versions, $((bytes >> 20)) MiB of text-like files, empty target, $LINK" \
            "$bytes" "blat (defaults)" "blat (none)" "blat (gzip:1)" "blat (gzip:6)" "blat (zstd:1)" "blat (zstd:3)" \
            "rsync -a" "rsync -az" "tar -z | ssh tar -z"
        best=$(printf '%s\n' "${MEDIAN[rsync -a]}" "${MEDIAN[rsync -az]}" "${MEDIAN[tar -z | ssh tar -z]}" | sort -n | head -1)
        awk -v b="${MEDIAN[blat (defaults)]}" -v t="$best" -v n="${MEDIAN[blat (none)]}" 'BEGIN {
            printf "goals: blat defaults vs the best other tool: %.2fx (<= 1); vs blat none: %.2fx (<= 1)\n", b / t, b / n }'
        ;;
    big)
        # One package-version of 4 x 200 MiB of random bytes.
        d=$WORK/big
        if [ ! -f "$d/config/blat.toml" ]; then
            bench/gen-archive --out "$d" --force -q --packages 1 --versions 1 --files 1 --alias-every 0 >&2
            v=$d/archive/pkg00000/1.0.0
            chmod u+w "$v" && mkdir "$v/data"
            for i in 1 2 3 4; do head -c 200M /dev/urandom >"$v/data/blob$i"; done
            chmod 444 "$v"/data/* && chmod 555 "$v/data" "$v" && touch -r "$v/descpkg" "$v"/data/* "$v/data" "$v"
        fi
        ssh_target "$d" none none
        ssh_target "$d" libssh2 none libssh2
        bytes=$(tree_bytes "$d/archive")
        reset_target; blat_sync "$d" none >/dev/null 2>&1; check_copy "$d/archive"
        rounds reset_target "blat (compression none)" "blat_sync $d none" "tar | ssh tar" "tar_pipe $d" \
            "tar | ssh cat >/dev/null" "tar_cat $d" "blat (libssh2, none)" "blat_sync $d libssh2"
        table "big: 1 package-version of 4 x 200 MiB, incompressible, empty target" "$bytes" \
            "blat (compression none)" "tar | ssh tar" "tar | ssh cat >/dev/null" "blat (libssh2, none)"
        awk -v b="${MEDIAN[blat (compression none)]}" -v t="${MEDIAN[tar | ssh tar]}" \
            'BEGIN {printf "goal: blat none vs tar | ssh tar: %.2fx (<= 1.1)\n", b / t}'
        ;;
    tiny)
        d=$WORK/tiny
        gen "$d" --packages 2000 --versions 1 --files 3 --size-mix tiny
        bytes=$(tree_bytes "$d/archive")
        reset_target; blat_sync "$d" gzip >/dev/null 2>&1; check_copy "$d/archive"
        rounds reset_target "blat (gzip)" "blat_sync $d gzip" "blat (compression none)" "blat_sync $d none" \
            "rsync -a" "rsync_a $d" "tar | ssh tar" "tar_pipe $d"
        table "tiny: 2000 package-versions of 3 x 1 KiB, empty target" "$bytes" \
            "blat (gzip)" "blat (compression none)" "rsync -a" "tar | ssh tar"
        awk -v b="${MEDIAN[blat (gzip)]}" -v r="${MEDIAN[rsync -a]}" \
            'BEGIN {printf "goal: blat vs rsync -a: %.2fx (<= 1)\n", b / r}'
        ;;
    nochange)
        for n in $NOCHANGE; do
            d=$WORK/nochange-$n
            gen "$d" --packages "${n%x*}" --versions 1 --files "${n#*x}"
            reset_target; blat_sync "$d" none >/dev/null 2>&1; check_copy "$d/archive"
            rounds noop "blat sync" "blat_sync $d none" "rsync -a -n" "rsync_an $d"
            table "no change: $n (package-versions x files), target up to date" 0 "blat sync" "rsync -a -n"
            awk -v b="${MEDIAN[blat sync]}" -v r="${MEDIAN[rsync -a -n]}" -v n="$n" 'BEGIN {
                printf "goal: blat %.1fx faster than rsync -a -n (%s)\n", r / b, (n == "5000x40" ? ">= 4x" : ">= 10x") }'
        done
        ;;
    bigtarget)
        bigtarget_case
        ;;
    *)
        echo "bench/ssh.sh: unknown case $c (big, text, bulk, tiny, nochange, bigtarget)" >&2
        exit 2
        ;;
    esac
done
