# The two commands of the README, plus helpers. Each installs what it needs (scripts/bootstrap.sh).
.PHONY: demo test dev bench openapi

demo:  ## the main job: local stack + demo workflow, watched live, checkpoints asked
	bash scripts/demo.sh $(ARGS)

test:  ## the whole test suite
	bash scripts/test.sh $(ARGS)

dev:  ## the local stack only (functions, Realtime, auth, S3, demo site)
	bash scripts/bootstrap.sh && .venv/bin/aef dev

bench:  ## every benchmark, printing ratios against baselines measured in the same run
	bash scripts/bootstrap.sh && bash scripts/bench.sh

openapi:  ## regenerate docs/openapi.json
	.venv/bin/python -m aef.openapi
