#!/usr/bin/env bash
# Creates gw_agent, the least-privilege MariaDB/MySQL account examples/mysql.toml logs in as for agents:
# data access (SELECT, INSERT, UPDATE, DELETE) on the database `test` only -- no DDL, no FILE, no PROCESS,
# no SUPER, no GRANT.  The password is taken from $SHOP_DB_PASSWORD, the variable gw reads.
#   SHOP_DB_PASSWORD=... bash examples/setup-mysql.sh [mariadb client options, e.g. -h 127.0.0.1 -u root]
set -euo pipefail
: "${SHOP_DB_PASSWORD:?set SHOP_DB_PASSWORD to the password gw_agent should have}"
here=$(dirname "$0")
# gw's TLS pair for the listener (tls = { cert = "gw.pem", key = "gw-key.pem" }): self-signed, made here, kept.
if [ ! -f "$here/gw.pem" ] || [ ! -f "$here/gw-key.pem" ]; then
  (umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=127.0.0.1" \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" -keyout "$here/gw-key.pem" -out "$here/gw.pem" 2>/dev/null)
  echo "wrote a self-signed TLS pair for the example: $here/gw.pem, $here/gw-key.pem"
fi
client=$(command -v mariadb || command -v mysql)
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(-h 127.0.0.1 -u root)
pw=${SHOP_DB_PASSWORD//\\/\\\\}
pw=${pw//\'/\\\'}
"$client" "${args[@]}" <<SQL
CREATE USER IF NOT EXISTS 'gw_agent'@'%' IDENTIFIED BY '$pw';
ALTER USER 'gw_agent'@'%' IDENTIFIED BY '$pw';
GRANT SELECT, INSERT, UPDATE, DELETE ON \`test\`.* TO 'gw_agent'@'%';
SQL
echo "gw_agent can now log in with \$SHOP_DB_PASSWORD (SELECT, INSERT, UPDATE, DELETE on test.*)"
