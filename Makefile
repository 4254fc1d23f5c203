# Two commands matter on a fresh machine: `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export NUMBA_CACHE_DIR ?= $(CURDIR)/.numba-cache

LOCK    := uv.lock
UV_REQ  := scripts/uv-requirements.txt

.PHONY: install lock test-latest demo test test-fast test-mutants test-loaded bench lint clean system-deps

install: $(STAMP)

# Installs exactly the locked tree (uv.lock: every package pinned, every file hash-checked),
# so a release elsewhere cannot change a fresh clone; then the project itself, without deps.
# uv (pinned with its hashes, scripts/uv-requirements.txt) only writes the lock out as a hashed requirements list; pip installs it.
# Re-installs only when the lock or the packaging changed: quick and idempotent otherwise.
$(STAMP): $(LOCK) $(UV_REQ) pyproject.toml setup.py
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(UV_REQ)
	$(BIN)/uv export --frozen --extra dev --no-emit-project --no-header --quiet \
		--format requirements-txt -o $(VENV)/locked-requirements.txt
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(VENV)/locked-requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# Re-resolves the whole dependency tree within pyproject.toml's ranges, for every platform
# (x86-64 and ARM64 stations alike). Commit uv.lock after `make test` passes on it.
lock: install
	$(BIN)/uv lock --upgrade --python 3.11

# The suite on the newest releases the ranges allow, in a separate virtualenv: run it
# weekly to see drift before it reaches the lock (and a fresh clone).
test-latest: system-deps
	rm -rf .venv-latest && $(PY) -m venv .venv-latest
	.venv-latest/bin/python -m pip install --quiet --upgrade -e '.[dev]'
	NUMBA_CACHE_DIR=$(CURDIR)/.numba-cache-latest .venv-latest/bin/python -m pytest

# Debian packages the tests need: Mosquitto (real broker), openssl (TLS test certificates),
# systemd-analyze (unit verification). Installed with apt-get as root, otherwise explained;
# at the versions in scripts/debian-packages.lock where the mirror still has them (Debian
# stable replaces them only with security fixes; the script warns when it must).
system-deps:
	@bash scripts/system-deps.sh

# A minute of a simulated station under the agent, then a summary; ends by itself.
demo: install
	$(BIN)/sems demo --seconds 60

# The suite in four pytest-xdist processes (most of its time is real-time simulation, not
# CPU: about 11 min on 2 cores against 35-38 serial), then the tests marked `alone` (they
# measure what other processes disturb) by themselves. `make test TEST_WORKERS=0` runs it
# serially. Every failure seen only in parallel so far was explained and fixed: two were
# the agent's (a vacant connector's decrease, a ramp read after the meter), two were lost
# cancels on Python 3.11 (the simulated charge point's stop(), the uplink's run(): the
# latter the agent's) and one the phase switch test's window (docs/testing.md, "In parallel").
# The whole simulated days (`whole_day`: a day at 360x, a simulated minute per 0.17 s) run
# two at a time after it: inside the parallel pass one of them fell short of energy in 2 of 3
# runs on 2026-12-07 (124.3 kWh of 137, the agent at full rate; never in 11 runs outside it,
# busy cores and nice 15 included). Explained and fixed since (c3fa93d: an EV's start lost
# at the meter-step window's edge; docs/testing.md); kept apart until full parallel runs
# show the days passing inside the parallel pass too.
TEST_WORKERS ?= 4
test: install system-deps
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal -m "not alone and not whole_day"
	$(BIN)/python -m pytest -n 2 -m whole_day
	$(BIN)/python -m pytest -m alone

# The whole suite with one core kept busy by a spinning process the run starts and stops
# (tests/busy_load.py): what a loaded station or CI machine does to timing-sensitive tests.
test-loaded: install system-deps
	$(BIN)/python -m pytest --busy-cores 1

# Mutation check of the safety rules ([tool.mutmut] in pyproject.toml, docs/testing.md):
# every mutant killed by the fast tests or listed as equivalent in tests/mutants/survivors.md.
# About a minute on 2 cores; not part of `make test`. Starts clean: mutmut's cache does not
# notice changed tests.
test-mutants: install
	rm -rf mutants
	$(BIN)/mutmut run --max-children 2
	$(BIN)/python scripts/mutants_check.py

bench: install
	$(BIN)/python bench/run_all.py

lint: install
	$(BIN)/ruff check agent drivers allocator hardware-sim tests bench scripts
	@# Dependency arrows (pyproject's [tool.importlinter]) and no import cycle at all.
	$(BIN)/lint-imports
	$(BIN)/python scripts/import_cycles.py
	$(BIN)/mypy agent drivers allocator
	@# mypy cannot import a folder named hardware-sim: check it through a symlink named as the package.
	mkdir -p $(VENV)/mypypath && ln -sfn $(CURDIR)/hardware-sim $(VENV)/mypypath/hardware_sim
	MYPYPATH=$(VENV)/mypypath $(BIN)/mypy -p hardware_sim

clean:
	rm -rf $(VENV) mutants .venv-latest .numba-cache .numba-cache-latest .pytest_cache .mypy_cache .ruff_cache
