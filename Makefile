# The two commands of the README: `make demo` and `make test`. Everything they need is
# installed here, into the project folder: nothing by hand.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
AZURITE = tools/azurite/node_modules/.bin/azurite-blob

CHROMIUM = /usr/bin/chromium

.PHONY: install demo test lint typecheck unit clean browser

install: $(STAMP) $(AZURITE)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	# Compiled once here: an editable install has no .pyc, and without them every
	# command compiles the package again (~0.25 s) where PYTHONDONTWRITEBYTECODE is set.
	$(BIN)/python -m compileall -q migrate providers
	touch $@

$(AZURITE): tools/azurite/package.json
	cd tools/azurite && npm install --no-audit --no-fund --silent
	touch $@

# Chromium renders the HTML report in one test (Debian's package; root only). Best effort:
# without it that test is skipped and says so.
browser:
	@test -x $(CHROMIUM) || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
	  >/dev/null; } || echo "chromium not installed: the HTML report rendering test will skip"

demo: install
	$(BIN)/migrate demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

test: install browser lint typecheck
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) tools/azurite/node_modules .demo .pytest_cache .mypy_cache .ruff_cache

# `make bench`: migrate against rclone on local SeaweedFS/Azurite, same data, same run
# (about 15 minutes). BENCH_ARGS=--quick for a small run; see `python -m bench.run --help`.
.PHONY: bench
bench: install
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench.run $(BENCH_ARGS)
