# flywheel: `make run` runs the taxi pipeline end to end; `make test` runs the whole suite (what CI runs);
# `make test-unit` the quick lane: no pipeline run, no training, no server process (tests marked e2e or slow left out).
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.flywheel-installed

# A Python 3.10 that really runs (a pyenv shim may exist and still fail).
define find_python
for c in "$$PYTHON" python3.10 "$$(pyenv root 2>/dev/null)/versions/3.10.13/bin/python3.10" \
         $$(ls -d "$$(pyenv root 2>/dev/null)"/versions/3.10.*/bin/python3.10 2>/dev/null) \
         /usr/bin/python3.10 /usr/local/bin/python3.10; do \
  [ -n "$$c" ] && "$$c" -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1 && { echo "$$c"; exit 0; }; \
done; exit 1
endef

.PHONY: venv run test test-unit bench bench-monitor bench-predict bench-serving bench-rollout bench-ingest compile lint clean

$(STAMP): setup.py constraints.txt
	@py="$$( $(find_python) )" || { echo "flywheel needs Python 3.10 (tfx 1.16 supports Python < 3.11). Install it (e.g. 'pyenv install 3.10.13') or set PYTHON=/path/to/python3.10." >&2; exit 1; }; \
	echo "Using $$py"; \
	[ -x $(BIN)/python ] || "$$py" -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade 'pip==24.2'
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,notebooks]'
	@touch $(STAMP)

venv: $(STAMP)

run: venv
	$(BIN)/flywheel run taxi
	@echo "flywheel: the flywheel command is in $(VENV)/bin, not on your PATH: 'source $(VENV)/bin/activate' to type it as the README does"

test: venv
	$(BIN)/python -m pytest -n 2 --dist loadfile tests

test-unit: venv
	$(BIN)/python -m pytest -n 2 --dist loadfile tests -m "not e2e and not slow"

bench: venv
	$(BIN)/python benchmarks/pipeline_vs_template.py

bench-monitor: venv
	$(BIN)/python benchmarks/monitor_vs_tfdv.py

bench-predict: venv
	$(BIN)/python benchmarks/predict_vs_bulkinferrer.py

bench-serving: venv
	$(BIN)/python benchmarks/serving.py

bench-rollout: venv
	$(BIN)/python benchmarks/rollout.py

bench-ingest: venv
	$(BIN)/python benchmarks/ingest.py

# The image the committed spec names: kubeflow/README.md's `docker build -t flywheel-taxi:local`; `make compile
# IMAGE=<registry>/flywheel-taxi:0.1.0` for the image you pushed.
IMAGE ?= flywheel-taxi:local
compile: venv
	$(BIN)/flywheel compile taxi --image $(IMAGE) --output kubeflow/taxi_pipeline.yaml

lint: venv
	$(BIN)/ruff check flywheel components pipelines schemas tests benchmarks notebooks

clean:
	rm -rf flywheel_output bench_output tour release
