#!/bin/sh
# ctest browser_serve: the page of doppel serve in headless Chromium (tests/browser/serve.test.mjs).
# Skips (exit 77, reason printed) when Chromium, node or playwright-core is missing; set up with:
#   apt-get install -y chromium nodejs npm
#   (cd tests/browser && npm install --no-save --no-package-lock playwright-core@1)   # git-ignored node_modules
# usage: run.sh DOPPEL_BINARY [SCREENSHOT.png]
here=$(cd "$(dirname "$0")" && pwd)
chromium=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then echo "SKIPPED: $chromium not found (apt-get install -y chromium)"; exit 77; fi
if ! command -v node >/dev/null 2>&1; then echo "SKIPPED: node not found (apt-get install -y nodejs)"; exit 77; fi
if [ ! -d "$here/node_modules/playwright-core" ]; then
  echo "SKIPPED: playwright-core not installed (cd tests/browser && npm install --no-save --no-package-lock playwright-core@1)"
  exit 77
fi
exec node "$here/serve.test.mjs" "$@"
