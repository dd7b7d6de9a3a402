#!/usr/bin/env bash
# Benchmark of `jump` (issue 15): what a jump host costs. Two network
# namespaces in a line (netns A joined to us, B joined to A only, neither
# forwarding); a jump host's sshd in A, a target's sshd in B that only A
# reaches. In the same run, tools taking turns run by run:
#
#   blat direct      blat sync to an archive on A's sshd (no jump host)
#   blat via jump    blat sync to B's sshd through A (jump = "...")
#   tar | ssh        tar -cf - | ssh A tar -xpf -
#   tar | ssh -J     the same to B, through A (OpenSSH's ProxyJump)
#
# on PACKAGES package-versions of one incompressible file of MIB MiB each
# (compression none), to an empty target each run. Every figure is the
# median of RUNS runs, with the fastest and slowest.
#
#   bench/jump.sh                        # RUNS=5, 8 x 32 MiB
#   RUNS=3 PACKAGES=4 MIB=64 bench/jump.sh
#   BLAT=/tmp/other/blat bench/jump.sh   # another build
#
# Needs root (namespaces, sshd for the target user `blattest`), iproute2,
# openssh-server and -client. Removes its namespaces and data on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
PACKAGES=${PACKAGES:-8}
MIB=${MIB:-32}
WORK=${BLAT_BENCH_DIR:-/tmp/blat-bench-jump}
[ "$(id -u)" = 0 ] || { echo "bench/jump.sh: needs root (network namespaces)" >&2; exit 1; }
for tool in ip ssh ssh-keygen /usr/sbin/sshd; do
    command -v "$tool" >/dev/null || { echo "bench/jump.sh: $tool is needed" >&2; exit 1; }
done
if [ -z "${BLAT:-}" ]; then
    cargo build --release -q
    BLAT=$PWD/target/release/blat
fi

TUSER=${BLAT_TEST_SSH_USER:-blattest}
id "$TUSER" >/dev/null 2>&1 || useradd -m -s /bin/sh "$TUSER"
usermod -p '*' "$TUSER"
install -d -m755 /run/sshd

# ---------------------------------------------------------------- network

NS_A=blat-bench-jump-a
NS_B=blat-bench-jump-b
NET_A=10.252.0   # us .1, A .2
NET_B=10.252.1   # A .1, B .2
A=$NET_A.2
B=$NET_B.2
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for ns in $NS_A $NS_B; do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
    done
    ip link del bjbench0 2>/dev/null || true
    ip route del unreachable "$NET_B.0/24" 2>/dev/null || true
    if [ -d "$WORK" ]; then chmod -R u+w "$WORK" && rm -rf "$WORK"; fi
}
trap cleanup EXIT
cleanup
mkdir -p "$WORK"
ip netns add $NS_A
ip netns add $NS_B
ip -n $NS_A link set lo up
ip -n $NS_B link set lo up
ip link add bjbench0 type veth peer name bjbench0p
ip link set bjbench0p netns $NS_A
ip addr add $NET_A.1/24 dev bjbench0
ip link set bjbench0 up
ip -n $NS_A addr add $A/24 dev bjbench0p
ip -n $NS_A link set bjbench0p up
ip link add bjbench1 type veth peer name bjbench1p
ip link set bjbench1 netns $NS_A
ip link set bjbench1p netns $NS_B
ip -n $NS_A addr add $NET_B.1/24 dev bjbench1
ip -n $NS_A link set bjbench1 up
ip -n $NS_B addr add $B/24 dev bjbench1p
ip -n $NS_B link set bjbench1p up
ip route add unreachable "$NET_B.0/24"

# ---------------------------------------------------------------- sshd

KEY=$WORK/id_ed25519
ssh-keygen -q -t ed25519 -N '' -f "$KEY"
KH=$WORK/known_hosts
: >"$KH"
# sshd NAME NS ADDR FORWARDING: a server with its own keys and home.
sshd() {
    local srv=$WORK/$1
    install -d -m755 "$srv" "$srv/home/dpkg_archive"
    chown -R "$TUSER:" "$srv/home"
    for k in ed25519 ecdsa; do ssh-keygen -q -t "$k" -N '' -f "$srv/host_$k"; done
    install -m644 "$KEY.pub" "$srv/authorized_keys"
    cat >"$srv/sshd_config" <<EOF
Port 22
ListenAddress $3
HostKey $srv/host_ed25519
HostKey $srv/host_ecdsa
PidFile none
AuthorizedKeysFile $srv/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowUsers $TUSER
SetEnv HOME=$srv/home
MaxStartups 100
AllowTcpForwarding $4
EOF
    ip netns exec "$2" /usr/sbin/sshd -D -e -f "$srv/sshd_config" 2>"$srv/sshd.log" &
    PIDS+=($!)
    echo "$3 $(cut -d' ' -f1,2 "$srv/host_ed25519.pub")" >>"$KH"
    for _ in $(seq 100); do grep -q "Server listening" "$srv/sshd.log" && return; sleep 0.1; done
    cat "$srv/sshd.log" >&2
    exit 1
}
sshd jumphost $NS_A $A yes
sshd target $NS_B $B no
ARCH_A=$WORK/jumphost/home/dpkg_archive
ARCH_B=$WORK/target/home/dpkg_archive

