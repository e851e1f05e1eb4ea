# Sourced by scripts/setup.sh and benchmarks/setup_bambi.sh: find a Python >= 3.12 even where
# `python3` is older and pyenv's shims name versions that are not selected.
# Looks at $PYTHON, python3.14/3.13/3.12/python3 on PATH, then pyenv's installed versions.

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
