# Debian's PostgreSQL server for the catalog tests (a private cluster per test session, on
# 127.0.0.1, started by the fixture in tests/support/postgres.py). Mirrors: the machine's apt config.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
J2K_PG_BIN="$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")"
export J2K_PG_BIN
