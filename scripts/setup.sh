#!/usr/bin/env bash
# Create .venv with Python >= 3.12 and install bayeslmm with its test extra.
# The interpreter is found by scripts/find_python.sh ($PYTHON overrides).
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/find_python.sh

stamp=".venv/.installed-$(cat pyproject.toml | cksum | cut -d' ' -f1)"
if [ -x .venv/bin/python ] && is_new_enough .venv/bin/python && [ -f "$stamp" ]; then
  exit 0  # already set up for this pyproject.toml
fi
python=$(find_python)
echo "setting up .venv with $("$python" --version) ($python)" >&2
"$python" -m venv .venv
# pip's and the build backend's chatter goes to a log, shown only if the install fails
if ! { .venv/bin/python -m pip install --upgrade pip && .venv/bin/python -m pip install -e ".[test,docs]"; } \
     > .venv/install.log 2>&1; then
  cat .venv/install.log >&2
  echo "error: installing bayeslmm into .venv failed (log above, also in .venv/install.log)" >&2
  exit 1
fi
# numba's kernels compiled once into their disk cache (~45 s), not in the first fit
.venv/bin/python scripts/warm_numba_cache.py
rm -f .venv/.installed-*
touch "$stamp"
