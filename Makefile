# Two entry points a newcomer needs: `make demo` and `make test`. Both build the
# virtual environment first, from the pinned constraints, so a fresh machine needs nothing else.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade 'pip>=24'
	$(BIN)/python -m pip install -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/yolo-focal demo

test: install
	bash scripts/system-deps.sh
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

bench: install
	$(BIN)/python benchmarks/bench_losses.py
	$(BIN)/python benchmarks/bench_matcher.py --quick
	$(BIN)/python benchmarks/bench_train_step.py --img 320 --rounds 7

clean:
	rm -rf $(VENV) build dist *.egg-info
