# Everyday commands. `make install` sets up .venv; every other target uses it.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
DEMO   ?= out/demo

.PHONY: install demo test lint bench model clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# nnU-Net support without its declared dependencies (they would replace the pinned torch): the
# `nnunet` extra of pyproject.toml, installed with --no-deps.
NNUNET_PACKAGES = $(shell $(PY) -c 'import tomllib; print(" ".join(repr(p) for p in \
	tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["nnunet"]))')

install: $(PY)
	$(PY) -m pip install --quiet -e '.[engines,test]'
	$(PY) -m pip install --quiet --no-deps $(NNUNET_PACKAGES)

# Generate a small example archive and sweep it: the quickest look at what screen does.
demo: install
	rm -rf $(DEMO)
	$(VENV)/bin/screen synth $(DEMO) --cases 6 --matrix 128
	$(VENV)/bin/screen scan $(DEMO)/archive --out $(DEMO)/worklist.parquet

test:
	$(PY) -m pytest -q

lint:
	$(VENV)/bin/ruff check screen tests bench

bench:
	$(PY) -m bench.run

# Retrain the bundled model on phantoms (CPU): 8000 segmenter steps on 160 phantoms, 3000 more
# on 160 others, 3000 more on 480 others (chosen over the second stage on 200 validation
# phantoms); then measure it on two sets of held-out phantoms into its card.
model:
	nice -n 10 $(PY) -m screen.training.train --out engines/pancreas-phantom-v1 --seed 0 \
		--cache $${TMPDIR:-/tmp}/screen-train-cache
	nice -n 10 $(PY) -m screen.training.train --out engines/pancreas-phantom-v1 --seed 1 \
		--locate-from engines/pancreas-phantom-v1 --segment-from engines/pancreas-phantom-v1 \
		--segment-steps 3000 --cache $${TMPDIR:-/tmp}/screen-train-cache
	nice -n 10 $(PY) -m screen.training.train --out engines/pancreas-phantom-v1 --seed 4 \
		--train-cases 480 --val-cases 200 --locate-from engines/pancreas-phantom-v1 \
		--segment-from engines/pancreas-phantom-v1 --segment-steps 3000
	nice -n 10 $(PY) -m screen.training.evaluate_package pancreas-phantom-v1 --cases 200 \
		--seed 8 --seed 10 --write

clean:
	rm -rf out .pytest_cache
