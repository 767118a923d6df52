#!/usr/bin/env bash
# The cluster profile on a GPU, one command: ResNet-50 at 224 px, train and embed through the stages'
# own functions, against the bare model (benchmarks/bench_gpu.py; its docstring says what is run).
#
#   benchmarks/gpu.sh                  # on a machine with a CUDA GPU; extra arguments go to bench_gpu.py
#   benchmarks/gpu.sh --dry-run        # CPU, tiny model and sizes: checks the script anywhere
#   benchmarks/gpu.sh --fetch-wheels   # HERE, with network: the wheels a torch-only machine lacks -> .whl/
#
# Assumes: run from a copy of this repository; Linux x86-64; a CUDA GPU with a driver that suits the
# torch found (torch 2.14.1 from PyPI is built for CUDA 13: driver 580+); Fashion-MNIST in
# /usr/share/datasets/fashion-mnist (else random 28 x 28 images of the same shape are used: same cost).
# Needs no network when a Python with the packages is there. Which Python, first that works:
#   1. .venv/bin/python (scripts/setup.sh made it: the pinned packages);
#   2. python3 when it imports torch, torchvision, transformers, datasets, accelerate, sklearn, pyarrow
#      (the repository goes on PYTHONPATH; its requires-python is not checked);
#   3. python3 plus wheels carried in .whl/ (from `--fetch-wheels`: datasets, dill, multiprocess, for a
#      machine whose image has torch and transformers but not datasets), installed into /tmp/site;
#   4. otherwise a venv .venv-gpu sharing python3's packages, with `pip install -c constraints.txt
#      -e .[train,embed]` (needs PyPI; torch 2.14.1 is about 1 GB when it is missing).
# Wall time on an H200: about 5 minutes with the packages there (data set 1 min, two train runs,
# bare training steps, embed eager and with CUDA graphs, each with its bare forward pass, compilation
# about a minute per compiled mode). Figures also go to $OUT/bench_gpu.json when OUT is set.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
NEEDS="import torch, torchvision, transformers, datasets, accelerate, sklearn, pyarrow"

if [ "${1:-}" = "--fetch-wheels" ]; then
  mkdir -p .whl
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  for pkg in datasets dill multiprocess; do
    pin=$(grep -i "^$pkg==" constraints.txt)
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl "$pin"
  done
  ls -la .whl
  exit 0
fi

PY=""
if [ -x .venv/bin/python ] && .venv/bin/python -c "$NEEDS" 2>/dev/null; then
  PY=.venv/bin/python
elif python3 -c "$NEEDS" 2>/dev/null; then
  PY=python3
elif compgen -G ".whl/*.whl" >/dev/null && python3 -c "import torch, transformers" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
  PY=python3
else
  echo "gpu.sh: no Python with the packages; creating .venv-gpu (needs PyPI)"
  python3 -m venv --system-site-packages .venv-gpu
  .venv-gpu/bin/python -m pip install -q --ignore-requires-python -c constraints.txt -e '.[train,embed]'
  PY=.venv-gpu/bin/python
fi
$PY -c "$NEEDS" || { echo "gpu.sh: $PY lacks a package: $NEEDS"; exit 1; }
echo "gpu.sh: $($PY --version) at $(command -v $PY), torch $($PY -c 'import torch; print(torch.__version__)')"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

ARGS=(--require-gpu)
for a in "$@"; do [ "$a" = "--dry-run" ] && ARGS=(); done
[ -n "${OUT:-}" ] && ARGS+=(--json "$OUT/bench_gpu.json")
exec $PY benchmarks/bench_gpu.py "${ARGS[@]}" "$@"
