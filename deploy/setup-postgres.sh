#!/bin/sh
# Temporal SQL schema setup, run once per `docker compose up` by the temporal-schema job
# (temporalio/admin-tools image). Idempotent: `create` ignores an existing database,
# `setup-schema -v 0.0` keeps an existing version table, `update-schema` applies only
# the versions not yet applied. Server upgrades: bump the image tags, rerun this job.
set -eu

: "${POSTGRES_SEEDS:=postgresql}"
: "${DB_PORT:=5432}"
: "${POSTGRES_USER:=temporal}"
: "${DBNAME:=temporal}"
: "${VISIBILITY_DBNAME:=temporal_visibility}"
# temporal-sql-tool reads the password from SQL_PASSWORD.
export SQL_PASSWORD="${SQL_PASSWORD:-${POSTGRES_PWD:-temporal}}"
SCHEMA_DIR=/etc/temporal/schema/postgresql/v12

echo "waiting for PostgreSQL at ${POSTGRES_SEEDS}:${DB_PORT}..."
i=0
until nc -z -w 5 "$POSTGRES_SEEDS" "$DB_PORT"; do
  i=$((i + 1))
  if [ "$i" -ge 60 ]; then echo "PostgreSQL did not open port ${DB_PORT}" >&2; exit 1; fi
  sleep 2
done

sql() {
  temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$DB_PORT" -u "$POSTGRES_USER" "$@"
}

for pair in "${DBNAME}:temporal" "${VISIBILITY_DBNAME}:visibility"; do
  db=${pair%%:*}
  kind=${pair##*:}
  echo "schema for database ${db} (${kind})"
  sql --db "$db" create-database
  sql --db "$db" setup-schema -v 0.0
  sql --db "$db" update-schema -d "${SCHEMA_DIR}/${kind}/versioned"
done

echo "Temporal schema is up to date"
