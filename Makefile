# Decoy Lab. `make run` and `make test` create the .venv on first use.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PRESET ?= quick
JOBS   ?= 1

.PHONY: venv run test lab kernel bench workshop clean-runs

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[test]'
	touch $@

venv: $(VENV)/.installed

## every notebook headless with papermill, preset $(PRESET) -> runs/$(PRESET)/
run: venv
	$(VENV)/bin/decoylab run --preset $(PRESET) --jobs $(JOBS)

## the test suite (unit tests + every notebook with params/tiny)
test: venv
	$(PY) -m pytest -n 2 -q

## JupyterLab on the notebooks, with the kit's environment as kernel
lab: venv
	$(VENV)/bin/jupyter lab notebooks

## register the environment as a named kernel "Python (Decoy Lab)" for a JupyterLab outside the venv
kernel: venv
	$(PY) -m ipykernel install --user --name decoylab --display-name "Python (Decoy Lab)"

## wall time and peak memory of the $(PRESET) preset, first run and fully cached re-run
bench: venv
	$(VENV)/bin/decoylab bench --preset $(PRESET) --jobs $(JOBS)

clean-runs:
	rm -rf runs
