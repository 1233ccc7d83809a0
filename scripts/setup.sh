#!/usr/bin/env bash
# Set up a virtual environment in .venv with embedscope installed (CPU-only PyTorch).
# Usage: bash scripts/setup.sh          # runtime
#        bash scripts/setup.sh --dev    # + test tools, Ray (the ray engine's tests), Chromium for the
#                                       #   browser test, and (as root) the system user the tests'
#                                       #   PostgreSQL server runs as
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
# torch first and pinned: this exact version installs a CPU build; anything else pulls CUDA (GBs).
python -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('2.13.0') else 1)" 2>/dev/null \
  || pip install -q torch==2.13.0
if [ "${1:-}" = "--dev" ]; then
  pip install -q -e ".[dev,ray]"
  # PostgreSQL refuses to run as root: the throwaway server of the tests runs as `postgres`
  if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --user-group --no-create-home --shell /usr/sbin/nologin postgres
  fi
  if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) \
        >/dev/null 2>&1 || echo "setup: could not install chromium; the browser test will be skipped" >&2
    else
      echo "setup: chromium/chromedriver absent and not root; the browser test will be skipped" >&2
    fi
  fi
else
  pip install -q -e .
fi
echo "setup: ok ($(python -c 'import torch; print("torch", torch.__version__)'))"
