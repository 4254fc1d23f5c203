# Two commands matter on a fresh machine: `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export NUMBA_CACHE_DIR ?= $(CURDIR)/.numba-cache

.PHONY: install demo test test-fast bench lint clean system-deps

install: $(STAMP)

# Re-install only when the packaging changed: quick and idempotent otherwise.
$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# Debian packages the tests need: Mosquitto (real broker), openssl (TLS test certificates),
# systemd-analyze (unit verification). Installed with apt-get as root, otherwise explained.
system-deps:
	@bash scripts/system-deps.sh

# A minute of a simulated station under the agent, then a summary; ends by itself.
demo: install
	$(BIN)/sems demo --seconds 60

test: install system-deps
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python bench/run_all.py

lint: install
	$(BIN)/ruff check agent drivers allocator hardware-sim tests bench
	$(BIN)/mypy agent drivers allocator
	@# mypy cannot import a folder named hardware-sim: check it through a symlink named as the package.
	mkdir -p $(VENV)/mypypath && ln -sfn $(CURDIR)/hardware-sim $(VENV)/mypypath/hardware_sim
	MYPYPATH=$(VENV)/mypypath $(BIN)/mypy -p hardware_sim

clean:
	rm -rf $(VENV) .numba-cache .pytest_cache .mypy_cache .ruff_cache
