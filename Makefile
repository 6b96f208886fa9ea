# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST

.PHONY: venv demo test lint params-doc clean

venv: $(STAMP)

$(STAMP): setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[ros,tools,fleet,test]'
	$(PY) -m pip install -q -c constraints.txt --no-deps mmengine mmcv-lite mmsegmentation
	touch $@

demo: $(STAMP)
	$(VENV)/bin/ood-perception demo --output demo_out

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

# The parameter table (docs/parameters.md) and config/ood_perception.yaml from PARAMETERS.
params-doc: $(STAMP)
	$(VENV)/bin/ood-perception params-doc --write

lint: $(STAMP)
	$(VENV)/bin/ruff check ood_perception test launch benchmarks

clean:
	rm -rf $(VENV) demo_out build install log *.egg-info
