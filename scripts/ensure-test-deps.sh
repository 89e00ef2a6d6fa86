#!/usr/bin/env bash
# Make sure the test dependencies that are not Python packages are installed:
#
#   /usr/bin/chromium   Debian's chromium; the browser tests drive it through Playwright with
#                       executable_path (we never run `playwright install`, which downloads a
#                       browser build of its own)
#   redis-server        the Redis broker's contract tests start their own server on loopback
#   redis-sentinel      the failover tests start three sentinels next to their servers
#   haproxy             the load balancer of the chaos suite (make chaos), configured from
#                       deploy/haproxy.cfg
#
# Idempotent and fast when all are present (no apt call at all). As root it installs what is
# missing with apt-get (running `apt-get update` once first when apt does not know a package);
# otherwise it prints the command to run and exits 1.
#
# Usage: scripts/ensure-test-deps.sh        (called by `make test`)
set -euo pipefail

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || missing+=(redis-server)
command -v redis-sentinel >/dev/null 2>&1 || [ -x /usr/bin/redis-sentinel ] || missing+=(redis-sentinel)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)

if [ ${#missing[@]} -eq 0 ]; then
  echo "ensure-test-deps: chromium, redis-server, redis-sentinel and haproxy are present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "ensure-test-deps: missing: ${missing[*]}" >&2
  echo "ensure-test-deps: install them with:" >&2
  echo "    sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# apt-cache knows a package only after an `apt-get update` on a new machine
known() { apt-cache show "$1" >/dev/null 2>&1; }
for pkg in "${missing[@]}"; do
  if ! known "$pkg"; then
    echo "ensure-test-deps: apt does not know $pkg yet: apt-get update"
    apt-get update -q
    break
  fi
done
echo "ensure-test-deps: apt-get install -y ${missing[*]}"
apt-get install -y -q "${missing[@]}"

[ -x /usr/bin/chromium ] || { echo "ensure-test-deps: /usr/bin/chromium still missing" >&2; exit 1; }
command -v redis-server >/dev/null 2>&1 || { echo "ensure-test-deps: redis-server still missing" >&2; exit 1; }
command -v redis-sentinel >/dev/null 2>&1 || { echo "ensure-test-deps: redis-sentinel still missing" >&2; exit 1; }
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || { echo "ensure-test-deps: haproxy still missing" >&2; exit 1; }
echo "ensure-test-deps: installed ${missing[*]}"
