#!/bin/bash
# Writes the replica-set keyfile (required once auth and --replSet are both on) from
# MONGO_REPLICA_KEY on first start, then hands over to the image's own entrypoint.
set -euo pipefail
key=/data/configdb/keyfile
if [ ! -s "$key" ]; then
  : "${MONGO_REPLICA_KEY:?set MONGO_REPLICA_KEY in .env (openssl rand -base64 756 | tr -d '\n')}"
  printf '%s' "$MONGO_REPLICA_KEY" > "$key"
fi
chmod 400 "$key"
chown 999:999 "$key"
exec docker-entrypoint.sh "$@"
