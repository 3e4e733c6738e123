# sluice — every target does its own set-up (.venv with Python 3.10, pinned by constraints.txt).
SHELL := /bin/bash
VENV := .venv
CONFIG ?= configs/taxi_fare.yaml
OUTPUT ?= output

.PHONY: setup run run-tips run-wine test test-unit test-e2e bench constraints clean

setup:
	@scripts/setup.sh

run: setup  ## main job: the default pipeline on the bundled data
	$(VENV)/bin/sluice run --config $(CONFIG) --output $(OUTPUT)

run-tips: setup
	$(VENV)/bin/sluice run --config configs/taxi_tips.yaml --output $(OUTPUT)

run-wine: setup  ## the multi-class example (scikit-learn's Wine data)
	$(VENV)/bin/sluice run --config configs/wine.yaml --output $(OUTPUT)

test: setup  ## the whole suite (unit, then end-to-end pipelines)
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider --durations=40 tests

test-unit: setup
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider tests/unit

test-e2e: setup
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider tests/e2e

bench: setup
	$(VENV)/bin/python benchmarks/run_all.py

constraints: setup  ## regenerate constraints.txt from the working .venv (after changing a pin)
	@{ head -2 constraints.txt; $(VENV)/bin/python -m pip freeze --exclude-editable | grep -vi '^sluice'; } > constraints.new && mv constraints.new constraints.txt

clean:
	rm -rf $(OUTPUT) .pytest_cache
