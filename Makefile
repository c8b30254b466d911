# The two commands a new user needs (README.md): `make run` and `make test`.
PYTHON ?= python3
PIP := $(PYTHON) -m pip

.PHONY: run test install install-test bench

install:
	$(PIP) install --quiet -e .

install-test:
	$(PIP) install --quiet -e '.[test]'
	bash bench/install_browser.sh

run: install
	dpquery serve

test: install-test
	$(PYTHON) -m pytest -ra

bench: install
	$(PYTHON) bench/bench_engine.py
