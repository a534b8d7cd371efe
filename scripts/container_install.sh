#!/usr/bin/env bash
# Install `orcahello live` for CPU into a virtual environment: what the Dockerfile runs (and what a plain Debian or
# Ubuntu machine can run to get the same thing without a container).
#
#   scripts/container_install.sh [VENV_DIR]        (default /opt/orcahello/venv)
#   scripts/container_install.sh --print-plan [VENV_DIR]   says what it would install, installs nothing
#
# - Python 3.10+ with venv (on Debian/Ubuntu as root, python3 and python3-venv are installed with apt-get if missing);
# - CPU-only torch and torchaudio from $TORCH_INDEX_URL (default PyTorch's CPU wheel index: no CUDA libraries,
#   ~700 MB less); set TORCH_INDEX_URL=https://pypi.org/simple where only PyPI is reachable (then torch brings its
#   CUDA libraries, unused on a CPU);
# - this checkout, not editable, with the `plot` extra (the moderators' spectrogram pictures). No fastai: the model
#   folder is the converted Transformers one, mounted at run time.
set -euo pipefail
SOURCE_DIR="$(cd "$(dirname "$0")/.." && pwd)"
PRINT_PLAN=0
if [ "${1:-}" = "--print-plan" ]; then
  PRINT_PLAN=1
  shift
fi
VENV_DIR="${1:-/opt/orcahello/venv}"
TORCH_INDEX_URL="${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}"
# The exact torch and torchaudio of uv.lock (a matched pair, the one every figure was measured on); pyproject.toml
# only gives ranges. Read with awk: python3 may not be installed yet.
TORCH_PINS=$(awk '/^\[\[package\]\]/ { name = "" }
  /^name = "(torch|torchaudio)"$/ { gsub(/name = |"/, ""); name = $0 }
  name != "" && /^version = / { gsub(/version = |"/, ""); print name "==" $0; name = "" }' "$SOURCE_DIR/uv.lock" | sort -u | paste -sd ' ')
if [ "$(echo "$TORCH_PINS" | wc -w)" != 2 ]; then
  echo "ERROR: expected one torch and one torchaudio version in $SOURCE_DIR/uv.lock, found: ${TORCH_PINS:-none}" >&2
  exit 2
fi
if [ "$PRINT_PLAN" = 1 ]; then
  echo "venv: $VENV_DIR"
  echo "torch: $TORCH_PINS"
  echo "torch index: $TORCH_INDEX_URL"
  echo "package: $SOURCE_DIR[plot]"
  exit 0
fi

if ! python3 -c "import venv, ensurepip" >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing python3 and python3-venv with apt-get"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3 python3-venv ca-certificates
    rm -rf /var/lib/apt/lists/*
  else
    echo "ERROR: needs python3 (3.10 or later) with the venv module (Debian: apt-get install python3-venv)" >&2
    exit 2
  fi
fi

echo "==> creating $VENV_DIR"
python3 -m venv "$VENV_DIR"
"$VENV_DIR/bin/python" -m pip install -q --upgrade pip 'uv>=0.9'
echo "==> CPU torch ($TORCH_PINS) from $TORCH_INDEX_URL"
# shellcheck disable=SC2086  # the pins are separate words
"$VENV_DIR/bin/uv" pip install -q --python "$VENV_DIR/bin/python" --index-url "$TORCH_INDEX_URL" $TORCH_PINS
echo "==> orcahello (with plots) from $SOURCE_DIR"
"$VENV_DIR/bin/uv" pip install -q --python "$VENV_DIR/bin/python" "$SOURCE_DIR[plot]"
"$VENV_DIR/bin/orcahello" live --help >/dev/null
echo "==> installed: $VENV_DIR/bin/orcahello"
