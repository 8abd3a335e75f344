#!/usr/bin/env bash
# Makes the seeds of the checkpoint and add_checkpoint targets from a real
# vault and a real witness: a vault collects a few lines in two runs, a
# witness (`postvault witness serve`) follows its log and cosigns, and the
# seeds are the checkpoints they signed, an add-checkpoint body with a real
# consistency proof, each prefixed by the keys to check them with (see
# fuzz/src/lib.rs). The NDJSON seeds of ndjson_line come from the
# simulator (`postvault simulate`), one line per category.
#
#   fuzz/seeds.sh [POSTVAULT_BINARY]      (default target/debug/postvault)
set -euo pipefail
cd "$(dirname "$0")/.."
pv=$(realpath "${1:-target/debug/postvault}")
work=$(mktemp -d)
witness_pid=""
cleanup() {
  if [ -n "$witness_pid" ]; then kill "$witness_pid" 2>/dev/null || true; wait "$witness_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
V=$work/vault
W=$work/witness
out=fuzz/corpus

# The simulator's lines: the first of each category.
"$pv" simulate --scale 0.00001 --seed 7 --out "$work/sim" >/dev/null
python3 - "$work/sim/records.ndjson" "$out/ndjson_line" <<'PY'
import json, sys
seen = set()
for line in open(sys.argv[1], encoding="utf-8"):
    cat = json.loads(line)["category"]
    if cat not in seen:
        seen.add(cat)
        open(f"{sys.argv[2]}/sim-{cat}", "w", encoding="utf-8").write(line)
PY

"$pv" --data "$V" init >/dev/null 2>&1
"$pv" --data "$V" principal add ingest --role collector >/dev/null
log_key=$("$pv" --data "$V" log key)
head -n 20 "$work/sim/records.ndjson" >"$work/a.ndjson"
sed -n 21,60p "$work/sim/records.ndjson" >"$work/b.ndjson"
"$pv" --data "$V" collect --as ingest "$work/a.ndjson" >/dev/null 2>&1
"$pv" --data "$V" log checkpoint >"$work/cp1"
"$pv" --data "$V" collect --as ingest "$work/b.ndjson" >/dev/null 2>&1
"$pv" --data "$V" log checkpoint >"$work/cp2"

"$pv" witness --dir "$W" init --name witness.example/fuzz >"$work/wkey.out"
witness_key=$("$pv" witness --dir "$W" key)
"$pv" witness --dir "$W" serve --listen 127.0.0.1:0 --log "$log_key" >"$work/w.out" 2>"$work/w.err" &
witness_pid=$!
for _ in $(seq 1 100); do grep -q listening "$work/w.out" 2>/dev/null && break; sleep 0.1; done
addr=$(sed -n 's/.*"listening":"\([^"]*\)".*/\1/p' "$work/w.out")
POSTVAULT_LOG_WITNESSES="http://$addr=$witness_key" \
  "$pv" --data "$V" log checkpoint >"$work/cp3"

keyed() { printf '%s\n%s\n' "$log_key" "$witness_key"; cat "$1"; }
keyed "$work/cp1" >"$out/checkpoint/vault-signed"
keyed "$work/cp3" >"$out/checkpoint/vault-cosigned"

size1=$(sed -n 2p "$work/cp1")
size2=$(sed -n 2p "$work/cp2")
"$pv" --data "$V" log prove --old "$size1" --new "$size2" >"$work/proof.json"
{
  printf '%s\n\n' "$log_key"
  printf 'old 0\n\n'
  cat "$work/cp1"
} >"$out/add_checkpoint/first"
{
  printf '%s\n\n' "$log_key"
  printf 'old %s\n' "$size1"
  python3 -c 'import json,sys; [print(h) for h in json.load(open(sys.argv[1]))["hashes"]]' "$work/proof.json"
  printf '\n'
  cat "$work/cp2"
} >"$out/add_checkpoint/extend"
echo "seeds: written under $out"
