#!/usr/bin/env bash
# bambi pins formulae < 0.7 and bayeslmm needs formulae >= 0.9, so bambi gets its own venv.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/find_python.sh
python=$(find_python)
"$python" -m venv .venv-bambi
.venv-bambi/bin/python -m pip install --quiet bambi
