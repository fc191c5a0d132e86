#!/usr/bin/env bash
# The demo: the portal on :5000, the WeChat sandbox on :5001 and the worker, wired to each other.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
mkdir -p instance

export FLASK_APP=wsgi
export GRANTDESK_CONFIG=${GRANTDESK_CONFIG:-development}
export PUBLIC_BASE_URL=${PUBLIC_BASE_URL:-http://127.0.0.1:5000}
# The portal talks to the sandbox exactly as it would to WeChat; only the base URLs differ.
export WECHAT_API_BASE=${WECHAT_API_BASE:-http://127.0.0.1:5001}
export WECHAT_MP_BASE=${WECHAT_MP_BASE:-http://127.0.0.1:5001}
export WECHAT_OPEN_BASE=${WECHAT_OPEN_BASE:-http://127.0.0.1:5001}
export SANDBOX_EVENT_URL=${SANDBOX_EVENT_URL:-$PUBLIC_BASE_URL/wechat/events}
export SANDBOX_MESSAGE_URL=${SANDBOX_MESSAGE_URL:-$PUBLIC_BASE_URL/wechat/messages/\$APPID\$}
export SANDBOX_INITIATING_DOMAIN=${SANDBOX_INITIATING_DOMAIN:-127.0.0.1:5000}
export SANDBOX_TICKET_INTERVAL=${SANDBOX_TICKET_INTERVAL:-600}
# Lets the staff health page show the sandbox's release-check result (a demo aid only).
export SANDBOX_CONTROL_URL=${SANDBOX_CONTROL_URL:-http://127.0.0.1:5001}

$BIN/flask db upgrade
$BIN/flask seed-demo

trap 'kill $(jobs -p) 2>/dev/null || true' EXIT INT TERM
$BIN/flask run --host 127.0.0.1 --port 5000 --no-reload &
# The sandbox pushes a ticket as soon as it starts: let the portal be listening first.
for _ in $(seq 1 50); do
  $BIN/python -c "import urllib.request; urllib.request.urlopen('$PUBLIC_BASE_URL/healthz', timeout=1)" \
    2>/dev/null && break
  sleep 0.2
done
$BIN/flask --app app.sandbox run --host 127.0.0.1 --port 5001 --no-reload &
$BIN/flask worker &
sleep 1
echo
echo "Grantdesk:  $PUBLIC_BASE_URL   (demo users above; password grantdesk-demo)"
echo "Sandbox:    http://127.0.0.1:5001/sandbox/"
echo "Press Ctrl+C to stop."
wait -n
