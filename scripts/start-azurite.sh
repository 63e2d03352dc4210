#!/usr/bin/env bash
# Start Azurite's blob service without Docker, on 127.0.0.1:10000 (or $AZURITE_PORT).
#
#   scripts/start-azurite.sh            # data kept in ./.azurite
#   scripts/start-azurite.sh --memory   # in-memory, gone when it stops
#
# Runs in the foreground; stop it with Ctrl-C. Then connect with
#   AZURE_CONN_STR="UseDevelopmentStorage=true"
set -euo pipefail

cd "$(dirname "$0")/.."

if ! command -v node >/dev/null 2>&1; then
    echo "node (Node.js 20+) is required: https://nodejs.org/" >&2
    exit 1
fi
if [ ! -x node_modules/.bin/azurite-blob ]; then
    echo "installing the pinned Azurite (npm ci)..." >&2
    npm ci --no-audit --no-fund
fi

port="${AZURITE_PORT:-10000}"
if [ "${1:-}" = "--memory" ]; then
    storage=(--inMemoryPersistence --extentMemoryLimit 4096)
else
    mkdir -p .azurite
    storage=(--location .azurite)
fi

echo "Azurite blob service on http://127.0.0.1:${port}/devstoreaccount1" >&2
# exec: the PID the caller sees is Azurite's own, so a plain kill stops it.
exec node_modules/.bin/azurite-blob \
    --blobHost 127.0.0.1 --blobPort "$port" \
    "${storage[@]}" \
    --disableTelemetry --skipApiVersionCheck
