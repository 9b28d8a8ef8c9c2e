#!/usr/bin/env bash
# Render a `strattack report RUN --html` page to a PNG with headless Chromium, to look at it
# the way a reader's browser shows it (Debian: apt-get install -y chromium).
#   benchmarks/render_report_html.sh RUN/report.html [OUT.png] [WIDTHxHEIGHT]
set -euo pipefail
page=${1:?usage: $0 REPORT.html [OUT.png] [WIDTHxHEIGHT]}
png=${2:-${page%.html}.png}
size=${3:-1400x2400}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
    echo "no Chromium found: apt-get install -y chromium" >&2
    exit 1
fi
# --no-sandbox: needed as root (containers); the page has no script and no external reference.
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --screenshot="$(realpath -m "$png")" --window-size="${size/x/,}" \
    "file://$(realpath "$page")" 2>/dev/null
echo "wrote $png"
