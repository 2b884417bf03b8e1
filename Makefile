# The two commands a newcomer needs: `make up` (deploy dev, or render offline) and `make test`.
PYTHON ?= .venv/bin/python
STACK ?= dev
VENV_STAMP = .venv/.installed

.PHONY: up render diff test setup lint typecheck unit e2e e2e-nodes bench clean

# A virtualenv with the pinned dependencies, rebuilt when the requirement files change.
$(VENV_STAMP): requirements.txt requirements-dev.txt
	@test -x $(PYTHON) || python3 -m venv .venv
	@$(PYTHON) -m pip install -q --upgrade pip
	@$(PYTHON) -m pip install -q -r requirements-dev.txt
	@touch $@

# Deploy the dev stack to the local Docker engine; with no Pulumi CLI or engine, render offline.
up: $(VENV_STAMP)
	@$(PYTHON) -m tools.up

# Write what a stack declares (resources, inputs, every rendered file) to build/$(STACK)/.
render: $(VENV_STAMP)
	@$(PYTHON) -m tools.render $(STACK) $(if $(CONFIG_FILE),--config-file $(CONFIG_FILE),)

# The plan between the stack at BASE (a git revision) and the working tree, without credentials.
diff: $(VENV_STAMP)
	@test -n "$(BASE)" || { echo "usage: make diff BASE=<git revision> [STACK=prod] [CONFIG_FILE=...]" >&2; exit 2; }
	@$(PYTHON) -m tools.diff --base $(BASE) $(STACK) $(if $(CONFIG_FILE),--config-file $(CONFIG_FILE),)

# The tools the tests drive (tools/prereqs.py): installed where this user can (root or passwordless
# sudo; apt-get, a newer Debian release's package unpacked, npm ci), otherwise named, and their
# tests skipped. System python3: runs before .venv.
setup:
	@python3 -m tools.prereqs install

lint: $(VENV_STAMP)
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

typecheck: $(VENV_STAMP)
	$(PYTHON) -m mypy .

unit: $(VENV_STAMP)
	$(PYTHON) -m pytest -n 2 -q

test: setup lint typecheck unit

e2e: $(VENV_STAMP)
	$(PYTHON) -m pytest -m "e2e and not nodes" -q tests/e2e

# Several swarm nodes as Docker-in-Docker containers: the cluster scripts against real engines.
e2e-nodes: $(VENV_STAMP)
	$(PYTHON) -m pytest -m "e2e and nodes" -q tests/e2e

bench: setup $(VENV_STAMP)
	$(PYTHON) -m bench

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
