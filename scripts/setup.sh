#!/usr/bin/env bash
# Creates .venv with Python 3.10 and installs sluice under constraints.txt (the tested TFX 1.16 set).
# Idempotent: a stamp holds the hash of pyproject.toml + constraints.txt; when neither changed this is a no-op.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
STAMP="$VENV/.sluice-stamp"
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [[ -f $STAMP && "$(cat "$STAMP")" == "$want" && -x $VENV/bin/sluice ]]; then
  exit 0
fi

is310() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1; }

PY=""
for cand in "${PYTHON:-}" python3.10; do   # python3.10 resolves through pyenv's shim via .python-version
  [[ -n $cand ]] && command -v "$cand" >/dev/null 2>&1 && is310 "$cand" && { PY=$cand; break; }
done
if [[ -z $PY ]] && command -v pyenv >/dev/null 2>&1; then
  cand="$(pyenv prefix 3.10 2>/dev/null || true)/bin/python3.10"
  [[ -x $cand ]] && is310 "$cand" && PY=$cand
fi
if [[ -z $PY ]]; then
  echo "sluice needs Python 3.10 (TFX 1.16 supports no other version): install it, e.g. 'pyenv install 3.10' or your OS package python3.10 with python3.10-venv, then run this again (or set PYTHON=/path/to/python3.10)." >&2
  exit 1
fi

if [[ ! -x $VENV/bin/python ]] || ! is310 "$VENV/bin/python"; then
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
fi
echo "sluice: installing the pinned TFX 1.16 stack into $VENV (first time: a few minutes)..."
start=$(date +%s)
log="$VENV/install.log"
if ! { "$VENV/bin/python" -m pip install --disable-pip-version-check --upgrade pip &&
       "$VENV/bin/python" -m pip install --disable-pip-version-check -c constraints.txt -e '.[test,serving,mobile,bench]'; } >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  echo "sluice: installing into $VENV failed (full pip output: $log)." >&2
  exit 1
fi
echo "$want" > "$STAMP"
echo "sluice: $VENV ready in $(( $(date +%s) - start )) s"
