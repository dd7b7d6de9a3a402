#!/usr/bin/env bash
# bench/odbc.sh [ROWS] [RELEASES] — how long loading a big current set takes
# from the Release Manager, and how much memory it needs.
#
# Why: real sites keep the Release Manager in a central SQL server reached over
# ODBC, and a target's current set can be hundreds of thousands of
# package-versions. This measures the database half of every sync/plist/s3sync
# pass (connect, pick the releases, fetch and validate their content) for:
#   - PostgreSQL through psqlODBC ({PostgreSQL Unicode}),
#   - the same data in a SQLite file through the {SQLite3} ODBC driver,
#   - that SQLite file through blat's built-in (rusqlite) source.
#
# Data: ROWS (default 200000) distinct package-versions (ROWS/10 packages with
# 10 versions each) split evenly over RELEASES (default 50) open releases of
# project BENCH, in the reference schema (docs/archive.md) with primary keys and an
# index on release_content(release_id), as any real RM has. The target
# selects `projects = ["BENCH"]`, so every row is loaded.
#
# Prints, per backend: rows, best and median wall time of RUNS (default 5)
# runs, each in a fresh connection; then the peak RSS of one whole process
# (GNU time), which includes the program's own baseline. Then, for scale, the
# same queries through psql and the sqlite3 CLI (when installed).
#
# Needs: scripts/test-env (PostgreSQL on 127.0.0.1 and the ODBC drivers),
# psql, python3, /usr/bin/time. Builds bench/odbc_load.rs (cargo example
# odbc-load) in release mode without the S3 feature, to keep the build short.
# Scratch data lives in $BENCH_DIR (default /tmp/blat-bench-odbc) and the
# PostgreSQL database blat_bench_odbc; both are replaced on each run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ROWS=${1:-200000}
RELEASES=${2:-50}
RUNS=${RUNS:-5}
WORK=${BENCH_DIR:-/tmp/blat-bench-odbc}
DB=blat_bench_odbc
VERSIONS=10
(( ROWS % (RELEASES * VERSIONS) == 0 )) || { echo "ROWS must be a multiple of RELEASES*$VERSIONS" >&2; exit 2; }
PACKAGES=$((ROWS / VERSIONS))
PER_RELEASE=$((ROWS / RELEASES))

log() { printf '[bench] %s\n' "$*" >&2; }

scripts/test-env start >/dev/null
# shellcheck disable=SC1090
source <(scripts/test-env env)

log "building the odbc-load example (release)"
cargo build -q --release --no-default-features --features odbc --example odbc-load
BIN=target/release/examples/odbc-load

rm -rf "$WORK"
mkdir -p "$WORK"

SCHEMA="
CREATE TABLE projects (project_id INTEGER PRIMARY KEY, name TEXT UNIQUE);
CREATE TABLE releases (release_id INTEGER PRIMARY KEY, project_id INTEGER, name TEXT, state TEXT, s3sync INTEGER);
CREATE TABLE packages (package_id INTEGER PRIMARY KEY, name TEXT UNIQUE);
CREATE TABLE package_versions (pv_id INTEGER PRIMARY KEY, package_id INTEGER, version TEXT);
CREATE TABLE release_content (release_id INTEGER, pv_id INTEGER);
"
INDEX="CREATE INDEX release_content_release ON release_content (release_id);"

log "loading $ROWS package-versions over $RELEASES releases into PostgreSQL ($DB)"
psql -X -q "$BLAT_TEST_PG_URL" -v ON_ERROR_STOP=1 \
    -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB TEMPLATE template0 ENCODING 'UTF8'"
PG_URL="${BLAT_TEST_PG_URL%/*}/$DB"
psql -X -q "$PG_URL" -v ON_ERROR_STOP=1 <<SQL
$SCHEMA
INSERT INTO projects VALUES (1, 'BENCH');
INSERT INTO releases SELECT r, 1, 'R' || r, 'open', 0 FROM generate_series(1, $RELEASES) r;
INSERT INTO packages SELECT p, 'pkg' || lpad(p::text, 6, '0') FROM generate_series(1, $PACKAGES) p;
INSERT INTO package_versions
    SELECT i, (i - 1) % $PACKAGES + 1, '1.' || ((i - 1) / $PACKAGES) || '.0' FROM generate_series(1, $ROWS) i;
INSERT INTO release_content SELECT (i - 1) / $PER_RELEASE + 1, i FROM generate_series(1, $ROWS) i;
$INDEX
ANALYZE projects, releases, packages, package_versions, release_content;
SQL

