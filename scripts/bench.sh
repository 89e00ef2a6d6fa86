#!/usr/bin/env bash
# Benchmark wshub side by side with its peers in the shared harness (../shared/bench), compare
# the clients (benchmarks/client_bench.py: ours vs picows' against the C echo server), measure
# an idle compressed connection's memory (benchmarks/cpu_cost.py), and write
# benchmarks/RESULTS.md (benchmarks/report.py), with every performance target marked met or not.
#
# Usage: scripts/bench.sh [--quick]          (`make bench`, `make bench-quick`)
#   --quick    1 run of 1 s per cell (smoke test); writes benchmarks/out/quick/RESULTS.md instead
#              of the committed benchmarks/RESULTS.md
# Environment:
#   SHARED       folder holding bench/ (default: ../shared beside the repository)
#   PY           Python with wshub installed (default: .venv/bin/python)
#   BENCH_WORK   where the harness's setup.sh installs the peers (default /tmp/bench-work)
#   BENCH_SERVERS  servers to run, in order (default: wshub and every peer, c-echo last)
#   BENCH_ARGS   more options for run.py (e.g. '--scenarios pp100_32,bcast1000_64 --reps 5')
# The full run takes about 30 minutes and wants an otherwise idle machine (run.py waits for one).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHARED="${SHARED:-$ROOT/../shared}"
PY="${PY:-$ROOT/.venv/bin/python}"
BENCH="$SHARED/bench"
export BENCH_WORK="${BENCH_WORK:-/tmp/bench-work}"
SERVERS="${BENCH_SERVERS:-wshub,websockets,aiohttp,picows+uvloop,node-ws,socketify,c-echo}"

OUT="$ROOT/benchmarks/out"
REPORT="$ROOT/benchmarks/RESULTS.md"
# 5 interleaved runs per cell, not the harness's 3: single cells move by up to ±20% with the
# host (see shared/bench/README.md), and the report judges each target from one median.
OPTS=(--reps 5)
case "${1:-}" in
  --quick) OPTS=(--quick); OUT="$OUT/quick"; REPORT="$OUT/RESULTS.md" ;;
  "") ;;
  *) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
[ -x "$BENCH/run.py" ] || { echo "bench: no harness at $BENCH (set SHARED=)" >&2; exit 2; }
[ -x "$PY" ] || { echo "bench: no Python at $PY (run make bench)" >&2; exit 2; }

T0=$(date +%s)
echo "bench: installing the peers into $BENCH_WORK ($BENCH/setup.sh)"
"$BENCH/setup.sh"
mkdir -p "$OUT"
# shellcheck disable=SC2206  # BENCH_ARGS is a list of options on purpose
EXTRA=(${BENCH_ARGS:-})
# run.py runs the command with bash -c, with $PORT and $APP set: keep them unexpanded here
python3 "$BENCH/run.py" --out "$OUT" "${OPTS[@]}" "${EXTRA[@]}" \
  --server "wshub=$PY $ROOT/benchmarks/server.py --port \$PORT --app \$APP" \
  --servers "$SERVERS"

# ---- clients: wshub's client vs picows' client against the harness's C echo server ----------
# (benchmarks/client_bench.py; its table is appended to the report)
CLIENT_OPTS=(--reps 5 --seconds 5)
[ "${1:-}" = --quick ] && CLIENT_OPTS=(--reps 1 --seconds 1 --warmup 0.5)
echo "bench: clients (benchmarks/client_bench.py ${CLIENT_OPTS[*]})"
"$PY" "$ROOT/benchmarks/client_bench.py" "${CLIENT_OPTS[@]}" --out "$OUT/clients.md" \
  --json "$OUT/clients.json"

# ---- memory of an idle connection that negotiated permessage-deflate ------------------------
# (wsload never offers compression, so the harness's storm measures the "off" case only)
MEM_CONNS=2000
[ "${1:-}" = --quick ] && MEM_CONNS=500
echo "bench: RSS per idle connection with permessage-deflate ($MEM_CONNS connections)"
rm -f "$OUT/deflate-idle.json"
"$PY" "$ROOT/benchmarks/cpu_cost.py" --servers wshub-deflate --idle-memory "$MEM_CONNS" \
  --reps 3 --json "$OUT/deflate-idle.json"
# the same after one message each way (zlib streams exist then): context, not a target
"$PY" "$ROOT/benchmarks/cpu_cost.py" --servers wshub-deflate --idle-memory "$MEM_CONNS" \
  --messages 1 --reps 3 --json "$OUT/deflate-idle.json"

"$PY" "$ROOT/benchmarks/report.py" "$OUT/results.json" --out "$REPORT" \
  --clients "$OUT/clients.json" --deflate-memory "$OUT/deflate-idle.json"
{ echo; cat "$OUT/clients.md"; } >>"$REPORT"

echo "bench: done in $(($(date +%s) - T0)) s; $REPORT"
