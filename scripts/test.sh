#!/usr/bin/env bash
# The project's test command (README, .ci/run): installs the test peers it needs, then runs every
# test of the workspace. Safe to run repeatedly; installs are skipped when present. Debian packages
# are installed with apt-get, so run it as root (or as a user who may run apt-get).
set -euo pipefail
cd "$(dirname "$0")/.."
peers=.peers
if [ ! -x "$peers/py/bin/python" ] || ! "$peers/py/bin/python" -c "import websockets" 2>/dev/null; then
  echo "== installing Python peers into $peers/py"
  if ! python3 -m venv "$peers/py" 2>/dev/null; then
    # Debian's python3 keeps venv in a separate package.
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$peers/py"
  fi
  "$peers/py/bin/pip" install --quiet --disable-pip-version-check "websockets==17.*"
fi
if [ ! -x "$peers/acme/bin/python" ] || ! "$peers/acme/bin/python" -c "import acmecse" 2>/dev/null; then
  echo "== installing the ACME CSE into $peers/acme"
  python3 -m venv "$peers/acme"
  "$peers/acme/bin/pip" install --quiet --disable-pip-version-check "acmecse==2026.5.3" websockets cbor2
fi
if ! command -v chromium >/dev/null 2>&1; then
  echo "== installing Debian's chromium (headless browser peer)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if [ ! -f /usr/share/java/hdrhistogram.jar ] || ! command -v java >/dev/null 2>&1; then
  echo "== installing HdrHistogram's Java reader (reads the loadgen's interval logs)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless libhdrhistogram-java >/dev/null
fi
if ! command -v prometheus >/dev/null 2>&1; then
  echo "== installing Debian's prometheus (scrapes the edge and the loadgen in a test; never started as a service)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
fi
if ! command -v systemd-analyze >/dev/null 2>&1 || ! /usr/bin/python3 -c "import seccomp" 2>/dev/null; then
  echo "== installing systemd-analyze and libseccomp's Python binding (deployment tests)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd python3-seccomp >/dev/null
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "== installing Debian's Node.js and npm (drive the headless browser)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
if [ ! -d "$peers/node/node_modules/playwright-core" ]; then
  echo "== installing playwright-core into $peers/node"
  mkdir -p "$peers/node"
  (cd "$peers/node" && npm install --silent --no-audit --no-fund playwright-core@1)
fi
cargo test --workspace --locked "$@"
