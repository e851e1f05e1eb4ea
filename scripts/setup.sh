#!/usr/bin/env bash
# Create .venv with Python >= 3.12 and install bayeslmm with its test extra.
# Finds the interpreter even where `python3` is older: $PYTHON, python3.13/3.12 on PATH, or pyenv's versions.
set -euo pipefail
cd "$(dirname "$0")/.."

is_new_enough() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; }

find_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.14 python3.13 python3.12 python3 \
                   "$HOME"/.pyenv/versions/3.1[2-9]*/bin/python /root/.pyenv/versions/3.1[2-9]*/bin/python; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 && is_new_enough "$candidate"; then
      command -v "$candidate"
      return 0
    fi
  done
  echo "error: no Python >= 3.12 found; install one or set PYTHON=/path/to/python3.12" >&2
  return 1
}

stamp=".venv/.installed-$(cat pyproject.toml | cksum | cut -d' ' -f1)"
if [ -x .venv/bin/python ] && is_new_enough .venv/bin/python && [ -f "$stamp" ]; then
  exit 0  # already set up for this pyproject.toml
fi
python=$(find_python)
echo "setting up .venv with $("$python" --version) ($python)" >&2
"$python" -m venv .venv
# pip's and the build backend's chatter goes to a log, shown only if the install fails
if ! { .venv/bin/python -m pip install --upgrade pip && .venv/bin/python -m pip install -e ".[test]"; } \
     > .venv/install.log 2>&1; then
  cat .venv/install.log >&2
  echo "error: installing bayeslmm into .venv failed (log above, also in .venv/install.log)" >&2
  exit 1
fi
rm -f .venv/.installed-*
touch "$stamp"
