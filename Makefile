# Decoy Lab. `make run` and `make test` create the .venv on first use.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PRESET ?= quick
JOBS   ?= 2
# JupyterLab refuses to run as root unless told; in a container (root) the kit tells it.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: venv run test lab lab-installed kernel bench rehearsal estimate gpu-check workshop lab-room clean-runs

# TORCH_INDEX: a PyTorch wheel index, e.g. https://download.pytorch.org/whl/cpu (CPU only, a far smaller venv)
# or https://download.pytorch.org/whl/cu126 (CUDA 12.6 drivers); empty: PyPI's default wheel.
TORCH_INDEX ?=

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(if $(TORCH_INDEX),$(PY) -m pip install torch torchvision --index-url $(TORCH_INDEX))
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
# JupyterLab is an extra (.[lab]): installed here on first use, so a headless or CI install stays lean.
lab-installed: venv
	@$(PY) -c "import jupyterlab" 2>/dev/null || $(PY) -m pip install -e '.[lab]'

lab: lab-installed
	$(VENV)/bin/jupyter lab notebooks $(ROOT_FLAG)

## register the environment as a named kernel "Python (Decoy Lab)" for a JupyterLab outside the venv
kernel: venv
	$(PY) -m ipykernel install --user --name decoylab --display-name "Python (Decoy Lab)"

## wall time and peak memory of the $(PRESET) preset, first run and fully cached re-run
bench: venv
	$(VENV)/bin/decoylab bench --preset $(PRESET) --jobs $(JOBS)

# The MNIST paper preset on this CPU, on Fashion-MNIST staged as MNIST (apt install dataset-fashion-mnist): hours.
rehearsal: venv
	$(VENV)/bin/decoylab bench --rehearsal --out rehearsal

# What each notebook of the paper preset would cost on this CPU, from a few timed training steps and attacked
# inputs per call (everything else at full size): minutes to an hour instead of days.
estimate: venv
	$(VENV)/bin/decoylab bench --rehearsal --estimate --out rehearsal

# On a machine with a CUDA GPU: placement, the attack benchmark against ART's GPU path, one paper notebook.
gpu-check: venv
	$(VENV)/bin/decoylab bench --gpu --out gpu-check

## workshop/: the notebooks with the $(PRESET) preset's parameters, caches pre-built (run it the day before)
workshop: venv
	$(VENV)/bin/decoylab workshop --preset $(PRESET) --jobs $(JOBS)

## JupyterLab for a room: every address of this machine, port $(PORT), one shared token (a random one unless
## TOKEN is given, printed in the room's URL), figures in seaborn's "talk" context (larger fonts for a projector).
## Plain HTTP: see the README's "Serving a room safely".
PORT  ?= 8888
TOKEN ?=
lab-room: lab-installed
	@token="$(TOKEN)"; [ -n "$$token" ] || token=$$($(PY) -c 'import secrets; print(secrets.token_hex(16))'); \
	host=$$(hostname -I 2>/dev/null | cut -d' ' -f1); \
	echo "Room URL for the participants: http://$${host:-$$(hostname)}:$(PORT)/lab?token=$$token"; \
	DECOYLAB_PLOT_CONTEXT=talk exec $(VENV)/bin/jupyter lab workshop --no-browser --ip=0.0.0.0 --port=$(PORT) \
		--ServerApp.token="$$token" $(ROOT_FLAG)

clean-runs:
	rm -rf runs
