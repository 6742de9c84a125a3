#!/usr/bin/env bash
# Lint the SAM template twice: cfn-lint (CloudFormation rules, including the SAM transform) and
# `sam validate --lint`. No AWS credentials or network are needed.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV_BIN="${VENV_BIN:-$PWD/.venv/bin}"
export PATH="$VENV_BIN:$PATH"
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
export SAM_CLI_TELEMETRY=0

echo "== cfn-lint template.yaml"
cfn-lint template.yaml
echo "== sam validate --lint"
sam validate --lint --template template.yaml
echo "template.yaml: OK"
