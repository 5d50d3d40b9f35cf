# The two commands a newcomer needs: `make run` and `make test`. Both set everything up first,
# idempotently (Debian packages only when missing, the venv only when the lock changed).
SHELL := /bin/bash
PY := .venv/bin/python
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: run test setup system venv bytecode bench lint clean

run: setup
	$(PY) -m workstation gui

test: setup
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest tests -q -p no:cacheprovider

bench: setup
	$(PY) bench/run_all.py

lint: setup
	.venv/bin/lint-imports

setup: system venv bytecode

system:
	@bash packaging/bootstrap.sh system

venv:
	@bash packaging/bootstrap.sh venv

bytecode: venv
	@bash packaging/bootstrap.sh bytecode

clean:
	rm -rf .venv
