#!/usr/bin/env bash
# bench/index.sh — how `blat index` compares with what a user would run instead.
#
# Why: the content index (.dpkg_archive/dpkg_archive_list.txt) is rebuilt
# nightly on every target; the alternative is a plain `find`. The goals
# (issue 5): a full build within 1.5x of `find . > list`, a re-run with no
# change under a tenth of it, and a stated peak memory.
#
# Archive: bench/gen-archive --packages 2000 --versions 10 --files 50
# --size-mix tiny: 20,000 package-versions x 50 files, 1.15 M paths. It is
# generated once into $BENCH_DIR (default /tmp/blat-bench/index-20k) and
# reused (it takes a few minutes); PACKAGES/VERSIONS/FILES override the shape.
#
# Measured, RUNS times each (default 3), page cache warm: wall time (best and
# median), CPU time (user + system, median; steadier than wall time on a
# machine shared with other work) and peak RSS (GNU time's maximum resident
# set size):
#   find        cd archive && find . > list            (the goal's yardstick)
#   find|sort   find . | LC_ALL=C sort > list          (the same sorted list blat writes)
#   full        no cache: blat index walks everything
#   no change   blat index again: stats the descpkg files, leaves the list as it is
#   +100 pvs    after 100 new package-versions appear (copies of existing ones)
#   -100 pvs    after they are removed again
# and checks once that blat's list equals `find` filtered and sorted.
#
# Needs: python3, GNU time (/usr/bin/time), cargo. Builds blat in release mode.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PACKAGES=${PACKAGES:-2000}
VERSIONS=${VERSIONS:-10}
FILES=${FILES:-50}
RUNS=${RUNS:-3}
WORK=${BENCH_DIR:-/tmp/blat-bench/index-20k}
ARCHIVE=$WORK/archive
SHAPE="$PACKAGES x $VERSIONS x $FILES"

log() { printf '[bench] %s\n' "$*" >&2; }

[ -x /usr/bin/time ] || { echo "bench/index.sh needs GNU time at /usr/bin/time" >&2; exit 2; }

log "building blat (release)"
cargo build -q --release --bin blat
BLAT=$PWD/target/release/blat

if [ "$(cat "$WORK/.shape" 2>/dev/null)" != "$SHAPE" ]; then
	log "generating $SHAPE into $WORK (once; a few minutes)"
	bench/gen-archive --out "$WORK" --packages "$PACKAGES" --versions "$VERSIONS" --files "$FILES" \
		--size-mix tiny --force -q >&2
	echo "$SHAPE" >"$WORK/.shape"
fi
ADDED=()
cleanup_added() {
	for d in "${ADDED[@]}"; do
		chmod -R u+w "$d" && rm -rf "$d"
	done
	ADDED=()
}
trap cleanup_added EXIT
OUT=$WORK/out
mkdir -p "$OUT"

# measure NAME SETUP COMMAND: runs SETUP (untimed) then COMMAND, RUNS times;
# records wall seconds and peak RSS (KiB) of each run.
declare -A BEST MEDIAN CPU RSS
measure() {
	local name=$1 setup=$2 cmd=$3 times=() cpus=() rss=0 i t u s m
	for ((i = 0; i < RUNS; i++)); do
		(cd "$ARCHIVE" && eval "$setup")
		/usr/bin/time -f '%e %U %S %M' -o "$OUT/time" sh -c "cd '$ARCHIVE' && $cmd" >/dev/null 2>"$OUT/stderr" ||
			{ cat "$OUT/stderr" >&2; exit 1; }
		read -r t u s m <"$OUT/time"
		times+=("$t")
		cpus+=("$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')")
		if ((m > rss)); then rss=$m; fi
	done
	mapfile -t times < <(printf '%s\n' "${times[@]}" | sort -g)
	mapfile -t cpus < <(printf '%s\n' "${cpus[@]}" | sort -g)
	BEST[$name]=${times[0]}
	MEDIAN[$name]=${times[$((RUNS / 2))]}
	CPU[$name]=${cpus[$((RUNS / 2))]}
	RSS[$name]=$rss
	log "$name: best ${BEST[$name]} s, median ${MEDIAN[$name]} s, CPU ${CPU[$name]} s, peak RSS $rss KiB"
}

LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
# Warm the page cache, so every contender reads the same cached metadata.
(cd "$ARCHIVE" && find . >/dev/null)

