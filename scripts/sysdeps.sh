#!/usr/bin/env bash
# Install the Debian tools that some tests drive for real, when missing and when we
# may (root with apt-get). Never fails the build: tests skip with a reason instead.
set -u
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
[ -x /usr/bin/time ] || need+=(time)   # GNU time -v: the reference peak for `memwarden run`
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)  # Celery's broker in the service tests
command -v go >/dev/null 2>&1 || need+=(golang-go)               # `go tool pprof` reads our profiles
command -v valgrind >/dev/null 2>&1 || need+=(valgrind)          # the C extension's memory check
command -v wrk >/dev/null 2>&1 || need+=(wrk)                    # the services bench's load generator
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "sysdeps: cannot install ${need[*]} (not root or no apt-get); the tests that need them will skip"
  exit 0
fi
echo "sysdeps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! timeout 600 apt-get update -qq >/dev/null 2>&1; then
  echo "sysdeps: apt-get update failed; the tests that need ${need[*]} will skip"
  exit 0
fi
timeout 900 apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
  || echo "sysdeps: apt-get install ${need[*]} failed; the tests that need them will skip"
# Debian's prometheus package starts a server when installed; we only need promtool.
if command -v systemctl >/dev/null 2>&1; then systemctl stop prometheus >/dev/null 2>&1 || true; fi
pkill -x prometheus >/dev/null 2>&1 || true
pkill -f prometheus-node-exporter >/dev/null 2>&1 || true
# Debian's redis-server starts a server on 6379 when installed; tests start their own.
if command -v systemctl >/dev/null 2>&1; then systemctl stop redis-server >/dev/null 2>&1 || true; fi
pkill -x redis-server >/dev/null 2>&1 || true
exit 0
