#!/usr/bin/env bash
# A screenshot of the demo page with headless Chromium (docs/demo.md).
#
#   scripts/screenshot_demo.sh --model_dir=runs/shapes/model [other --stage=demo flags]
#
# Starts `main.py --stage=demo` on 127.0.0.1, opens `/?example=1` (the
# page captions its first example on load) in headless Chromium
# (scripts/screenshot_page.py) and saves the picture to $OUT (default
# docs/images/demo.png) once the caption is there; the demo is stopped
# afterwards. Needs the demo extra (pip install -e ".[demo]") and Chromium
# (Debian: apt-get install -y chromium). PYTHON picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-docs/images/demo.png}
PORT=${PORT:-7861}
CHROMIUM=${CHROMIUM:-chromium}
command -v "$CHROMIUM" >/dev/null || { echo "error: $CHROMIUM not found: apt-get install -y chromium (or set CHROMIUM=)" >&2; exit 2; }
LOG=$(mktemp)
"$PYTHON" main.py --stage=demo --demo_host=127.0.0.1 --demo_port="$PORT" "$@" >"$LOG" 2>&1 &
PID=$!
trap 'kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -f "$LOG"' EXIT
for _ in $(seq 1 300); do  # the model loads, then the page comes up
  grep -q "page up" "$LOG" && break
  kill -0 "$PID" 2>/dev/null || { cat "$LOG" >&2; exit 1; }
  sleep 1
done
grep -q "page up" "$LOG" || { echo "error: the demo was not up within 300 s" >&2; cat "$LOG" >&2; exit 1; }
grep "page up" "$LOG"
mkdir -p "$(dirname "$OUT")"
# the picture is taken in real time once nothing on the page is "processing"
# (Chromium's own --screenshot runs on virtual time, which races ahead of the
# server: its picture showed every output still processing)
W=${WINDOW:-1400,1700}
"$PYTHON" scripts/screenshot_page.py "http://127.0.0.1:$PORT/?example=${EXAMPLE:-1}" "$OUT" \
  --chromium="$CHROMIUM" --width="${W%,*}" --height="${W#*,}" --timeout="${WAIT_S:-300}"
echo "wrote $OUT"
