# The two commands a newcomer needs: `make up` (deploy dev, or render offline) and `make test`.
PYTHON ?= .venv/bin/python
STACK ?= dev

.PHONY: up render test lint typecheck unit e2e bench clean

# Deploy the dev stack to the local Docker engine; with no Pulumi CLI or engine, render offline.
up:
	@$(PYTHON) -m tools.up

# Write what a stack declares (resources, inputs, every rendered file) to build/$(STACK)/.
render:
	@$(PYTHON) -m tools.render $(STACK) $(if $(CONFIG_FILE),--config-file $(CONFIG_FILE),)

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

typecheck:
	$(PYTHON) -m mypy .

unit:
	$(PYTHON) -m pytest -n 2 -q

test: lint typecheck unit

e2e:
	$(PYTHON) -m pytest -m e2e -q tests/e2e

bench:
	$(PYTHON) -m bench

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
