#!/usr/bin/env bash
# One command from a fresh machine to a working detector:
#   1. a .venv with the exact versions of uv.lock (uv; ~1 minute, ~2.8 GB of CUDA-enabled torch wheels from PyPI),
#   2. the test data in test-data/ (scripts/fetch_test_data.py; optional: without it, its tests are skipped),
#   3. a local model folder in models/ (the Hub weights when reachable, else the synthetic stand-in learner of the
#      test data, else random weights of the production architecture: both marked synthetic in every output),
#   4. the detector (the `orcahello` command) run on the bundled example clip, writing outputs/example/.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/orcahello-venvs"
TOOLS="$CACHE/.uv-tool"
# Two set-ups at once (two checkouts, two terminals) would both build the shared uv folder and one would run a
# half-made uv (exit 127): one set-up at a time per user, the second waits. flock comes with util-linux; where it
# is missing (macOS), run one set-up at a time.
mkdir -p "$CACHE"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE/.setup.lock"
  if ! flock -n 9; then
    echo "==> another scripts/setup.sh is running; waiting for it to finish"
    flock 9
  fi
fi
if command -v uv >/dev/null 2>&1; then
  UV=uv
else
  if [ ! -x "$TOOLS/bin/uv" ]; then
    echo "==> installing uv into $TOOLS"
    rm -rf "$TOOLS"
    python3 -m venv "$TOOLS"
    "$TOOLS/bin/pip" install -q 'uv>=0.9'
  fi
  UV="$TOOLS/bin/uv"
fi

# A .venv left as a link by CI points at a shared cache; give this checkout its own environment.
if [ -L .venv ]; then rm .venv; fi
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$UV" venv -q --python "$(command -v python3)" .venv
fi
echo "==> installing the exact versions in uv.lock and this package (editable, with every extra: tests, plots, fine-tuning, batch, embeddings)"
UV_PROJECT_ENVIRONMENT=.venv "$UV" sync -q --locked --all-extras --compile-bytecode

# The test data (tests/test_data.json): from $ORCAHELLO_TEST_DATA_SOURCE, else a copy of the set beside the checkout
# (../shared, as this project's machines keep one), else the Hub dataset. Without it the detector still runs, and
# the tests that need the data are skipped.
if [ -z "${ORCAHELLO_TEST_DATA_SOURCE:-}" ] && [ -d ../shared/fixtures/legacy ]; then
  export ORCAHELLO_TEST_DATA_SOURCE=../shared
fi
echo "==> getting the test data"
if ! .venv/bin/python scripts/fetch_test_data.py; then
  echo "==> no test data: the tests that need it will be skipped (get it later: .venv/bin/python scripts/fetch_test_data.py)"
fi

echo "==> getting a model"
MODEL_DIR=$(.venv/bin/python scripts/fetch_model.py --print-path)

echo "==> running the detector on the bundled example clip"
.venv/bin/orcahello detect examples/pos_srkw_orcasound_210825-1925_L-highlight.wav \
  --model "$MODEL_DIR" --output-dir outputs/example --plot --overwrite
echo
cat outputs/example/summary.csv
echo
echo "Done: results and a spectrogram picture are in outputs/example/."
echo "Run the tests with: .venv/bin/python -m pytest -q"
