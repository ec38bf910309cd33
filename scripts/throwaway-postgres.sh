# shellcheck shell=bash
# Sourced by scripts/test and bench/import.sh: start_throwaway_postgres starts a PostgreSQL
# server in a temporary directory on a free port of 127.0.0.1, exports DATABASE_URL, and stops
# and deletes it when the calling script exits. Needs the server binaries (Debian: postgresql).

die() {
  echo "${PG_LOG_PREFIX:-throwaway-postgres}: $*" >&2
  exit 1
}

# Print a database URL with any password replaced by ***.
redact_url() {
  sed -E \
    -e 's#^([A-Za-z][A-Za-z0-9+.-]*://[^:@/?#]*):[^?#]*@#\1:***@#' \
    -e 's#([?&]password=)[^&]*#\1***#g' <<<"$1"
}

# Directory holding initdb, pg_ctl, postgres and pg_isready.
find_pg_bindir() {
  local dir
  if command -v pg_config >/dev/null 2>&1; then
    dir=$(pg_config --bindir 2>/dev/null || true)
    if [[ -n $dir && -x $dir/initdb ]]; then
      echo "$dir"
      return 0
    fi
  fi
  dir=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  if [[ -x $dir/initdb ]]; then
    echo "$dir"
    return 0
  fi
  return 1
}

# A TCP port of 127.0.0.1 that nothing listens on right now.
free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()' && return 0
  fi
  # No python3: from 55432 upward, the first port nothing answers on
  # (pg_isready exits with 2 when there is no response).
  local port=55432 rc
  while :; do
    rc=0
    "$PG_BINDIR/pg_isready" -q -h 127.0.0.1 -p "$port" -t 1 || rc=$?
    [[ $rc -eq 2 ]] && break
    port=$((port + 1))
  done
  echo "$port"
}

# Run a PostgreSQL server binary; as root, run it as the postgres OS user
# (initdb and postgres refuse to run as root). Run from the server directory
# so the postgres user never needs access to the current directory.
as_pg() {
  if [[ $EUID -eq 0 ]]; then
    (cd "$PG_TMP" && runuser -u postgres -- "$@")
  else
    (cd "$PG_TMP" && "$@")
  fi
}

PG_TMP=""
PG_STARTED=0

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT
  if [[ $PG_STARTED -eq 1 ]]; then
    as_pg "$PG_BINDIR/pg_ctl" stop -D "$PG_TMP/data" -m immediate -s >/dev/null 2>&1 || true
    # Should pg_ctl fail, kill the server we started, by its pid (checking
    # that this pid still is a postgres serving our data directory).
    if [[ -f $PG_TMP/data/postmaster.pid ]]; then
      local pid
      pid=$(head -n 1 "$PG_TMP/data/postmaster.pid" 2>/dev/null || true)
      if [[ $pid =~ ^[0-9]+$ ]] &&
        tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "$PG_TMP/data"; then
        kill -KILL "$pid" 2>/dev/null || true
      fi
    fi
  fi
  if [[ -n $PG_TMP ]]; then
    rm -rf -- "$PG_TMP"
  fi
  exit "$rc"
}

start_throwaway_postgres() {
  PG_BINDIR=$(find_pg_bindir) ||
    die "PostgreSQL server binaries (initdb) not found; install the Debian package 'postgresql' or set DATABASE_URL=postgres://..."

  if [[ $EUID -eq 0 ]]; then
    id -u postgres >/dev/null 2>&1 ||
      die "running as root, but there is no 'postgres' OS user to run the throwaway PostgreSQL server as"
  fi

  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM

  PG_TMP=$(mktemp -d "${TMPDIR:-/tmp}/csv2db-pg.XXXXXX")
  if [[ $EUID -eq 0 ]]; then
    chown postgres: "$PG_TMP"
    runuser -u postgres -- test -w "$PG_TMP" ||
      die "the postgres OS user cannot write to $PG_TMP; set TMPDIR to a directory it can reach"
  fi

  if ! as_pg "$PG_BINDIR/initdb" -D "$PG_TMP/data" -U postgres -A trust -E UTF8 --locale=C -N \
    >"$PG_TMP/initdb.log" 2>&1; then
    cat "$PG_TMP/initdb.log" >&2
    die "initdb failed"
  fi

  local sockdir=${PG_TMP//\'/\'\'}
  cat >>"$PG_TMP/data/postgresql.conf" <<EOF

# throwaway server, durability off.
listen_addresses = '127.0.0.1'
unix_socket_directories = '$sockdir'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF

  local attempt port=""
  for attempt in 1 2 3 4 5; do
    port=$(free_port)
    PG_STARTED=1
    if as_pg "$PG_BINDIR/pg_ctl" start -D "$PG_TMP/data" -l "$PG_TMP/postgres.log" \
      -o "-p $port" -w -t 30 -s >/dev/null 2>&1; then
      break
    fi
    as_pg "$PG_BINDIR/pg_ctl" stop -D "$PG_TMP/data" -m immediate -s >/dev/null 2>&1 || true
    PG_STARTED=0
    # Someone took the port between picking and binding it: try another.
    if [[ $attempt -lt 5 ]] && grep -qE 'could not bind|could not create any TCP/IP sockets' "$PG_TMP/postgres.log"; then
      continue
    fi
    tail -n 20 "$PG_TMP/postgres.log" >&2 || true
    die "the throwaway PostgreSQL server did not start"
  done

  local waited=0
  until "$PG_BINDIR/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -t 1; do
    waited=$((waited + 1))
    if [[ $waited -ge 30 ]]; then
      tail -n 20 "$PG_TMP/postgres.log" >&2 || true
      die "the throwaway PostgreSQL server on port $port is not ready after 30 s"
    fi
    sleep 1
  done

  export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
  local version
  version=$("$PG_BINDIR/postgres" --version | awk '{print $3}')
  echo "${PG_LOG_PREFIX:-throwaway-postgres}: a throwaway PostgreSQL $version server: $DATABASE_URL"
}