# OpenSSH with the same options at every hop (an ssh_config, since options
# on the command line do not reach a ProxyJump hop).
cat >"$WORK/ssh_config" <<EOF
Host *
  User $TUSER
  IdentityFile $KEY
  IdentitiesOnly yes
  UserKnownHostsFile $KH
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
EOF
SSH="ssh -F $WORK/ssh_config"
$SSH "$A" true
$SSH -J "$A" "$B" true

# ---------------------------------------------------------------- the world

W=$WORK/world
bench/gen-archive --out "$W/gen" --packages "$PACKAGES" --versions 1 --files 1 --size-mix tiny -q --force
for d in "$W"/gen/archive/*/*/; do
    chmod u+w "$d"
    head -c "$((MIB << 20))" /dev/urandom >"$d/blob.bin"
    chmod 444 "$d/blob.bin"
    chmod 555 "$d"
done
BYTES=$(du -sb --apparent-size "$W/gen/archive" | cut -f1)
conf() { # NAME HOST ARCHIVE [JUMP]
    cat >"$W/gen/config/targets/$1.conf" <<EOF
kind = "archive"
host = "$2"
user = "$TUSER"
identity = "$KEY"
known_hosts = "$KH"
remote_archive = "$3"
projects = ["BENCH"]
compression = "none"
${4:+jump = \"$4\"}
EOF
}
rm -f "$W/gen/config/targets/"*.conf
conf direct "$A" "$ARCH_A"
conf viajump "$B" "$ARCH_B" "$TUSER@$A"

# ---------------------------------------------------------------- runs

reset_targets() {
    for a in "$ARCH_A" "$ARCH_B"; do
        chmod -R u+w "$a" && rm -rf "$a"
        install -d -m755 -o "$TUSER" "$a"
    done
    sync
    sleep 1
}
time_of() {
    local t0=$EPOCHREALTIME
    "$@" >/dev/null 2>"$WORK/last.err" || { echo "bench/jump.sh: failed: $*" >&2; cat "$WORK/last.err" >&2; exit 1; }
    awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.3f\n", b - a}'
}
check_copy() { # ARCHIVE: as many bytes as the source
    local have
    have=$(du -sb --apparent-size --exclude=.dpkg_archive "$1" | cut -f1)
    [ "$have" -ge "$((BYTES - (1 << 20)))" ] || { echo "bench/jump.sh: $1 holds $have of $BYTES bytes" >&2; exit 1; }
}
blat_direct() { "$BLAT" -q -c "$W/gen/config" sync --target direct && check_copy "$ARCH_A"; }
blat_jump() { "$BLAT" -q -c "$W/gen/config" sync --target viajump && check_copy "$ARCH_B"; }
tar_direct() { tar -C "$W/gen/archive" -cf - . | $SSH "$A" "tar -C $ARCH_A -xpf -"; }
tar_jump() { tar -C "$W/gen/archive" -cf - . | $SSH -J "$A" "$B" "tar -C $ARCH_B -xpf -"; }

NAMES=("blat direct" "blat via jump" "tar | ssh" "tar | ssh -J")
CMDS=(blat_direct blat_jump tar_direct tar_jump)
declare -A TIMES
LOAD_BEFORE=$(uptime)
reset_targets
blat_direct >/dev/null 2>&1 || true   # warm the page cache, install the receivers
blat_jump >/dev/null 2>&1 || true
for _ in $(seq "$RUNS"); do
    for i in "${!NAMES[@]}"; do
        reset_targets
        TIMES[$i]+="$(time_of "${CMDS[i]}") "
    done
done

echo "jump hosts: $(nproc) CPUs, $PACKAGES x $MIB MiB incompressible, compression none, RUNS=$RUNS, $(ssh -V 2>&1)"
echo "load before: $LOAD_BEFORE"
printf '%-16s %9s %9s %9s %9s %s\n' tool median_s min_s max_s MB/s "time vs blat direct"
base=
for i in "${!NAMES[@]}"; do
    # shellcheck disable=SC2086 # a list of numbers
    read -r med lo hi < <(printf '%s\n' ${TIMES[$i]} | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)], a[1], a[NR]}')
    base=${base:-$med}
    awk -v n="${NAMES[i]}" -v t="$med" -v lo="$lo" -v hi="$hi" -v b="$base" -v bytes="$BYTES" \
        'BEGIN {printf "%-16s %9.3f %9.3f %9.3f %9.1f %6.2fx\n", n, t, lo, hi, bytes / t / 1e6, t / b}'
done
echo "load after:  $(uptime)"
