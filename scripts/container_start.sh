#!/usr/bin/env bash
# The container's command: `orcahello live` for the nodes named in the environment.
#
#   ORCAHELLO_NODES         node URLs (http(s)://host/<node>), node folders or .m3u8 URLs, separated by spaces or
#                           commas; required unless ORCAHELLO_HYDROPHONE_CONFIG names them
#   ORCAHELLO_HYDROPHONE_CONFIG  optional: upstream's hydrophone config (its ConfigMap's config.yml, mounted):
#                           --hydrophone-config, whose hls_hydrophone_id names the node when ORCAHELLO_NODES is empty
#   ORCAHELLO_METRICS_PORT  optional: serve /metrics, /healthz and /readyz on this port (--metrics-port)
#   ORCAHELLO_METRICS_HOST  the address they listen on (default 0.0.0.0 when a port is given: reachable from the
#                           pod's network, as a probe or a Prometheus scrape needs)
#   ORCAHELLO_MODEL         the model folder (the image expects it mounted at /model)
#   ORCAHELLO_OUTPUT_DIR    where results go (default ./orcahello_live; the image uses the /data volume)
#   ORCAHELLO_POST_URL      optional: POST each positive minute there
#   ORCAHELLO_STOP_AFTER    optional: stop after this many seconds (default: run until SIGTERM)
#   ORCAHELLO_POLL_SECONDS, ORCAHELLO_BACKLOG_SECONDS, ORCAHELLO_THRESHOLD, ORCAHELLO_MIN_POSITIVE_SECONDS: as the
#                           options of the same names
#   ORCAHELLO_PYTHON        the Python to run (default: /opt/orcahello/venv/bin/python when present, else python3)
# Arguments given to this script are passed on to `orcahello live`.
set -euo pipefail
cd "$(dirname "$0")/.."

NODES="${ORCAHELLO_NODES:-}"
NODES="${NODES//,/ }"
if [ -z "${NODES// /}" ] && [ -z "${ORCAHELLO_HYDROPHONE_CONFIG:-}" ]; then
  echo "ERROR: ORCAHELLO_NODES is empty: name the nodes to follow, e.g. ORCAHELLO_NODES=\"https://<bucket>/rpi_orcasound_lab https://<bucket>/rpi_bush_point\", or give ORCAHELLO_HYDROPHONE_CONFIG" >&2
  exit 2
fi
if [ -n "${ORCAHELLO_PYTHON:-}" ]; then
  PYTHON="$ORCAHELLO_PYTHON"
elif [ -x /opt/orcahello/venv/bin/python ]; then
  PYTHON=/opt/orcahello/venv/bin/python
else
  PYTHON=python3
fi

# Split on spaces into an array, never expanded as a glob pattern (a node named `*` stays `*`).
read -r -a nodes <<<"$NODES"
arguments=(live "${nodes[@]}" --output-dir "${ORCAHELLO_OUTPUT_DIR:-orcahello_live}")
[ -n "${ORCAHELLO_MODEL:-}" ] && arguments+=(--model "$ORCAHELLO_MODEL")
[ -n "${ORCAHELLO_HYDROPHONE_CONFIG:-}" ] && arguments+=(--hydrophone-config "$ORCAHELLO_HYDROPHONE_CONFIG")
if [ -n "${ORCAHELLO_METRICS_PORT:-}" ]; then
  arguments+=(--metrics-port "$ORCAHELLO_METRICS_PORT" --metrics-host "${ORCAHELLO_METRICS_HOST:-0.0.0.0}")
fi
[ -n "${ORCAHELLO_POST_URL:-}" ] && arguments+=(--post "$ORCAHELLO_POST_URL")
[ -n "${ORCAHELLO_STOP_AFTER:-}" ] && arguments+=(--stop-after "$ORCAHELLO_STOP_AFTER")
[ -n "${ORCAHELLO_POLL_SECONDS:-}" ] && arguments+=(--poll-seconds "$ORCAHELLO_POLL_SECONDS")
[ -n "${ORCAHELLO_BACKLOG_SECONDS:-}" ] && arguments+=(--backlog-seconds "$ORCAHELLO_BACKLOG_SECONDS")
[ -n "${ORCAHELLO_THRESHOLD:-}" ] && arguments+=(--threshold "$ORCAHELLO_THRESHOLD")
[ -n "${ORCAHELLO_MIN_POSITIVE_SECONDS:-}" ] && arguments+=(--min-positive-seconds "$ORCAHELLO_MIN_POSITIVE_SECONDS")
echo "orcahello live: ${arguments[*]:1} $*" >&2
# exec: the detector is the container's main process and gets its SIGTERM directly (finish, flush, exit 0).
exec "$PYTHON" -m orcahello.cli "${arguments[@]}" "$@"
