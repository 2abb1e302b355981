#!/usr/bin/env bash
# Issue 13 on the GPU machine: embeddings and rerank through the app vs vLLM's pooling server vs
# in-process sentence-transformers (ops.bench.peers), and a py-spy profile of the embeddings path.
# Runs after `run-vllm-bench.sh install` (the staged vLLM + Ray + app tree in /tmp/site); the
# wheels the image lacks (orjson, psutil, httpx) travel in .whl. Infinity is not carried.
#
#   bash ops/gpu/embed_bench.sh peers [SET]     # SET: h100x1-embed (proxy) or h100x1-embed-haproxy
#   bash ops/gpu/embed_bench.sh profile [SET]
# Results go to $OUT (tarred as embed-<phase>-<set>.tar.gz).
set -uo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO"
SET=${2:-h100x1-embed}
if [ ! -f /tmp/site/orjson/__init__.py ] && [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$REPO
export PYTHONUNBUFFERED=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export VLLM_USE_FLASHINFER_SAMPLER=0 RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=token
CONFIG=ops/gpu/experiments/rendered/$SET.yaml
RES=/tmp/embed-results
mkdir -p "$RES"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv > "$RES/gpu.csv"
case "${1:-peers}" in
peers)
  timeout -k 10 ${BUDGET:-520} python3 -m ops.bench.peers \
    --config "$CONFIG" --embed-recipe embed-minilm-h100@2 --rerank-recipe rerank-minilm-h100@2 \
    --servers app vllm-pooling in-process --rounds "${ROUNDS:-3}" --duration "${DURATION:-8}" \
    --warmup 2 --sizes 1 16 --concurrency 32 --llm-ab-rounds 0 --cosine-min 0.9999 \
    --out "$RES" > "$RES/peers-$SET.log" 2>&1
  echo "peers exit $?"; tail -40 "$RES/peers-$SET.log"
  ;;
profile)
  timeout -k 10 ${BUDGET:-400} python3 -m ops.bench.profile_embeddings --config "$CONFIG" \
    --out "$RES/profile-$SET" > "$RES/profile-$SET.log" 2>&1
  echo "profile exit $?"; tail -30 "$RES/profile-$SET.log"
  ;;
esac
tar -czf "$OUT/embed-${1:-peers}-$SET.tar.gz" -C /tmp embed-results
