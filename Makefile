# The README's two commands: `make demo` (the main job on built-in defaults) and `make test` (the whole suite).
VENV ?= .venv
BIN := $(VENV)/bin
TMP := $(CURDIR)/.tmp

.PHONY: setup demo test lint bench clean

setup:
	@bash scripts/setup_env.sh

demo: setup
	$(BIN)/robostack quickstart

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Caches are redirected into the repo's .tmp/ so tests write nothing outside it.
test: lint
	mkdir -p $(TMP)
	ROS_LOG_DIR=$(TMP)/ros_log HF_HOME=$(TMP)/hf MPLBACKEND=Agg MPLCONFIGDIR=$(TMP)/mpl XDG_CACHE_HOME=$(TMP)/cache \
	  TMPDIR=$(TMP) $(BIN)/python -m pytest

bench: setup
	$(BIN)/python benchmarks/bench_store.py

clean:
	rm -rf $(TMP) runs
