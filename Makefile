# trek10.ec2ssm — development entry points. On a fresh machine two commands do all the set-up:
#   make demo   the main job: a playbook against private instances on the local AWS sandbox
#   make test   everything CI runs (.ci/run calls exactly this)
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

ROOT := $(CURDIR)
# Main line: ansible-core 2.19 on Python 3.11 (unit, e2e, demo); second line: 2.21 on Python 3.12.
V219 := $(ROOT)/.venv/core219
V221 := $(ROOT)/.venv/core221
PY := $(V219)/bin/python
COLLECTIONS := $(V219)/collections
RUN := env PYTHONPATH=$(COLLECTIONS) ANSIBLE_COLLECTIONS_PATH=$(COLLECTIONS)
RUN221 := env PYTHONPATH=$(V221)/collections ANSIBLE_COLLECTIONS_PATH=$(V221)/collections
PYTEST := tools/pytest.sh
SANDBOX := $(RUN) $(PY) -m ansible_collections.trek10.ec2ssm.tests.sandbox
SANDBOX_INSTANCES ?= 3
SANDBOX_STATE ?= $(ROOT)/.sandbox

.PHONY: help demo test system-deps venvs lint typecheck unit packaging e2e e2e-221 sanity units sandbox sandbox-down bench bench-smoke build clean

help:
	@echo "make demo          run the demo playbook against private instances on the local sandbox"
	@echo "make test          everything CI runs: lint, types, unit, sandbox e2e, bench smoke, ansible-test sanity+units on 2.19 and 2.21"
	@echo "make sandbox       start the local AWS sandbox (SANDBOX_INSTANCES=$(SANDBOX_INSTANCES)); source .sandbox/env.sh to use it"
	@echo "make sandbox-down  stop the sandbox and remove its namespaces"
	@echo "make bench         benchmarks -> docs/performance.md (BENCH_ARGS=\"--only warm,cold\" to rerun some)"
	@echo "make build         build the collection tarball and install it into a scratch path"

system-deps:
	@tools/system-deps.sh

venvs: $(V219)/.stamp $(V221)/.stamp

$(V219)/.stamp: requirements.txt tests/requirements.txt tools/mkvenv.sh
	@tools/mkvenv.sh core219 3.11 'ansible-core>=2.19,<2.20' 12.3.0

$(V221)/.stamp: requirements.txt tests/requirements.txt tools/mkvenv.sh
	@tools/mkvenv.sh core221 3.12 'ansible-core>=2.21,<2.22' 14.5.0

demo: system-deps venvs
	@$(RUN) PY=$(PY) tools/demo.sh

test: system-deps venvs lint typecheck unit packaging e2e bench-smoke e2e-221 sanity units
	@echo ">>> make test: all passed"

lint: venvs
	$(V219)/bin/ruff check .
	$(V219)/bin/ruff format --check .

typecheck: venvs
	cd $(ROOT) && $(RUN) $(V219)/bin/mypy plugins/plugin_utils

unit: venvs
	$(RUN) $(PYTEST) $(PY) tests/unit

# The Galaxy tarball and the AWX execution-environment definition, built with the real tools.
packaging: venvs
	$(RUN) $(PYTEST) $(PY) tests/packaging

e2e: system-deps venvs
	$(RUN) $(PYTEST) $(PY) tests/sandbox tests/e2e

# End to end on the second supported core too: a smoke subset (marked e2e_smoke).
e2e-221: system-deps venvs
	$(RUN221) $(PYTEST) $(V221)/bin/python -m e2e_smoke tests/e2e

sanity: venvs
	tools/ansible-test.sh core219 3.11 sanity
	tools/ansible-test.sh core221 3.12 sanity

units: venvs
	tools/ansible-test.sh core219 3.11 units
	tools/ansible-test.sh core221 3.12 units

sandbox: system-deps venvs
	$(SANDBOX) up --instances $(SANDBOX_INSTANCES) --state-dir $(SANDBOX_STATE)
	@echo ">>> sandbox up: source $(SANDBOX_STATE)/env.sh"

sandbox-down: venvs
	$(SANDBOX) down --state-dir $(SANDBOX_STATE)

# Every scenario against its baseline (root; about 40 minutes) -> bench/results/, docs/performance.md.
bench: system-deps venvs
	@$(RUN) PY=$(PY) tools/bench.sh $(BENCH_ARGS)

# CI: every scenario once at small sizes and the report rendering, into a scratch directory
# (never docs/); fails if any scenario fails. Not a measurement.
bench-smoke: system-deps venvs
	@out=$$(mktemp -d /tmp/ec2ssm-bench-smoke-XXXXXX); trap 'rm -rf "$$out"' EXIT; \
	$(RUN) PY=$(PY) tools/bench.sh --smoke --output-dir "$$out"

build: venvs
	rm -rf .build/dist && mkdir -p .build/dist
	$(V219)/bin/ansible-galaxy collection build --output-path .build/dist .
	$(V219)/bin/ansible-galaxy collection install --offline --no-deps -p .build/dist/installed .build/dist/trek10-ec2ssm-*.tar.gz
	@tar -tzf .build/dist/trek10-ec2ssm-*.tar.gz | sed 's/^/    /'

clean:
	rm -rf .build .venv .cache tests/output
