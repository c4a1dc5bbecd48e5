# kglb-trio. `make demo` runs the demo, `make test` runs every test (unit, then
# kernel tests inside a QEMU VM with ip_vs). Both build .venv first.
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: all venv test unit kernel proto proto-check demo bench clean

all: test

$(STAMP): pyproject.toml requirements.lock
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -c requirements.lock -e '.[test,dev]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP) proto-check unit kernel

unit: $(STAMP)
	bash tools/debian-deps.sh
	$(VPY) -m pytest -q tests --ignore=tests/kernel

# Kernel tests run inside a VM whose kernel has ip_vs (tools/ipvs-vm). Outside
# CI they are skipped, with a visible message, when the VM cannot start.
kernel: $(STAMP)
	bash tools/run-kernel-tests.sh

proto: $(STAMP)
	bash tools/gen-proto.sh

proto-check: $(STAMP)
	bash tools/gen-proto.sh --check

demo: $(STAMP)
	$(VPY) -m actors.demo

bench: $(STAMP)
	$(VPY) -m benchmarks

clean:
	rm -rf $(VENV) build *.egg-info
