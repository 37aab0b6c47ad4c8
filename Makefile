# Encore: `make run` sets everything up and serves the embedded default; `make test` runs the tests;
# `make check` (what CI runs) adds ruff, ruff format --check, mypy and the layering contracts.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
BUNDLES ?= bundles
STAMP := $(VENV)/.installed

.PHONY: system-packages install run build build-real serve test check lint typecheck lint-imports proto bench bench-offline loadtest faults clean stack client image image-test

$(STAMP): pyproject.toml
	@start=$$(date +%s); \
	echo "[install 1/3] virtualenv in $(VENV)"; $(PYTHON) -m venv $(VENV) && \
	echo "[install 2/3] pip itself ($$(( $$(date +%s) - start )) s so far)" && $(BIN)/pip install --quiet --upgrade pip && \
	echo "[install 3/3] the pinned dependencies: ~1 GB (FAISS, ONNX Runtime, LightGBM, ...), 1-3 min the first time" && \
	{ $(BIN)/pip install --progress-bar off -e '.[dev,spark]'; echo $$? > $(VENV)/.pip-status; } \
	  | grep -E --line-buffered '^(Collecting|Installing collected|Successfully installed|ERROR)' | cut -c1-160; \
	test "$$(cat $(VENV)/.pip-status)" = 0 && touch $(STAMP) && \
	echo "[install] done in $$(( $$(date +%s) - start )) s; later runs skip this until pyproject.toml changes"

install: $(STAMP)

## The tests start their own redis-server processes and run promtool (deploy/prometheus); install
## Debian's redis-server and prometheus packages when they are missing.
system-packages:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server (Debian package)"; \
	  export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; }
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium (Debian package, renders the experiment report in a test)"; \
	  export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
	@command -v java >/dev/null 2>&1 || { \
	  echo "installing openjdk-17-jre-headless (Debian package, for the Spark engine's tests)"; \
	  export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless >/dev/null; }
	@command -v promtool >/dev/null 2>&1 || { \
	  echo "installing prometheus (Debian package, for promtool)"; \
	  export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq prometheus >/dev/null; }

