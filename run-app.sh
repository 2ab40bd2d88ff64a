#!/usr/bin/env bash
# Starts the whole app: Redis, the chat nodes, the balancer and the Aspire dashboard (http://localhost:18888).
# The chat page's URL (the balancer) is printed once everything is healthy. Ctrl+C stops it all.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v redis-server >/dev/null 2>&1; then
  echo "redis-server not found: installing the Debian package redis-server" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends redis-server
fi

# exec: Ctrl+C / SIGTERM reach dotnet run, which forwards them to the AppHost.
exec dotnet run --project AppHost "$@"
