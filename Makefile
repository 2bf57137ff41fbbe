# hotshard: every target does its own set-up on a fresh Debian machine with Python 3.11.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROTOS := $(wildcard proto/hotshard/v1/*.proto)
GENERATED := $(patsubst proto/%.proto,%_pb2.py,$(PROTOS))

.PHONY: setup proto native test test-all lint unit demo bench clean

setup: $(STAMP) $(GENERATED) native redis-server

# The book compiled by mypyc from its own source (engine/native.py): extension files next to
# the source, used by default; HOTSHARD_BOOK=python runs the source. Needs gcc and Python's
# headers (python3.11-dev on Debian's own Python), installed where missing.
NATIVE_FROM := engine/book/order.py engine/book/ended.py engine/book/index.py engine/book/packed.py engine/book/level.py engine/book/book.py \
	engine/book/instrument.py hotshard/commands.py hotshard/events.py hotshard/domain.py \
	hotshard/reasons.py hotshard/names.py engine/fastwire.py \
	engine/service/batch.py engine/native.py engine/build.py
NATIVE_STAMP := engine/book/book$(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')

native: $(NATIVE_STAMP)

$(NATIVE_STAMP): $(NATIVE_FROM) $(STAMP)
	@command -v gcc >/dev/null || (apt-get update -qq && apt-get install -y -qq gcc)
	@$(PY) -c 'import sysconfig, pathlib, sys; sys.exit(not pathlib.Path(sysconfig.get_paths()["include"], "Python.h").exists())' \
	  || (apt-get update -qq && apt-get install -y -qq python3.11-dev)
	$(PY) -m engine.build

# A real redis-server binary for the local cluster and integration tests. Installed with
# apt-get where missing; a temporary policy-rc.d keeps the package from starting the
# system service (hotshard starts its own on free ports).
.PHONY: redis-server
redis-server:
	@command -v redis-server >/dev/null || { \
	  created=; \
	  if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && created=1; \
	  fi; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends redis-server; \
	  status=$$?; [ -n "$$created" ] && rm -f /usr/sbin/policy-rc.d; exit $$status; }

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "hotshard needs Python 3.11")'
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || (apt-get update -qq && apt-get install -y -qq python3-venv)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,cli]'
	touch $(STAMP)

proto: $(GENERATED)

hotshard/v1/%_pb2.py: proto/hotshard/v1/%.proto $(STAMP)
	$(PY) -m grpc_tools.protoc -I proto --python_out=. --pyi_out=. --grpc_python_out=. $<

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

unit: setup
	$(VENV)/bin/pytest -q -m 'not integration'

# Everything against the compiled book, then the book's own tests against the pure-Python
# source (tests/engine/book/test_builds.py also checks that both give identical bytes).
test: lint
	HOTSHARD_BOOK=native $(VENV)/bin/pytest -q -n 2 -m 'not faults'
	HOTSHARD_BOOK=python $(VENV)/bin/pytest -q -n 2 tests/engine/book

# make test plus the whole fault matrix around a migration (tests/migration/test_faults.py).
test-all: lint
	HOTSHARD_BOOK=native $(VENV)/bin/pytest -q -n 2
	HOTSHARD_BOOK=python $(VENV)/bin/pytest -q -n 2 tests/engine/book

# 100,000 fuzz cases (tests/fuzz: HTTP requests and WebSocket frames into the local edge,
# raw Kafka record bytes into the engine), 25,000 per test; make test runs a slice of each.
# Cut at the hour by SIGINT, so pytest still reports the failures it found until then.
# The fault suite (tests/faults: broker, Redis, engine and gateway restarts under load, each
# case bounded), every case at both sizes, then its table (docs/FAULTS.md); make test runs
# one small case per kind of fault.
.PHONY: faults
faults: setup
	mkdir -p build && rm -f build/faults.jsonl
	HOTSHARD_FAULTS_REPORT=build/faults.jsonl timeout 3600 $(VENV)/bin/pytest -q -rxX tests/faults; \
	  status=$$?; $(PY) -m tests.faults.report build/faults.jsonl; exit $$status

.PHONY: fuzz mutate
# 100,000 cases: 25,000 in each of the four fuzz tests (HTTP requests and WebSocket frame
# batches into the local edge, raw Kafka record bytes into the decoder and the engine's
# core); docs/FAULTS.md has a run's times. Cut by SIGINT at 30 minutes (pytest still
# reports what failed).
fuzz: setup
	HOTSHARD_FUZZ_EXAMPLES=25000 timeout -s INT -k 60 1800 $(VENV)/bin/pytest -q -rfE --durations=0 tests/fuzz

# Mutation testing of the book, the codecs and the router's validation (mutmut, pinned in
# the `mutate` extra), on the book's source. Not part of make test: it takes tens of
# minutes a module. Results: docs/MUTATION.md. tests/mutate.py runs one module at a time in
# build/mutate/<module>/ (only that module's mutants are generated; its results are kept
# there unless FRESH=1):
#   make mutate MODULE=engine/book/ended.py          # one module
#   make mutate MODULE=engine/book/book.py MUTANTS='*_take_special*'
#   make mutate                                       # every module, one after another
MODULE ?=
MUTANTS ?=
mutate: setup
	$(PY) -m pip install -q -c constraints.txt -e '.[mutate]'
	$(PY) -m tests.mutate $(if $(MODULE),$(MODULE),--all) $(if $(FRESH),--fresh) \
	  $(if $(MUTANTS),--mutants '$(MUTANTS)')

demo: setup
	$(VENV)/bin/hotshard demo

# The book's benchmarks in a few minutes (docs/BENCHMARKS.md); the last lines are the
# ratios against the liquibook peer. zipf100 is cut to 300,000 commands here: the peer's
# cancel is linear in its level, so at 1,000,000 it alone takes minutes a run.
bench: setup
	$(PY) -m bench.memory
	$(PY) -m bench.snapshot
	$(PY) -m bench.book --orders 1000000 --orders-zipf 300000 --repeat 3

clean:
	rm -rf $(VENV) hotshard/v1/*_pb2*.py hotshard/v1/*_pb2*.pyi .mypy_cache .ruff_cache .pytest_cache \
		build/native engine/book/*.so

# --- infrastructure (app.py, infra/): docs/DEPLOY.md ------------------------------------
.PHONY: synth cdk-cli lambda-deps deploy
CDK := node_modules/.bin/cdk
JSII_ENV := JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20

synth: setup
	$(JSII_ENV) $(PY) app.py

$(CDK): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $(CDK)

cdk-cli: $(CDK)

# Third-party packages of the Lambdas as a layer: Linux x86_64 wheels for CPython 3.11.
lambda-deps: setup
	rm -rf build/lambda-deps
	$(PY) -m pip install -q --target build/lambda-deps/python -c constraints.txt \
		--platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --implementation cp \
		--python-version 3.12 \
		--only-binary=:all: 'aws-lambda-powertools[tracer]' confluent-kafka redis hiredis protobuf grpcio \
		aws-msk-iam-sasl-signer-python 'pyjwt[crypto]'

deploy: setup cdk-cli lambda-deps
	$(JSII_ENV) $(CDK) deploy --all -c hotshard:requireCode=true --require-approval broadening
