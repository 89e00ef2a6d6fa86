#!/usr/bin/env bash
# Run Autobahn|Testsuite (../shared/autobahn) against both halves of wshub:
#
#   server side: fuzzingclient  -> python compliance/server.py --port PORT
#   client side: fuzzingserver  <- python compliance/client.py --url ws://127.0.0.1:PORT --agent NAME
#
# then write the summary (compliance/report.py) and fail if a case FAILED, if a closing handshake
# FAILED or was UNCLEAN on either side, or if a side did not run every case.
#
# Usage: scripts/compliance.sh [--quick]      (`make compliance`, `make compliance-quick`)
#   --quick        skip the slow groups 9.*, 12.*, 13.* (247 cases instead of 517), for development
# Environment:
#   SHARED                 folder holding autobahn/ (default: ../shared beside the repository)
#   PY                     Python with wshub installed (default: .venv/bin/python)
#   COMPLIANCE_PARALLEL    1 (default): both sides at once; 0: one after the other
#   COMPLIANCE_CASES       testsuite case patterns to run instead of all (e.g. '1.*,5.*');
#                          the case-count check is then skipped
#
# Output: compliance/reports/{server,client}/ (HTML + JSON, gitignored) and compliance/SUMMARY.md
# (full run) or compliance/reports/SUMMARY-quick.md (--quick or COMPLIANCE_CASES).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHARED="${SHARED:-$ROOT/../shared}"
PY="${PY:-$ROOT/.venv/bin/python}"
AB="$SHARED/autobahn"
PARALLEL="${COMPLIANCE_PARALLEL:-1}"
CASES="${COMPLIANCE_CASES:-}"

QUICK=""
case "${1:-}" in
  --quick) QUICK=1 ;;
  "") ;;
  *) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2; exit 2 ;;
esac

[ -x "$AB/run.sh" ] || { echo "compliance: no Autobahn harness at $AB (set SHARED=)" >&2; exit 2; }
[ -x "$PY" ] || { echo "compliance: no Python at $PY (run make compliance)" >&2; exit 2; }

RUN_OPTS=()
if [ -n "$QUICK" ]; then
  RUN_OPTS+=(--quick)
  OUT="$ROOT/compliance/reports/quick"
  SUMMARY="$ROOT/compliance/reports/SUMMARY-quick.md"
  EXPECT=247
else
  OUT="$ROOT/compliance/reports"
  SUMMARY="$ROOT/compliance/SUMMARY.md"
  EXPECT=517
fi
if [ -n "$CASES" ]; then
  OUT="$ROOT/compliance/reports/cases"
  SUMMARY="$ROOT/compliance/reports/SUMMARY-cases.md"
  EXPECT=0
fi
mkdir -p "$OUT"

now() { date +%s; }
T0=$(now)
# run.sh would run setup.sh itself when wstest is missing; do it once here so that the two sides
# started in parallel do not both try to build the testsuite venv
echo "compliance: setting up the testsuite ($AB/setup.sh)"
"$AB/setup.sh" >"$OUT/setup.log" 2>&1 || { tail -20 "$OUT/setup.log" >&2; exit 1; }
echo "compliance: testsuite ready in $(($(now) - T0)) s"

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

PIDS=()
cleanup() {
  local pid
  [ ${#PIDS[@]} -gt 0 ] || return 0
  for pid in "${PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# server_side LOG: our echo server under the fuzzingclient
server_side() {
  local port dir="$OUT/server" start rc=0 spid
  port=$(free_port)
  start=$(now)
  rm -rf "$dir"
  "$PY" "$ROOT/compliance/server.py" --port "$port" >"$OUT/server.stdout.log" 2>&1 &
  spid=$!
  for _ in $(seq 200); do
    kill -0 "$spid" 2>/dev/null || { echo "compliance/server.py exited:"; tail -20 "$OUT/server.stdout.log"; return 1; }
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
  "$AB/run.sh" "${RUN_OPTS[@]}" server "ws://127.0.0.1:$port" wshub-server "$dir" ${CASES:+"$CASES"} || rc=$?
  if ! kill -0 "$spid" 2>/dev/null; then
    echo "compliance: compliance/server.py died during the run:"
    tail -20 "$OUT/server.stdout.log"
    rc=1
  fi
  kill -TERM "$spid" 2>/dev/null || true
  wait "$spid" 2>/dev/null || true
  echo "$(($(now) - start))" >"$OUT/server.elapsed"
  return "$rc"
}

# client_side: the fuzzingserver drives compliance/client.py
client_side() {
  local port dir="$OUT/client" start rc=0
  port=$(free_port)
  start=$(now)
  rm -rf "$dir"
  "$AB/run.sh" "${RUN_OPTS[@]}" client "$port" "$dir" ${CASES:+"$CASES"} -- \
    "$PY" "$ROOT/compliance/client.py" --url "ws://127.0.0.1:$port" --agent wshub-client || rc=$?
  echo "$(($(now) - start))" >"$OUT/client.elapsed"
  return "$rc"
}

rm -f "$OUT"/server.elapsed "$OUT"/client.elapsed
# each side runs as a background job in its own process group (set -m), so that cleanup can stop
# everything it started (run.sh, wstest, our server) by that group's id
set -m
side_done() {  # side_done SIDE RC
  echo "compliance: $1 side done (exit $2, $(cat "$OUT/$1.elapsed" 2>/dev/null || echo '?') s)"
}
srv_rc=0
cli_rc=0
echo "compliance: server side: fuzzingclient -> compliance/server.py (log: $OUT/server.log)"
server_side >"$OUT/server.log" 2>&1 &
SRV_JOB=$!
PIDS+=("$SRV_JOB")
if [ "$PARALLEL" != 1 ]; then
  wait "$SRV_JOB" || srv_rc=$?
  side_done server "$srv_rc"
fi
echo "compliance: client side: fuzzingserver <- compliance/client.py (log: $OUT/client.log)"
client_side >"$OUT/client.log" 2>&1 &
CLI_JOB=$!
PIDS+=("$CLI_JOB")
if [ "$PARALLEL" = 1 ]; then
  wait "$SRV_JOB" || srv_rc=$?
  side_done server "$srv_rc"
fi
wait "$CLI_JOB" || cli_rc=$?
side_done client "$cli_rc"
PIDS=()
set +m

for side in server client; do
  echo "---- $side side: last lines of $OUT/$side.log"
  tail -5 "$OUT/$side.log"
done

echo "---- summary"
rc=0
"$PY" "$ROOT/compliance/report.py" \
  --summarizer "$AB/summarize.py" \
  --server-dir "$OUT/server" --client-dir "$OUT/client" \
  --server-exit "$srv_rc" --client-exit "$cli_rc" \
  --server-seconds "$(cat "$OUT/server.elapsed" 2>/dev/null || echo 0)" \
  --client-seconds "$(cat "$OUT/client.elapsed" 2>/dev/null || echo 0)" \
  --expect-cases "$EXPECT" \
  --mode "$([ -n "$CASES" ] && echo "cases $CASES" || { [ -n "$QUICK" ] && echo quick || echo full; })" \
  --out "$SUMMARY" || rc=$?
echo "compliance: total $(($(now) - T0)) s"
exit "$rc"
