#!/usr/bin/env bash
# Benchmark of importUserJob's import (step2) against the databases' own bulk loaders, measured in
# the same run on the same file:
#   (a) psql \copy of the already upper-cased file into an empty people table (the reference)
#   (b) csv2db importUserJob on PostgreSQL (COPY inside each chunk's transaction)
#   (c) csv2db importUserJob on the embedded SQLite default, next to the sqlite3 shell's .import
#   (d) csv2db with writer=insert chunkSize=10: one INSERT per row, a commit every 10 rows, as the
#       seed's JdbcBatchItemWriter with chunk(10) does (on at most 100,000 rows: it is slow)
# Prints seconds, rows/s, the ratio to (a) or to sqlite3, and peak RSS. Each of (a), (b) and (c)
# runs REPEAT times (default 3) on a fresh table and the fastest run counts, since a shared
# 2-core machine adds noise of ±20 %. Each reference takes turns with csv2db, going first every
# other run, and every PostgreSQL run starts after a CHECKPOINT, so neither side pays for the
# other's WAL.
#
#   bench/import.sh [ROWS]        ROWS defaults to 1000000; also try 10000000
#   CHUNK_SIZE=50000 REPEAT=5 bench/import.sh 1000000
#   CSV2DB=path/to/csv2db bench/import.sh    measure that binary instead of building one
#
# Uses DATABASE_URL's PostgreSQL server if set (a database per run is created and dropped),
# else starts a throwaway server (scripts/throwaway-postgres.sh). Needs psql, sqlite3 and GNU time.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ROWS=${1:-1000000}
CHUNK=${CHUNK_SIZE:-}
REPEAT=${REPEAT:-3}
INSERT_ROWS=$((ROWS < 100000 ? ROWS : 100000))
for tool in psql sqlite3 /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "bench/import.sh: $tool is needed" >&2; exit 1; }
done

if [[ -n ${CSV2DB:-} ]]; then
  BIN=$(realpath "$CSV2DB")
else
  cargo build --release --locked -p csv2db >&2
  BIN=$(realpath "${CARGO_TARGET_DIR:-target}/release/csv2db")
fi

