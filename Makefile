# One entry point for every check. `make demo` runs the main job, `make test` every test.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

PYTHON ?= python3
VENV ?= $(CURDIR)/.venv
BIN := $(VENV)/bin
BUILD := $(CURDIR)/.build
# ansible-test needs the collection at ansible_collections/<namespace>/<name>, outside
# this git checkout (inside it, ansible-test would list the checkout's files instead).
TESTROOT := $(or $(TMPDIR),/tmp)/stratum-storage-$(shell printf %s '$(CURDIR)' | md5sum | cut -c1-10)
COLLECTION := $(TESTROOT)/ansible_collections/stratum/storage
VERSION := $(shell sed -n 's/^version: *//p' galaxy.yml)
PYVER = $(shell $(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')

.PHONY: demo test test-fast harness test-hosts bench-hosts bench-replica testhost-record testhost-build testhost-up testhost-down system-deps system-deps-test venv venv-test build install ansible-test-cache collection-copy sanity units integration bench lint changelog-lint docs-check clean

demo: system-deps venv install
	ANSIBLE_COLLECTIONS_PATH=$(BUILD)/collections $(BIN)/ansible-playbook -i localhost, playbooks/demo.yml

# The stages one by one, with a table of wall times at the end (also on failure).
test:
	scripts/run-tests

test-fast: system-deps-test venv-test install docs-check sanity units integration harness py-compat bench lint changelog-lint ee runner
	@echo "All checks that need no test host passed."

# Test hosts (tests/testhost/): Debian VMs under QEMU with real LVM, ZFS and NFS.
HOSTS ?= 1
TESTHOST := python3 tests/testhost/testhost.py

testhost-build:
	$(TESTHOST) build

testhost-up:
	$(TESTHOST) up --hosts $(HOSTS)

testhost-down:
	$(TESTHOST) down

# Records real `lvs` and `zfs list` output for the canned unit tests (hosts must be up).
testhost-record: venv-test install
	fields=$$($(BIN)/python tests/utils/listing_columns.py); \
	ANSIBLE_COLLECTIONS_PATH=$(BUILD)/collections $(BIN)/ansible-playbook -i .testhost/inventory.yml \
	  tests/testhost/record_listings.yml -e "$$fields"

test-hosts: venv-test install
	BIN=$(BIN) COLLECTIONS=$(BUILD)/collections tests/testhost/stage.sh

# Benchmarks on one test host against community.general and the bare CLI (bench/run.py,
# docs/testhosts.md); not part of `make test`. BENCH_SIZES: volumes per P3 play;
# BENCH_ROUNDS, BENCH_P2_ROUNDS: runs of each P1 and P2 task; BENCH_CASES: which of P1,P2,P3,P4 run;
# BENCH_BACKENDS: lvm and/or zfs for P2 and P3; BENCH_CONTENDERS: P3's plays (ours,cli[,community]).
BENCH_VENV ?= $(CURDIR)/.venv-bench
BENCH_SIZES ?= 2,4,8
BENCH_ROUNDS ?= 5
BENCH_P2_ROUNDS ?= 3
BENCH_CASES ?= P1,P2,P3,P4
BENCH_BACKENDS ?= lvm,zfs
BENCH_CONTENDERS ?= ours,cli,community

$(BENCH_VENV)/bin/.bench: requirements/bench.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install -q -r requirements/bench.txt
	touch $@

bench-hosts: system-deps install $(BENCH_VENV)/bin/.bench
	$(BENCH_VENV)/bin/python bench/run.py --collections $(BUILD)/collections --out $(BUILD)/bench-hosts.json \
	  --sizes $(BENCH_SIZES) --rounds $(BENCH_ROUNDS) --p2-rounds $(BENCH_P2_ROUNDS) --cases $(BENCH_CASES) \
	  --backends $(BENCH_BACKENDS) --contenders $(BENCH_CONTENDERS)

# Replication from testhost1 to testhost2 against a hand `zfs send -i | ssh zfs recv` and
# syncoid, and the bytes of LVM thin and qcow2 replicas (bench/replica.py, docs/testhosts.md);
# not part of `make test`. BENCH_REPLICA_ROUNDS: incrementals of each contender and backend;
# BENCH_REPLICA_LARGE_MIB: the zvol that the large rounds rewrite whole (0: none).
BENCH_REPLICA_ROUNDS ?= 3
BENCH_REPLICA_LARGE_MIB ?= 160

bench-replica: system-deps install $(BENCH_VENV)/bin/.bench
	$(BENCH_VENV)/bin/python bench/replica.py --collections $(BUILD)/collections --out $(BUILD)/bench-replica.json \
	  --rounds $(BENCH_REPLICA_ROUNDS) --large-mib $(BENCH_REPLICA_LARGE_MIB)

system-deps:
	@PYTHON=$(PYTHON) scripts/ensure-system-packages

system-deps-test:
	@PYTHON=$(PYTHON) scripts/ensure-system-packages --tests

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
	ANSIBLE_COLLECTIONS_PATH=$(BUILD)/collections $(BIN)/ansible-doc --json $(patsubst plugins/modules/%.py,stratum.storage.%,$(sort $(wildcard plugins/modules/[a-z]*.py))) > $(BUILD)/doc.json

# ansible-test bootstraps pip into its virtual environments with a script it downloads
# from a host outside the package registries; give it ours (see tests/utils/pip_bootstrap.py).
ansible-test-cache: venv-test
	@version=$$($(BIN)/python -c 'import os, re, ansible_test; p = os.path.join(os.path.dirname(ansible_test.__file__), "_internal", "python_requirements.py"); print(re.search(r"pip=.([0-9.]+).", open(p).read()).group(1))'); \
	cache="$(HOME)/.ansible/test/cache/get_pip_$${version//./_}.py"; \
	if [ ! -f "$$cache" ]; then mkdir -p "$$(dirname "$$cache")"; cp tests/utils/pip_bootstrap.py "$$cache"; echo "Installed pip bootstrap for ansible-test at $$cache"; fi

collection-copy:
	rm -rf $(COLLECTION) && mkdir -p $(COLLECTION)
	git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t $(COLLECTION)

docs-check: install
	$(BIN)/python tests/utils/check_docs.py $(BUILD)/doc.json

sanity: system-deps-test venv-test ansible-test-cache collection-copy
	cd $(COLLECTION) && $(BIN)/ansible-test sanity --python $(PYVER) --requirements --color no

units: venv-test ansible-test-cache collection-copy
	cd $(COLLECTION) && $(BIN)/ansible-test units --python $(PYVER) --requirements --color no

integration: venv-test ansible-test-cache collection-copy
	cd $(COLLECTION) && $(BIN)/ansible-test integration --python $(PYVER) --local --color no

# The test-host harness itself (tests/testhost/testhost.py), with a fake QEMU: no guest boots.
harness: venv-test
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/testhost/test_testhost.py

# Code that runs on managed hosts must run on Python 3.8 (README): vermin fails on anything
# that needs a newer Python. Three findings need none: hashlib.md5(usedforsecurity=...) is tried
# and falls back on TypeError (_nfs.py), vermin takes float.is_integer (_sizes.py) for
# int.is_integer (3.12), and os.splice (3.10) is called only where os has it, with a copy in
# chunks otherwise (_mover.relay).
.PHONY: py-compat
py-compat: venv-test
	$(BIN)/vermin --target=3.8- --violations --no-tips --exclude 'hashlib.md5(usedforsecurity)' --exclude int.is_integer \
	  --exclude os.splice plugins/

# Prints listing figures (5,000 ZFS snapshots, 1,000 LVs); a figure, not a timed assertion.
bench: venv-test collection-copy
	cd $(TESTROOT) && $(BIN)/python -m ansible_collections.stratum.storage.tests.benchmarks.listing

lint: venv-test install
	ANSIBLE_COLLECTIONS_PATH=$(BUILD)/collections $(BIN)/ansible-lint playbooks/ roles/

changelog-lint: venv-test
	$(BIN)/antsibull-changelog lint

# The execution environment: ansible-builder's build context for extensions/ee/ (no
# container engine needed), the collection's introspected dependencies, and bindep.txt.
.PHONY: ee runner docs docs-lint docsite-rst
ee: venv-test build
	rm -rf $(BUILD)/ee && mkdir -p $(BUILD)/ee
	cp $(BUILD)/dist/stratum-storage-$(VERSION).tar.gz $(BUILD)/ee/stratum-storage.tar.gz
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/ee

# The docsite: docs/docsite/rst/ is written from the Markdown guides (make docsite-rst);
# docs-lint checks it is current and runs antsibull-docs lint-collection-docs; docs builds
# the HTML site with antsibull-docs sphinx-init and Sphinx (warnings fail the build) into
# .build/docsite/build/html and checks every module page shows every return value.
docsite-rst: venv-test
	$(BIN)/python scripts/docsite-rst

docs-lint: venv-test collection-copy
	$(BIN)/python scripts/docsite-rst --check
	cd $(COLLECTION) && PATH=$(BIN):$$PATH ANSIBLE_COLLECTIONS_PATH=$(TESTROOT) $(BIN)/antsibull-docs lint-collection-docs --plugin-docs .

docs: venv-test install
	rm -rf $(BUILD)/docsite && mkdir -m 0700 $(BUILD)/docsite
	PATH=$(BIN):$$PATH ANSIBLE_COLLECTIONS_PATH=$(BUILD)/collections $(BIN)/antsibull-docs sphinx-init --use-current \
	  --dest-dir $(BUILD)/docsite --fail-on-error stratum.storage
	$(BIN)/python scripts/docsite-offline $(BUILD)/docsite
	cd $(BUILD)/docsite && PATH=$(BIN):$$PATH ANSIBLE_COLLECTIONS_PATH=$(BUILD)/collections ./build.sh
	$(BIN)/python tests/docsite/check_site.py $(BUILD)/docsite/build/html $(BUILD)/doc.json

# The demo as AWX runs a job: ansible-runner on a private data directory.
runner: venv-test install system-deps
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/runner

clean:
	rm -rf $(BUILD) $(VENV) $(BENCH_VENV) $(TESTROOT)
