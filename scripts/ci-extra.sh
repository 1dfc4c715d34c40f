#!/usr/bin/env bash
# Extra CI step (run by .ci/run after the tests): the official MCP conformance suite against
# loxmcp's upstream client. Exits non-zero when any scenario fails.
set -uo pipefail
cd "$(dirname "$0")/.."
echo "[ci] MCP conformance suite (client scenarios, auth included)"
if ! pnpm conformance; then
  echo "[ci] conformance suite failed"
  exit 1
fi
