#!/usr/bin/env bash
# `sam build` without Docker. The python3.12 workflow needs a python3.12 on PATH (pyenv's is
# used when present); the core layer is built by layer/Makefile, which downloads manylinux
# wheels for the Lambda architecture with pip. Output goes to .aws-sam/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV_BIN="${VENV_BIN:-$PWD/.venv/bin}"
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
export SAM_CLI_TELEMETRY=0

py312_bin=""
if [ -n "${PYENV_ROOT:-}${HOME:-}" ]; then
  for dir in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin; do
    if [ -x "$dir/python3.12" ]; then py312_bin="$dir"; fi
  done
fi
if [ -n "$py312_bin" ]; then
  export PATH="$py312_bin:$VENV_BIN:$PATH"
elif command -v python3.12 >/dev/null 2>&1; then
  export PATH="$VENV_BIN:$PATH"
else
  echo "sam-build: no python3.12 found (looked in ${PYENV_ROOT:-$HOME/.pyenv}/versions/3.12*/bin and PATH)." >&2
  echo "sam-build: the Lambda runtime is python3.12 and sam build (without Docker) needs it: install it, e.g. 'pyenv install 3.12'." >&2
  exit 2
fi
command -v make >/dev/null 2>&1 || { echo "sam-build: 'make' is required to build the core layer" >&2; exit 2; }
echo "sam-build: using $(command -v python3.12) ($(python3.12 --version))"

for fn in transform execute checkpoint stop logs sweeper; do
  if [ ! -f "functions/$fn/app.py" ]; then
    echo "sam-build: functions/$fn/app.py is missing (template.yaml points its handler at app.handler)" >&2
    exit 1
  fi
done

sam build --template template.yaml --build-dir .aws-sam/build "$@"

layer=.aws-sam/build/CoreLayer/python
for required in aef/__init__.py aef/http.py aef/auth.py fastapi mangum pydantic_core psycopg psycopg_binary jwt cryptography; do
  if [ ! -e "$layer/$required" ]; then
    echo "sam-build: the built layer lacks $required" >&2
    exit 1
  fi
done
for fn in Transform Execute Checkpoint Stop Logs Sweeper; do
  [ -f ".aws-sam/build/${fn}Function/app.py" ] || { echo "sam-build: ${fn}Function has no app.py" >&2; exit 1; }
done
echo "sam-build: OK ($(du -sh "$layer" | cut -f1) layer)"
