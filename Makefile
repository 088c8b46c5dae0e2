# The two commands: `make run` and `make test`. Each installs what is missing first.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
WHEELS ?= $(if $(PIP_FIND_LINKS),$(PIP_FIND_LINKS),/opt/wheels)
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE=1
export TRANSFORMERS_OFFLINE=1
export MLFLOW_DISABLE_TELEMETRY=true
export BENTOML_DO_NOT_TRACK=True
export ANONYMIZED_TELEMETRY=False
export GX_ANALYTICS_ENABLED=False
export TOKENIZERS_PARALLELISM=false

.PHONY: install run test test-all lint bench clean

install: $(STAMP)

# The CPU build of torch is installed first from the local wheel folder so no CUDA build is pulled.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip uv
	@if [ -d "$(WHEELS)" ]; then \
	  $(BIN)/uv pip install --python $(BIN)/python --find-links "$(WHEELS)" --compile-bytecode "torch==2.13.0"; \
	else \
	  $(BIN)/python -m pip install -q "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu; \
	fi
	$(BIN)/uv pip install --python $(BIN)/python --compile-bytecode $(if $(wildcard $(WHEELS)),--find-links "$(WHEELS)") \
	  --constraint .ci/constraints.txt -e ".[dev]"
	touch $(STAMP)

# The esi_full Kubeflow pipeline through kfp.local (each step a subprocess, as in a pod); `esi run` is the same
# flow in one process.
run: install
	$(BIN)/esi pipeline run --local --out $${ESI_RUN_OUT:-.esi/run}

test: install
	$(BIN)/python -m pytest -q

test-all: install
	$(BIN)/python -m pytest -q -m "not gpu"

lint: install
	$(BIN)/ruff check esi tests bench $(wildcard components pipelines)

bench: install
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf .esi build *.egg-info
