#!/usr/bin/env bash
# Prepare a fresh clone: a virtualenv with the pinned toolchain, and a collections tree in
# build/collections where confidential.gpu is this checkout. Idempotent; safe to re-run.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(cat requirements.txt test-requirements.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing the pinned toolchain into .venv" >&2
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r test-requirements.txt
  echo "$want" > "$stamp"
fi
mkdir -p build/collections/ansible_collections/confidential
ln -sfn "$root" build/collections/ansible_collections/confidential/gpu
