#!/usr/bin/env bash
# Builds and runs every test of the solution. Installs redis-server (Debian package) first if it is missing:
# the adapter's tests and the AppHost's tests run a real redis-server.
set -euo pipefail
cd "$(dirname "$0")"

ensure_redis_server() {
  if command -v redis-server >/dev/null 2>&1; then
    return
  fi
  echo "redis-server not found: installing the Debian package redis-server" >&2
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends redis-server
  # The package also starts a system-wide service on :6379; the tests start their own servers and do not use it.
}

ensure_redis_server

status=0
rm -f TestResults/chaos-report.txt
dotnet test ReferenceApp.sln --logger "console;verbosity=normal" "$@" || status=$?
if [ -f TestResults/chaos-report.txt ]; then
  echo
  echo "Chaos tests, counts per fault (sent, received, lost, duplicates, reordered):"
  cat TestResults/chaos-report.txt
fi
exit "$status"
