#!/usr/bin/env bash
# Schemathesis (PyPI `schemathesis` 4.x) against a live `postvault serve
# --demo` on a free loopback port, with the token of the demo's privacy
# officer (the role that may call every endpoint), all checks on, a bounded
# number of examples. Fails on any failure.
#
#   .ci/schemathesis.sh [POSTVAULT_BINARY]     (default target/debug/postvault)
#
# ST_MAX_EXAMPLES (default 25) bounds the examples per operation and phase;
# ST_VENV (default target/schemathesis-venv) is where schemathesis is
# installed if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${1:-target/debug/postvault}
venv=${ST_VENV:-target/schemathesis-venv}
examples=${ST_MAX_EXAMPLES:-25}

if [ ! -x "$venv/bin/st" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'schemathesis>=4,<5'
fi

work=$(mktemp -d)
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

"$bin" serve --demo --listen 127.0.0.1:0 --sweep-interval 0 --rate-limit 1000000 \
  >"$work/out" 2>"$work/err" &
server=$!
for _ in $(seq 1 300); do
  if grep -q listening "$work/out" 2>/dev/null && grep -q 'public log' "$work/err" 2>/dev/null; then break; fi
  if ! kill -0 "$server" 2>/dev/null; then cat "$work/err" >&2; echo "schemathesis: serve did not start" >&2; exit 1; fi
  sleep 0.2
done
addr=$(sed -n 's/.*"listening":"\([^"]*\)".*/\1/p' "$work/out")
token=$(awk '/^  officer \(role privacy_officer\)/ {getline; print $2; exit}' "$work/err")
if [ -z "$addr" ] || [ -z "$token" ]; then
  cat "$work/err" >&2
  echo "schemathesis: no address or officer token from serve --demo" >&2
  exit 1
fi

# The configuration (checks, and the one deliberate exception) is in
# .ci/schemathesis.toml.
"$venv/bin/st" --config-file .ci/schemathesis.toml --no-color run "http://$addr/openapi.json" ${ST_ARGS:-} \
  -H "Authorization: Bearer $token" \
  --checks all \
  --max-examples "$examples" \
  --workers 1 \
  --seed 1 \
  --generation-database none
