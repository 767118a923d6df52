#!/usr/bin/env bash
# Sets up everything the project needs on a Debian/Ubuntu machine, idempotently:
#   - Debian's dataset-fashion-mnist (real Fashion-MNIST IDX files), when missing;
#   - a virtual environment in .venv with the pinned packages and this project;
#   - with --test: Chromium and node for the report tests, when missing.
# Runs as root or through sudo for the apt step. Re-running it is cheap.
set -euo pipefail
cd "$(dirname "$0")/.."

FASHION_DIR=/usr/share/datasets/fashion-mnist
PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.installed

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if [ ! -f "$FASHION_DIR/train-images-idx3-ubyte.gz" ]; then
  echo "setup: installing Debian's dataset-fashion-mnist into $FASHION_DIR"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi

# `setup.sh --test` (make test): the browsers the report tests load pages in (headless Chromium, and
# node for the report's script), when missing.
if [ "${1:-}" = "--test" ]; then
  missing=()
  command -v chromium >/dev/null || missing+=(chromium)
  command -v node >/dev/null || missing+=(nodejs)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]} for the report tests"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi

# Reinstall only when the pins or the project metadata changed.
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ] || [ constraints.txt -nt "$STAMP" ]; then
  echo "setup: installing pinned packages into $VENV (first time: several minutes)"
  "$VENV/bin/python" -m pip install -q --upgrade 'pip==26.3'
  "$VENV/bin/python" -m pip install -q -c constraints.txt -e '.[dev]'
  touch "$STAMP"
fi
