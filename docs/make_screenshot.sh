#!/usr/bin/env bash
# Screenshot an audit's report.html with headless Chromium (Debian's `chromium`).
#
#   docs/make_screenshot.sh [RUN_DIR] [OUT_PNG]
#
# Defaults: RUN_DIR=docs/audit-mnist-default, OUT_PNG=docs/report-screenshot.png.
# Install the browser with `apt-get update && apt-get install -y chromium`.
# tests/test_audit.py::test_report_screenshot runs this script (skipped without chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_DIR="${1:-docs/audit-mnist-default}"
OUT_PNG="${2:-docs/report-screenshot.png}"
SIZE="${SCREENSHOT_SIZE:-1280,2400}"
BROWSER="${CHROMIUM:-$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)}"
if [ -z "$BROWSER" ]; then
    echo "make_screenshot.sh: no chromium found (apt-get install -y chromium)" >&2
    exit 3
fi
if [ ! -f "$RUN_DIR/report.html" ]; then
    echo "make_screenshot.sh: $RUN_DIR/report.html not found (run \`owsd audit ... --out $RUN_DIR\`)" >&2
    exit 2
fi
PROFILE="$(mktemp -d)"
trap 'rm -rf "$PROFILE"' EXIT
mkdir -p "$(dirname "$OUT_PNG")"
OUT_ABS="$(cd "$(dirname "$OUT_PNG")" && pwd)/$(basename "$OUT_PNG")"
URL="file://$(cd "$RUN_DIR" && pwd)/report.html"
"$BROWSER" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --hide-scrollbars --user-data-dir="$PROFILE" --window-size="$SIZE" \
    --screenshot="$OUT_ABS" "$URL" >/dev/null 2>&1
test -s "$OUT_ABS"
echo "wrote $OUT_PNG from $URL"
