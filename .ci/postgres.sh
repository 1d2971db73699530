#!/usr/bin/env bash
# Start a throwaway PostgreSQL server for the job-store tests and print its SQLAlchemy URL.
#
#   url=$(bash .ci/postgres.sh start DIR)   # a new cluster in DIR, on a free loopback port
#   bash .ci/postgres.sh stop DIR
#
# The server runs as the `postgres` user (PostgreSQL refuses root), trusts local connections,
# keeps nothing outside DIR, and listens on 127.0.0.1 only. Installs Debian's postgresql
# package when no server binaries are found. Exits non-zero, with the reason on stderr, when
# it cannot start one.
set -euo pipefail

cmd="${1:?usage: postgres.sh start|stop DIR}"
dir="${2:?usage: postgres.sh start|stop DIR}"

find_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
  done
  return 1
}

as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

case "$cmd" in
  start)
    if ! bin=$(find_bin); then
      SUDO=""
      [ "$(id -u)" -eq 0 ] || SUDO="sudo"
      echo "== installing postgresql" >&2
      $SUDO apt-get update -qq >&2 && $SUDO apt-get install -y -qq postgresql >/dev/null
      bin=$(find_bin) || { echo "postgres.sh: no PostgreSQL server binaries after installing" >&2; exit 1; }
    fi
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    mkdir -p "$dir"
    if [ "$(id -u)" -eq 0 ]; then
      chown postgres "$dir"
      runuser -u postgres -- test -w "$dir" \
        || { echo "postgres.sh: the postgres user cannot reach $dir (a parent directory is closed)" >&2; exit 1; }
    fi
    as_postgres "$bin/initdb" -D "$dir/data" -U postgres -A trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-h 127.0.0.1 -p $port -k $dir -c fsync=off -c full_page_writes=off" start >/dev/null \
      || { cat "$dir/server.log" >&2; exit 1; }
    echo "postgresql+psycopg://postgres@127.0.0.1:$port/postgres"
    ;;
  stop)
    if bin=$(find_bin) && [ -d "$dir/data" ]; then
      as_postgres "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    ;;
  *)
    echo "usage: postgres.sh start|stop DIR" >&2
    exit 2
    ;;
esac
