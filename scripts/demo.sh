#!/usr/bin/env bash
# The README's main job: see AEF work on this machine, with no Docker and no cloud account.
# Installs what is missing (scripts/bootstrap.sh), starts the local stack, transforms the demo
# workflow, runs it in Chromium against the local demo site, shows it live, asks at each
# checkpoint, and prints a summary. `make demo ARGS=--yes` approves everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/aef demo "$@"
