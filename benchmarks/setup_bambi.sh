#!/usr/bin/env bash
# bambi pins formulae < 0.7 and bayeslmm needs formulae >= 0.9, so bambi gets its own venv.
set -euo pipefail
cd "$(dirname "$0")/.."
python=$(bash -c 'for p in python3.12 python3.13 /root/.pyenv/versions/3.12*/bin/python "$HOME"/.pyenv/versions/3.12*/bin/python; do command -v "$p" >/dev/null 2>&1 && { command -v "$p"; exit 0; }; done; exit 1')
"$python" -m venv .venv-bambi
.venv-bambi/bin/python -m pip install --quiet bambi
