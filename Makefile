# rewardlab: `make run` sets up and runs the quickstart experiment; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export OMP_NUM_THREADS := 1
export MUJOCO_GL := egl

.PHONY: setup run test lint test-all bench bench-preference clean browser-deps

setup: $(VENV)/.installed

# torch==2.13.0 first: an unpinned torch (or a package asking for a newer one) pulls a multi-GB CUDA
# build. gymnasium[mujoco] and metaworld resolve in one pip call (metaworld pins mujoco==3.3.0). torch is
# named again beside the extras so that mani-skill (the maniskill extra, ~200 MB with its assets) keeps it.
$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev,ray,review,export,maniskill]" torch==2.13.0
	$(PY) -c "import mujoco, metaworld, stable_baselines3, torch, mani_skill; print('rewardlab env ready: torch', torch.__version__, 'mujoco', mujoco.__version__, 'mani_skill', mani_skill.__version__)"
	touch $@

run: setup
	$(VENV)/bin/rewardlab run experiments/quickstart.yaml

# lint and types first (seconds), then the suite; CI runs exactly this
test: setup lint browser-deps
	$(PY) -m pytest -q -p no:cacheprovider

# the review page's browser test drives the system's Chromium; rollout videos render with OSMesa (no GPU).
# Installed from Debian's packages when missing and we are root (CI); otherwise that test says what is missing.
browser-deps:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null && ldconfig -p | grep -q libOSMesa; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	  chromium chromium-driver libosmesa6 >/dev/null; \
	else echo "not root: install chromium, chromium-driver and libosmesa6 for the review page's browser test"; fi

lint: setup
	$(VENV)/bin/ruff check rewardlab tests benchmarks envs
	$(VENV)/bin/mypy

test-all: setup
	$(PY) -m pytest -q -p no:cacheprovider -m ""

bench: setup
	$(PY) -m benchmarks.run --out benchmarks/results.json
	$(PY) -m benchmarks.moe --out benchmarks/results_moe.json
	$(PY) -m benchmarks.maniskill --out benchmarks/results_maniskill.json

# does the pre-training preference check predict trained success, at what cost? 27 candidates on 3 MetaWorld
# tasks, SAC 6k steps each (about 2 h on 2 free cores; see benchmarks/preference_spearman.py)
bench-preference: setup
	$(PY) -m benchmarks.preference_spearman --out benchmarks/results_preference.json

clean:
	rm -rf $(VENV) runs .pytest_cache
