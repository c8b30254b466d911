# The two commands a new user needs (README.md): `make run` and `make test`.
PYTHON ?= python3
PIP := $(PYTHON) -m pip

.PHONY: run test install install-test bench

install:
	$(PIP) install --quiet -e .
	@command -v pyenv >/dev/null && pyenv rehash || true

install-test:
	$(PIP) install --quiet -e '.[test]'
	@command -v pyenv >/dev/null && pyenv rehash || true
	bash scripts/install_test_deps.sh

# make run PORT=8001 CONFIG=my.toml: another port or configuration file (defaults: config.toml's)
run: install
	$(PYTHON) -m dpquery.cli serve --demo $(if $(CONFIG),--config $(CONFIG)) $(if $(PORT),--port $(PORT))

test: install-test
	$(PYTHON) -m pytest -ra

bench: install
	$(PYTHON) bench/bench_engine.py