## Build a synthetic bundle if none exists, then serve it on the embedded feature store.
## `make run PORT=50052 METRICS_PORT=9465` (each optional) passes --port/--metrics-port to encore serve;
## any setting also comes from its ENCORE_<KEY> variable (`encore config table`).
run: $(STAMP)
	@if ls $(BUNDLES)/*/manifest.json >/dev/null 2>&1; then \
	  echo "[run] reusing the newest bundle under $(BUNDLES)/ (make build makes a new one)"; \
	else \
	  echo "[run] building the first bundle: 20,000 synthetic items, a few minutes, once"; start=$$(date +%s); \
	  $(BIN)/encore build --out $(BUNDLES) || exit 1; echo "[run] bundle built in $$(( $$(date +%s) - start )) s"; \
	fi
	$(BIN)/encore serve$(if $(PORT), --port $(PORT))$(if $(METRICS_PORT), --metrics-port $(METRICS_PORT))

build: $(STAMP)
	$(BIN)/encore build --out $(BUNDLES)

build-real: $(STAMP)
	$(BIN)/encore build --dataset hetrec --data-path ../shared/data/hetrec2011-lastfm-2k --out $(BUNDLES)

test: $(STAMP) system-packages
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

## The layering contracts in pyproject.toml [tool.importlinter] (import-linter): fails on a broken one.
lint-imports: $(STAMP)
	$(BIN)/lint-imports

## Everything CI checks, cheapest first: lint, format, types, layering, then every test layer.
check: $(STAMP) system-packages lint typecheck lint-imports test

## Benchmark (never part of the tests): component floor, server stages, open-loop rate steps, memory,
## on the 1M-item synthetic bundle and the real-data bundle (built first when missing). Table on
## stdout, JSON in bench-results/bench.json. Extra options: make bench BENCH_ARGS="--quick --profile".
bench: $(STAMP) system-packages
	$(BIN)/python -m loadtests.bench $(BENCH_ARGS)

## Offline build stages in process vs Spark local[2] at 1x and 10x the HetRec size (a few minutes);
## SCALES=1,10,100 adds 100x (long on two cores).
SCALES ?= 1,10
bench-offline: $(STAMP) system-packages
	$(BIN)/python -m loadtests.bench_offline --scales $(SCALES)

## Serve the newest bundle (built first if none) and run locust headless against it; fails when the
## p99 or the error ratio exceeds its limit. Override USERS, SPAWN_RATE, DURATION, MAX_P99_MS, MAX_ERROR_RATIO.
loadtest: $(STAMP)
	BIN=$(BIN) BUNDLES=$(BUNDLES) USERS="$(USERS)" SPAWN_RATE="$(SPAWN_RATE)" DURATION="$(DURATION)" \
		MAX_P99_MS="$(MAX_P99_MS)" MAX_ERROR_RATIO="$(MAX_ERROR_RATIO)" bash loadtests/locust/run_loadtest.sh

## Fault injection with real processes (Redis killed/paused/slow, corrupt bundles, full disk, bad and
## fuzzed messages); -s prints each scenario's report table. Part of `make test` too. Needs root (tmpfs mount).
faults: $(STAMP) system-packages
	$(BIN)/pytest tests/fault -s

proto: $(STAMP)
	PATH=$(BIN):$$PATH $(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=protos --mypy_out=protos \
		protos/encore/v1/capture.proto
	PATH=$(BIN):$$PATH $(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=protos --grpc_python_out=protos \
		--mypy_out=protos --mypy_grpc_out=protos protos/encore/v1/ranking.proto protos/encore/v1/admin.proto \
		protos/encore/v1/experiments.proto

## The whole stack in containers (deploy/compose/compose.yaml): Encore serving the newest bundle under
## bundles/ (`make build` first), Redis, Prometheus with the Encore rules, Grafana with the Encore
## dashboard (http://127.0.0.1:3000). Ports and images are variables; see deploy/README.md.
COMPOSE ?= podman compose
stack:
	$(COMPOSE) -f deploy/compose/compose.yaml up

## The encore-client wheel (clients/python: generated stubs, .proto files, a typed client; needs only
## grpcio and protobuf) from protos/, staged in build/encore-client, written to dist/; prints its size.
client: $(STAMP)
	PATH=$(BIN):$$PATH $(BIN)/python clients/python/build_client.py --out dist

## Container image (Dockerfile; deploy/README.md "Container image"), built with podman: the base is
## encore-base:bookworm, made locally with debootstrap (deploy/image/build-base.sh), the wheels come
## from this host's pip index (deploy/image/wheelhouse.sh) and the build runs with --network none.
## Installs Debian's podman, debootstrap and runc when missing. IMAGE_BUNDLE=bundles/<version> bakes
## a bundle in as /bundles/current. `make image-test` runs tests/image against it.
IMAGE ?= encore:$(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
BASE_IMAGE ?= localhost/encore-base:bookworm
IMAGE_BUNDLE ?=
PODMAN := CONTAINERS_CONF=$(CURDIR)/deploy/image/containers.conf podman

image: $(STAMP)
	@command -v podman >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1 && command -v runc >/dev/null 2>&1 || { \
	  echo "installing podman, debootstrap, runc (Debian packages)"; \
	  export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq podman debootstrap runc >/dev/null; }
	BASE_IMAGE=$(BASE_IMAGE) bash deploy/image/build-base.sh
	bash deploy/image/wheelhouse.sh $(BASE_IMAGE) $(BIN)/pip
	rm -rf build/image/bundle
	$(if $(IMAGE_BUNDLE),cp -rL $(IMAGE_BUNDLE) build/image/bundle)
	$(PODMAN) build --quiet --format docker --network none --build-arg BASE=$(BASE_IMAGE) --build-arg PIP_NO_INDEX=1 \
		$(if $(IMAGE_BUNDLE),--build-arg BUNDLE=build/image/bundle) --tag $(IMAGE) . >/dev/null
	@$(PODMAN) image inspect --format '{{.Size}}' $(IMAGE) | \
		awk '{ printf "image $(IMAGE): %.0f MB (%d bytes)\n", $$1 / 1e6, $$1 }'

image-test: image
	CONTAINERS_CONF=$(CURDIR)/deploy/image/containers.conf ENCORE_IMAGE=$(IMAGE) $(BIN)/pytest -q tests/image

clean:
	rm -rf $(VENV) $(BUNDLES) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
