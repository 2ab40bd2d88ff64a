#!/usr/bin/env bash
# Builds and runs every test of the solution. Installs first, if missing, what the tests run (Debian packages,
# non-interactively): redis-server (the adapter's and the AppHost's tests run a real one) and chromium (the browser
# test drives it headless through Playwright's driver, which comes with the Microsoft.Playwright NuGet package).
# The chat page's npm package (@microsoft/signalr) is installed by ChatNode's build (`npm ci`), which needs npm.
set -euo pipefail
cd "$(dirname "$0")"

apt_updated=""
ensure_debian_package() {
  local command="$1" package="$2"
  if command -v "$command" >/dev/null 2>&1; then
    return
  fi
  echo "$command not found: installing the Debian package $package" >&2
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  if [ -z "$apt_updated" ]; then
    $sudo apt-get update </dev/null
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "$package" </dev/null
}

ensure_debian_package redis-server redis-server
# redis-cli creates the Redis Cluster of the cluster tests (redis-cli --cluster create).
ensure_debian_package redis-cli redis-tools
# The redis-server package also starts a system-wide service on :6379; the tests start their own servers and do not use it.
if [ -z "${CHROMIUM_PATH:-}" ]; then
  ensure_debian_package chromium chromium
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "npm not found: the chat page's SignalR client comes from npm (install Node.js and npm)" >&2
  exit 1
fi

status=0
rm -f TestResults/chaos-report.txt
dotnet test ReferenceApp.sln --logger "console;verbosity=normal" "$@" || status=$?
if [ -f TestResults/chaos-report.txt ]; then
  echo
  echo "Chaos tests, counts per fault (sent, received, lost, duplicates, reordered):"
  cat TestResults/chaos-report.txt
fi
exit "$status"
