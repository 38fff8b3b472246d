# fpgagen: `make demo` and `make test` are all a newcomer needs (both run `make install`).
PYTHON ?= python3.11
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.fpgagen-installed
SYSTEM  = $(VENV)/.fpgagen-system-tools
DEMO   ?= demo-out
JOBS   ?= 2

.PHONY: install demo test test-all lint bench fuzz clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (set PYTHON=...)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned to the CPU build, so nothing below pulls a CUDA build
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# Debian packages some tests use: chromium (the HTML report in a headless browser) and
# iverilog (the second simulator). Installed with apt-get where we are root; elsewhere
# those few tests skip and say so.
$(SYSTEM): | $(STAMP)
	@if command -v chromium >/dev/null 2>&1 && command -v iverilog >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing chromium and iverilog (Debian packages) for the report and simulator tests"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    chromium iverilog >/dev/null; } || echo "apt-get failed: the browser and icarus tests will skip"; \
	else echo "not root: install chromium and iverilog to run the browser and icarus tests"; fi
	touch $@

demo: install
	$(PY) examples/demo.py --out $(DEMO)

test: install $(SYSTEM)
	$(PY) -m ruff check fpgagen tests examples bench
	$(PY) -m pytest -n $(JOBS) -q --durations=25

test-all: install $(SYSTEM)
	$(PY) -m pytest -n $(JOBS) -q -m "slow or not slow"

bench: install
	$(PY) bench/run.py

# Long mutation fuzzing (hypothesis): FUZZ_EXAMPLES mutants per seed model.
FUZZ_EXAMPLES ?= 5000
fuzz: install
	FPGAGEN_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -n $(JOBS) -q tests/test_fuzz.py -k long

clean:
	rm -rf $(DEMO) .pytest_cache .hypothesis .simcache
