#!/usr/bin/env bash
# Make sure the local PostgreSQL server (Debian cluster) runs and has what the
# tests and benchmarks need:
#   role vxgate (password vxgate, LOGIN CREATEDB),
#   databases vxgate_test and vxgate_bench owned by it.
# Idempotent. Exports nothing; prints the test database URL at the end.
# The Debian default config listens on localhost only; it is left alone.
set -euo pipefail

ROLE=vxgate
PASSWORD=vxgate
DATABASES=(vxgate_test vxgate_bench)

die() {
    echo "postgres: error: $*" >&2
    exit 1
}

[[ "$(id -u)" -eq 0 ]] || die "must run as root"
command -v pg_lsclusters >/dev/null || die "pg_lsclusters not found (run scripts/setup.sh first)"

# psql as the postgres OS user; from / so it can always chdir where it runs.
cd /

# First cluster on port 5432, else the first cluster at all.
# pg_lsclusters -h: ver cluster port status owner datadir logfile
find_cluster() {
    pg_lsclusters -h 2>/dev/null | awk '
        $3 == 5432 && !found5432 { found5432 = $0 }
        !first { first = $0 }
        END { if (found5432) print found5432; else if (first) print first }'
}

CLUSTER_LINE="$(find_cluster)"
if [[ -z "$CLUSTER_LINE" ]]; then
    VERSION="$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -n | tail -n 1)"
    [[ -n "$VERSION" ]] || die "no PostgreSQL server installed under /usr/lib/postgresql"
    echo "postgres: creating cluster $VERSION/main"
    pg_createcluster "$VERSION" main --port 5432 >/dev/null
    CLUSTER_LINE="$(find_cluster)"
    [[ -n "$CLUSTER_LINE" ]] || die "pg_createcluster did not create a cluster"
fi
read -r VERSION CLUSTER PORT STATUS _ <<<"$CLUSTER_LINE"

if [[ "$STATUS" != online* ]]; then
    echo "postgres: starting cluster $VERSION/$CLUSTER (was $STATUS)"
    pg_ctlcluster "$VERSION" "$CLUSTER" start
fi

for _ in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 -p "$PORT" && break
    sleep 0.5
done
pg_isready -q -h 127.0.0.1 -p "$PORT" || die "cluster $VERSION/$CLUSTER does not accept connections on 127.0.0.1:$PORT"

psql_admin() {
    runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$PORT" -d postgres "$@"
}

# Role: created if absent; given LOGIN CREATEDB if it lacks them; the password
# is reset only when logging in with it fails (so a re-run changes nothing).
if [[ "$(psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" != 1 ]]; then
    echo "postgres: creating role $ROLE"
    psql_admin -c "CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD'"
elif [[ "$(psql_admin -tAc "SELECT rolcanlogin AND rolcreatedb FROM pg_roles WHERE rolname = '$ROLE'")" != t ]]; then
    psql_admin -c "ALTER ROLE $ROLE LOGIN CREATEDB"
fi
if ! PGPASSWORD="$PASSWORD" psql -X -q -h 127.0.0.1 -p "$PORT" -U "$ROLE" -d postgres -tAc 'SELECT 1' >/dev/null 2>&1; then
    echo "postgres: setting password of role $ROLE"
    psql_admin -c "ALTER ROLE $ROLE PASSWORD '$PASSWORD'"
fi

for db in "${DATABASES[@]}"; do
    owner="$(psql_admin -tAc "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '$db'")"
    if [[ -z "$owner" ]]; then
        echo "postgres: creating database $db"
        psql_admin -c "CREATE DATABASE $db OWNER $ROLE"
    elif [[ "$owner" != "$ROLE" ]]; then
        psql_admin -c "ALTER DATABASE $db OWNER TO $ROLE"
    fi
done

PGPASSWORD="$PASSWORD" psql -X -q -h 127.0.0.1 -p "$PORT" -U "$ROLE" -d "${DATABASES[0]}" -tAc 'SELECT 1' >/dev/null \
    || die "cannot connect as $ROLE to ${DATABASES[0]} on 127.0.0.1:$PORT"

echo "postgres: ok postgresql://$ROLE:$PASSWORD@127.0.0.1:$PORT/${DATABASES[0]}"