# shellcheck source=scripts/throwaway-postgres.sh
source scripts/throwaway-postgres.sh
PG_LOG_PREFIX=bench/import.sh
if [[ ! ${DATABASE_URL:-} =~ ^postgres(ql)?:// ]]; then
  start_throwaway_postgres >&2
fi
SERVER_URL=$DATABASE_URL
WORK=$(mktemp -d "${TMPDIR:-/tmp}/csv2db-bench.XXXXXX")
DATABASES=()
finish() {
  for db in "${DATABASES[@]}"; do psql -q "$SERVER_URL" -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true; done
  rm -rf "$WORK"
}
trap 'finish; cleanup' EXIT

# A fresh database on the server; prints its URL.
fresh_database() {
  local name="csv2db_bench_$$_$1"
  psql -q "$SERVER_URL" -c "DROP DATABASE IF EXISTS $name" -c "CREATE DATABASE $name" >/dev/null 2>&1
  DATABASES+=("$name")
  echo "${SERVER_URL%/*}/$name"
}

# Drops a database made by fresh_database, to keep the disk use of long runs down.
drop_database() { psql -q "$SERVER_URL" -c "DROP DATABASE IF EXISTS ${1##*/}" >/dev/null; }

now() { date +%s.%N; }
# Flushes the server's dirty buffers, so that one run's WAL and checkpoint do not slow the next.
checkpoint() { psql -q "$SERVER_URL" -c "CHECKPOINT" >/dev/null; }
# The smaller of two durations; the first may be empty.
best() { awk -v a="$1" -v b="$2" 'BEGIN { print (a == "" || b < a) ? b : a }'; }
RESULTS=()
# record NAME SECONDS RSS_KIB REFERENCE_SECONDS
record() {
  RESULTS+=("$(awk -v n="$1" -v s="$2" -v m="$3" -v r="$4" -v rows="$5" 'BEGIN {
    ratio = (r > 0) ? sprintf("%.2f", r / s) : "-";
    rss = (m > 0) ? sprintf("%.0f", m / 1024) : "-";
    printf "%-52s %9.2f %12.0f %8s %9s", n, s, rows / s, ratio, rss }')")
}

# Runs csv2db under GNU time; sets RUN_RSS (KiB).
run_csv2db() {
  /usr/bin/time -f "%M" -o "$WORK/time.txt" "$BIN" "$@" >"$WORK/out.txt" 2>"$WORK/err.txt" || {
    cat "$WORK/err.txt" >&2
    exit 1
  }
  RUN_RSS=$(tail -n 1 "$WORK/time.txt")
}

# Seconds step2 took, from the metadata.
step2_seconds() {
  "$BIN" --database-url "$1" -o json execution 1 |
    python3 -c 'import json, sys, datetime
steps = {s["step_name"]: s for s in json.load(sys.stdin)["steps"]}
t = lambda v: datetime.datetime.fromisoformat(v)
print((t(steps["step2"]["end_time"]) - t(steps["step2"]["start_time"])).total_seconds())'
}

echo "bench/import.sh: generating $ROWS rows" >&2
"$BIN" generate-people --count "$ROWS" --file "$WORK/people.csv" >&2
tr '[:lower:]' '[:upper:]' <"$WORK/people.csv" >"$WORK/upper.csv"
PEOPLE_DDL="CREATE TABLE people (person_id SERIAL PRIMARY KEY, first_name VARCHAR(20), last_name VARCHAR(20))"

# One timed `psql \copy` into a fresh database; sets RUN_SECONDS.
run_psql_copy() {
  local url
  url=$(fresh_database a)
  psql -q "$url" -c "$PEOPLE_DDL"
  checkpoint
  local start
  start=$(now)
  psql -q "$url" -c "\\copy people (first_name, last_name) FROM '$WORK/upper.csv' WITH (FORMAT csv)"
  RUN_SECONDS=$(awk -v a="$start" -v b="$(now)" 'BEGIN { print b - a }')
  drop_database "$url"
}

# One csv2db import into a fresh database; sets RUN_SECONDS (the whole job), RUN_STEP2 and
# RUN_RSS.
run_csv2db_postgres() {
  local url start
  url=$(fresh_database b)
  checkpoint
  start=$(now)
  run_csv2db --database-url "$url" importUserJob "jobFileLocation=$WORK/people.csv" count=0 ${CHUNK:+"chunkSize=$CHUNK"}
  RUN_SECONDS=$(awk -v a="$start" -v b="$(now)" 'BEGIN { print b - a }')
  RUN_STEP2=$(step2_seconds "$url")
  local loaded
  loaded=$(psql -qtA "$url" -c "select count(*) from people")
  [[ $loaded -eq $ROWS ]] || { echo "bench/import.sh: expected $ROWS rows in people, found $loaded" >&2; exit 1; }
  drop_database "$url"
}

# (a) and (b) take turns, each going first every other run, so that neither always runs on a
# server still busy with the other's WAL.
echo "bench/import.sh: (a) psql \\copy and (b) csv2db importUserJob on PostgreSQL, in turns" >&2
copy_seconds='' step2='' total='' rss=0
for run in $(seq "$REPEAT"); do
  for side in $( ((run % 2)) && echo "a b" || echo "b a"); do
    if [[ $side == a ]]; then
      run_psql_copy
      copy_seconds=$(best "$copy_seconds" "$RUN_SECONDS")
    else
      run_csv2db_postgres
      total=$(best "$total" "$RUN_SECONDS")
      step2=$(best "$step2" "$RUN_STEP2")
      rss=$((RUN_RSS > rss ? RUN_RSS : rss))
    fi
  done
done
record "(a) psql copy (reference)" "$copy_seconds" 0 "$copy_seconds" "$ROWS"
record "(b) csv2db step2, PostgreSQL, chunk ${CHUNK:-default}" "$step2" "$rss" "$copy_seconds" "$ROWS"
record "    csv2db whole job (step1 hand-off + step2)" "$total" "$rss" "$copy_seconds" "$ROWS"

echo "bench/import.sh: (c) sqlite3 .import and csv2db on SQLite" >&2
sqlite_seconds='' step2='' rss=0
for run in $(seq "$REPEAT"); do
  for side in $( ((run % 2)) && echo "shell csv2db" || echo "csv2db shell"); do
    if [[ $side == shell ]]; then
      rm -f "$WORK/ref.db"
      sqlite3 "$WORK/ref.db" "CREATE TABLE t (first_name TEXT, last_name TEXT)"
      start=$(now)
      sqlite3 "$WORK/ref.db" ".mode csv" ".import $WORK/upper.csv t"
      sqlite_seconds=$(best "$sqlite_seconds" "$(awk -v a="$start" -v b="$(now)" 'BEGIN { print b - a }')")
    else
      url="sqlite://$WORK/sqlite-$run.db"
      run_csv2db --database-url "$url" importUserJob "jobFileLocation=$WORK/people.csv" count=0 ${CHUNK:+"chunkSize=$CHUNK"}
      step2=$(best "$step2" "$(step2_seconds "$url")")
      rss=$((RUN_RSS > rss ? RUN_RSS : rss))
      rm -f "$WORK/sqlite-$run.db"*
    fi
  done
done
record "(c) sqlite3 .import (SQLite reference)" "$sqlite_seconds" 0 "$sqlite_seconds" "$ROWS"
record "(c) csv2db step2, SQLite (ratio to sqlite3)" "$step2" "$rss" "$sqlite_seconds" "$ROWS"

echo "bench/import.sh: (d) one INSERT per row, chunk 10, on $INSERT_ROWS rows" >&2
head -n "$INSERT_ROWS" "$WORK/people.csv" >"$WORK/insert.csv"
"$BIN" generate-people --count 0 --file "$WORK/insert.csv" >/dev/null
url=$(fresh_database d)
run_csv2db --database-url "$url" importUserJob "jobFileLocation=$WORK/insert.csv" count=0 chunkSize=10 writer=insert
step2=$(step2_seconds "$url")
copy_rate_seconds=$(awk -v s="$copy_seconds" -v r="$ROWS" -v i="$INSERT_ROWS" 'BEGIN { print s * i / r }')
record "(d) csv2db step2, INSERT per row, chunk 10" "$step2" "$RUN_RSS" "$copy_rate_seconds" "$INSERT_ROWS"

echo
echo "rows: $ROWS; best of $REPEAT runs; PostgreSQL $(psql -qtA "$SERVER_URL" -c 'show server_version'); $(nproc) cores"
printf "%-52s %9s %12s %8s %9s\n" "method" "seconds" "rows/s" "ratio" "RSS MiB"
printf "%s\n" "${RESULTS[@]}"
