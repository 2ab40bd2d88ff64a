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
mkdir -p TestResults
# dotnet-stack: should a resource the AppHost tests restart never become healthy, the failure shows its threads' stacks
# (tests/AppHost.Tests/Chaos/StartDiagnostics.cs). Only a diagnostic: the tests run without it.
if [ ! -x TestResults/tools/dotnet-stack ]; then
  dotnet tool install --tool-path TestResults/tools dotnet-stack --version 10.0.750501 >/dev/null 2>&1 \
    || echo "dotnet-stack could not be installed: a start that hangs will be reported without stacks" >&2
fi
# Arguments go to every `dotnet test` (e.g. --filter ...); the build is Debug, once, before any test runs.
dotnet build ReferenceApp.sln
# Two lanes at once: the AppHost tests (the real app's processes: mostly waiting for them to start, and for fault
# windows to pass) beside the others (in-process servers, the soak's node processes, the package). One after the other
# they would take the sum of both; side by side, about the longer one. The AppHost lane's output is kept in a file and
# printed once both lanes are done, so that the two do not interleave.
dotnet test tests/AppHost.Tests/AppHost.Tests.csproj --no-build --logger "console;verbosity=normal" "$@" \
  > TestResults/apphost-tests.log 2>&1 &
apphost=$!
for project in Adapter.Tests Benchmarks.Tests Package.Tests; do
  dotnet test "tests/$project/$project.csproj" --no-build --logger "console;verbosity=normal" "$@" || status=$?
done
apphost_status=0
wait "$apphost" || apphost_status=$?
echo
echo "AppHost.Tests (ran beside the others):"
cat TestResults/apphost-tests.log
if [ "$apphost_status" -ne 0 ]; then status=$apphost_status; fi
if [ -f TestResults/chaos-report.txt ]; then
  echo
  echo "Chaos tests, counts per fault (sent, received, lost, duplicates, reordered):"
  cat TestResults/chaos-report.txt
fi
exit "$status"
