# One entry point for every check. `make demo` runs the main job, `make test` every test.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

PYTHON ?= python3
VENV ?= $(CURDIR)/.venv
BIN := $(VENV)/bin
BUILD := $(CURDIR)/.build
# ansible-test needs the collection at ansible_collections/<namespace>/<name>.
COLLECTION := $(BUILD)/ansible_collections/stratum/storage
VERSION := $(shell sed -n 's/^version: *//p' galaxy.yml)
PYVER = $(shell $(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')

.PHONY: demo test test-fast system-deps venv venv-test build install collection-copy sanity units integration lint changelog-lint docs-check clean

demo: system-deps venv install
	ANSIBLE_COLLECTIONS_PATH=$(BUILD)/collections $(BIN)/ansible-playbook -i localhost, playbooks/demo.yml

test: test-fast

test-fast: system-deps venv-test install docs-check sanity units integration lint changelog-lint
	@echo "All checks passed."

system-deps:
	@PYTHON=$(PYTHON) scripts/ensure-system-packages

$(BIN)/.controller: requirements/controller.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements/controller.txt
	touch $@

$(BIN)/.test: $(BIN)/.controller requirements/test.txt
	$(BIN)/python -m pip install -q -r requirements/test.txt
	touch $@

venv: $(BIN)/.controller
venv-test: $(BIN)/.test

build: venv
	rm -rf $(BUILD)/dist && mkdir -p $(BUILD)/dist
	$(BIN)/ansible-galaxy collection build --force --output-path $(BUILD)/dist .

install: build
	rm -rf $(BUILD)/collections
	$(BIN)/ansible-galaxy collection install --force -p $(BUILD)/collections $(BUILD)/dist/stratum-storage-$(VERSION).tar.gz
	ANSIBLE_COLLECTIONS_PATH=$(BUILD)/collections $(BIN)/ansible-doc --json stratum.storage.volume stratum.storage.snapshot stratum.storage.volume_info stratum.storage.snapshot_info > $(BUILD)/doc.json

collection-copy:
	rm -rf $(COLLECTION) && mkdir -p $(COLLECTION)
	git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t $(COLLECTION)

docs-check: install
	$(BIN)/python tests/utils/check_docs.py $(BUILD)/doc.json

sanity: venv-test collection-copy
	cd $(COLLECTION) && $(BIN)/ansible-test sanity --python $(PYVER) --requirements --color no

units: venv-test collection-copy
	cd $(COLLECTION) && $(BIN)/ansible-test units --python $(PYVER) --requirements --color no

integration: venv-test collection-copy
	cd $(COLLECTION) && $(BIN)/ansible-test integration --python $(PYVER) --local --color no

lint: venv-test install
	ANSIBLE_COLLECTIONS_PATH=$(BUILD)/collections $(BIN)/ansible-lint playbooks/

changelog-lint: venv-test
	$(BIN)/antsibull-changelog lint

clean:
	rm -rf $(BUILD) $(VENV)