log "loading the same data into SQLite ($WORK/rm.db)"
python3 - "$WORK/rm.db" "$ROWS" "$RELEASES" "$PACKAGES" "$PER_RELEASE" "$SCHEMA $INDEX" <<'PY'
import sqlite3, sys
path, rows, releases, packages, per, schema = sys.argv[1], *map(int, sys.argv[2:6]), sys.argv[6]
db = sqlite3.connect(path)
db.executescript(schema)
db.execute("INSERT INTO projects VALUES (1, 'BENCH')")
db.executemany("INSERT INTO releases VALUES (?, 1, ?, 'open', 0)", ((r, f"R{r}") for r in range(1, releases + 1)))
db.executemany("INSERT INTO packages VALUES (?, ?)", ((p, f"pkg{p:06d}") for p in range(1, packages + 1)))
db.executemany("INSERT INTO package_versions VALUES (?, ?, ?)",
               ((i, (i - 1) % packages + 1, f"1.{(i - 1) // packages}.0") for i in range(1, rows + 1)))
db.executemany("INSERT INTO release_content VALUES (?, ?)", (((i - 1) // per + 1, i) for i in range(1, rows + 1)))
db.commit()
db.execute("ANALYZE")
db.close()
PY

# One config directory per backend, the same target in each.
PG_STRING=$(sed -e "s/Database=[^;]*/Database=$DB/" -e 's/Pwd=[^;]*;//' <<<"$BLAT_TEST_PG")
export BENCH_RM_PASSWORD
BENCH_RM_PASSWORD=$(sed -n 's/.*Pwd=\([^;]*\);.*/\1/p' <<<"$BLAT_TEST_PG")
config() {  # name, [release_manager] body
    mkdir -p "$WORK/$1/targets"
    cat >"$WORK/$1/blat.toml" <<TOML
archive = "$WORK/archive"
state_dir = "$WORK/state"
[release_manager]
$2
TOML
    cat >"$WORK/$1/targets/bench.conf" <<TOML
kind = "archive"
transport = "local"
path = "$WORK/target"
projects = ["BENCH"]
TOML
}
config postgres-odbc "kind = \"odbc\"
connection_string = \"$PG_STRING\"
password_env = \"BENCH_RM_PASSWORD\""
config sqlite-odbc "kind = \"odbc\"
connection_string = \"Driver={SQLite3};Database=$WORK/rm.db;\""
config sqlite "kind = \"sqlite\"
path = \"$WORK/rm.db\""

echo "current set: $ROWS package-versions over $RELEASES releases; $RUNS runs each, fresh connection per run"
for backend in postgres-odbc sqlite-odbc sqlite; do
    "$BIN" "$WORK/$backend" bench "$RUNS" | sed -e "s/^/$backend: /"
    /usr/bin/time -v "$BIN" "$WORK/$backend" bench 1 >/dev/null 2>"$WORK/$backend.time"
    rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$WORK/$backend.time")
    echo "$backend: peak RSS $((rss / 1024)) MiB ($rss KiB) for one load"
done

# The same 50 release_content queries (blat's default SQL, names inlined)
# through the databases' own command-line clients, output thrown away: what
# the server side costs, without ODBC or blat.
for r in $(seq 1 "$RELEASES"); do
    echo "SELECT pk.name, pv.version FROM releases r JOIN projects p ON p.project_id = r.project_id" \
         "JOIN release_content rc ON rc.release_id = r.release_id JOIN package_versions pv ON pv.pv_id = rc.pv_id" \
         "JOIN packages pk ON pk.package_id = pv.package_id WHERE p.name = 'BENCH' AND r.name = 'R$r'" \
         "ORDER BY pk.name, pv.version;"
done >"$WORK/queries.sql"
best_of() {  # the best wall time in seconds of RUNS runs of a command
    local best="" t
    for _ in $(seq "$RUNS"); do
        t=$( { TIMEFORMAT=%R; time "$@" >/dev/null 2>&1; } 2>&1 )
        best=$(awk -v a="$t" -v b="${best:-$t}" 'BEGIN { print (a < b) ? a : b }')
    done
    echo "$best"
}
echo "baseline psql (same queries, no ODBC): best $(best_of psql -X -q "$PG_URL" -f "$WORK/queries.sql" -o /dev/null)s of $RUNS runs"
if command -v sqlite3 >/dev/null; then
    echo "baseline sqlite3 CLI (same queries): best $(best_of sqlite3 "$WORK/rm.db" ".read $WORK/queries.sql")s of $RUNS runs"
fi