measure "find" ":" "find . > '$OUT/find.list'"
measure "find|sort" ":" "find . | LC_ALL=C sort > '$OUT/sorted.list'"
measure "full" "rm -rf .dpkg_archive" "'$BLAT' -q index --archive ."
measure "no change" ":" "'$BLAT' -q index --archive ."

# Correctness, once: blat's list is find's, minus the top-level dot entries
# (.dpkg_archive) and the root itself, sorted by bytes.
(cd "$ARCHIVE" && find . -mindepth 1 -path './.*' -prune -o -print | sed 's|^\./||' | LC_ALL=C sort) >"$OUT/want.list"
cmp -s "$OUT/want.list" "$ARCHIVE/.dpkg_archive/dpkg_archive_list.txt" ||
	{ echo "bench/index.sh: blat's list differs from find's (see $OUT/want.list)" >&2; exit 1; }
LINES=$(wc -l <"$ARCHIVE/.dpkg_archive/dpkg_archive_list.txt")

# 100 new package-versions, spread over the archive: copies of each 20th
# package's first version under a new version name. Each run adds a fresh
# hundred (the previous ones are removed, untimed, and re-indexed first).
round=0
add_100() {
	cleanup_added
	"$BLAT" -q index --archive "$ARCHIVE" >/dev/null
	round=$((round + 1))
	local i pkg
	for ((i = 0; i < 100; i++)); do
		pkg=$(printf 'pkg%05d' $((i * PACKAGES / 100)))
		cp -a "$ARCHIVE/$pkg/1.0.0" "$ARCHIVE/$pkg/9.$round.$i"
		ADDED+=("$ARCHIVE/$pkg/9.$round.$i")
	done
}
RUNS_SAVED=$RUNS
for ((r = 0; r < RUNS_SAVED; r++)); do
	RUNS=1
	add_100
	measure "+100 pvs #$r" ":" "'$BLAT' -q index --archive ."
	cleanup_added
	measure "-100 pvs #$r" ":" "'$BLAT' -q index --archive ."
done
RUNS=$RUNS_SAVED
for what in "+100 pvs" "-100 pvs"; do
	ts=()
	cs=()
	m=0
	for ((r = 0; r < RUNS; r++)); do
		k="$what #$r"
		ts+=("${BEST[$k]}")
		cs+=("${CPU[$k]}")
		v=${RSS[$k]}
		if ((v > m)); then m=$v; fi
	done
	mapfile -t ts < <(printf '%s\n' "${ts[@]}" | sort -g)
	mapfile -t cs < <(printf '%s\n' "${cs[@]}" | sort -g)
	CPU[$what]=${cs[$((RUNS / 2))]}
	BEST[$what]=${ts[0]}
	MEDIAN[$what]=${ts[$((RUNS / 2))]}
	RSS[$what]=$m
done

echo
echo "blat index vs find: $SHAPE package archive ($LINES paths), $(nproc) CPUs, $RUNS runs, warm cache"
echo "(load average at the start: $LOAD)"
printf '%-12s %9s %9s %10s %9s %10s %12s\n' "" "best s" "median s" "x find" "CPU s" "CPU x find" "peak RSS"
for name in "find" "find|sort" "full" "no change" "+100 pvs" "-100 pvs"; do
	ratio=$(awk -v a="${MEDIAN[$name]}" -v b="${MEDIAN[find]}" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')
	cratio=$(awk -v a="${CPU[$name]}" -v b="${CPU[find]}" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')
	printf '%-12s %9s %9s %10s %9s %10s %9s MiB\n' "$name" "${BEST[$name]}" "${MEDIAN[$name]}" "$ratio" "${CPU[$name]}" "$cratio" \
		"$(awk -v k="${RSS[$name]}" 'BEGIN { printf "%.1f", k / 1024 }')"
done
echo
full=$(awk -v a="${MEDIAN[full]}" -v b="${MEDIAN[find]}" 'BEGIN { print (a <= 1.5 * b) ? "met" : "MISSED" }')
none=$(awk -v a="${MEDIAN[no change]}" -v b="${MEDIAN[find]}" 'BEGIN { print (a < 0.1 * b) ? "met" : "MISSED" }')
echo "goal full build <= 1.5x find: $full; goal no-change re-run < 0.1x find: $none"
