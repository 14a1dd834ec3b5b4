# kube-otel-bridge — see README.md. Everything a test needs is built here.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
# grpcnotrace: gRPC without golang.org/x/net/trace (never enabled here), whose
# html/template and text/template keep every exported method in the binary:
# 31 -> 25 MB, 3 MiB less resident.
GOTAGS := grpcnotrace
TOOLS := test/cluster/tools
# helm renders the chart in the e2e tests (go install of a pinned release:
# its own go.mod, not the tools module's, whose Kubernetes pins it would move).
HELM_VERSION := v4.3.2
CLUSTER_BINS := $(BIN)/etcd $(BIN)/kube-apiserver $(BIN)/kube-controller-manager $(BIN)/kube-scheduler $(BIN)/kwok $(BIN)/kubectl $(BIN)/.helm-$(HELM_VERSION)
CLUSTER_DIR ?= $(CURDIR)/.cluster
RECORDING ?= examples/recordings/rollout.jsonl
TEST_TIMEOUT ?= 30m
IMAGE ?= kube-otel-bridge:$(VERSION)

.PHONY: all build run test test-race unit bench load soak lint fmt fuzz cluster-bins cluster-up cluster-down image clean

all: build

## build: the kube-otel-bridge binary in bin/
build:
	CGO_ENABLED=0 $(GO) build -trimpath -tags $(GOTAGS) -ldflags '$(LDFLAGS)' -o $(BIN)/kube-otel-bridge ./cmd/kube-otel-bridge

## run: replay a bundled recording and print what the bridge makes of it (no cluster needed)
run: build
	$(BIN)/kube-otel-bridge replay $(RECORDING) --output tree

## test: unit and integration tests; integration tests run a real mini cluster
test: cluster-bins
	$(GO) vet ./...
	KOB_CLUSTER_BIN=$(BIN) $(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

## test-race: every test under the race detector (needs cgo: gcc), the e2e suite against a race-detector
## build of the bridge (a race halts the bridge, and the test that ran it fails). Allocation tests skip
## themselves (test/racebuild). Not part of `make test`: ≈ 10 minutes more.
test-race: cluster-bins
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $$($(GO) list ./... | grep -v /test/e2e)
	CGO_ENABLED=1 $(GO) build -race -tags $(GOTAGS) -o $(BIN)/kube-otel-bridge-race ./cmd/kube-otel-bridge
	CGO_ENABLED=1 GORACE=halt_on_error=1 E2E_BRIDGE_BIN=$(BIN)/kube-otel-bridge-race KOB_CLUSTER_BIN=$(BIN) $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./test/e2e/

## unit: only the tests that need no cluster
unit:
	$(GO) test -count=1 -short ./...

## bench: benchmarks; the raw output goes to bin/bench.txt, then one Markdown table of them all
## (medians when BENCHCOUNT > 1) to bin/bench.md and the terminal
BENCHCOUNT ?= 1
bench:
	@mkdir -p $(BIN)
	set -o pipefail; $(GO) test -run '^$$' -bench . -benchmem -count $(BENCHCOUNT) ./... | tee $(BIN)/bench.txt
	$(GO) run ./test/benchtable $(BIN)/bench.txt | tee $(BIN)/bench.md

## load: issue 7's end-to-end measurements with the release build on the mini cluster: TestLoad
## (20,000 Events at the API server's full rate) and TestLoadRollouts (a rollout storm). The whole log
## goes to bin/load.txt; the KOB_LOAD_*RESULT lines (CPU-s per 10k, lag, peak RSS, delivery) to the terminal.
load: cluster-bins build
	set -o pipefail; E2E_BRIDGE_BIN=$(BIN)/kube-otel-bridge KOB_CLUSTER_BIN=$(BIN) KOB_LOAD=1 \
	  $(GO) test -count=1 -timeout 60m -run 'TestLoad$$|TestLoadRollouts$$' -v ./test/e2e/ > $(BIN)/load.txt; \
	  rc=$$?; grep -h -o 'KOB_LOAD[A-Z_]*_RESULT.*' $(BIN)/load.txt; grep -E '^(--- FAIL|FAIL)' $(BIN)/load.txt; exit $$rc

## soak: the memory soak with the release build (SOAK_DURATION, 30m by default; heap profiles at each
## third to bin/soak/). The log goes to bin/soak.txt, its growth summary and KOB_SOAK_RESULT to the terminal.
SOAK_DURATION ?= 30m
SOAK_TIMEOUT ?= 150m
soak: cluster-bins build
	@mkdir -p $(BIN)/soak
	set -o pipefail; E2E_BRIDGE_BIN=$(BIN)/kube-otel-bridge KOB_CLUSTER_BIN=$(BIN) KOB_SOAK=1 \
	  KOB_SOAK_DURATION=$(SOAK_DURATION) KOB_SOAK_PROFILE_DIR=$(BIN)/soak KOB_SOAK_MEM_PROFILE_RATE=4096 \
	  $(GO) test -count=1 -timeout $(SOAK_TIMEOUT) -run 'TestSoak$$' -v ./test/e2e/ > $(BIN)/soak.txt; \
	  rc=$$?; grep -A9 'growth, median' $(BIN)/soak.txt | sed 's/^ *soak_test.go:[0-9]*: //'; grep -E '^(--- FAIL|FAIL)' $(BIN)/soak.txt; exit $$rc

## lint: gofmt and go vet
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

## fuzz: run each fuzz target briefly (FUZZTIME each; FuzzRestore's inputs are real 40 KB checkpoints,
## whose minimization would take the default minute)
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzFromEvent$$' -fuzztime $(FUZZTIME) ./convert/
	$(GO) test -run '^$$' -fuzz '^FuzzEventProto$$' -fuzztime $(FUZZTIME) ./watch/
	$(GO) test -run '^$$' -fuzz '^FuzzWatchEventProto$$' -fuzztime $(FUZZTIME) ./watch/
	$(GO) test -run '^$$' -fuzz '^FuzzMetadataProto$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./watch/
	$(GO) test -run '^$$' -fuzz '^FuzzReadRecording$$' -fuzztime $(FUZZTIME) ./watch/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeCheckpoint$$' -fuzztime $(FUZZTIME) ./watch/
	$(GO) test -run '^$$' -fuzz '^FuzzCheckpointNames$$' -fuzztime $(FUZZTIME) ./watch/
	$(GO) test -run '^$$' -fuzz '^FuzzParseRV$$' -fuzztime $(FUZZTIME) ./watch/
	$(GO) test -run '^$$' -fuzz '^FuzzControllerParsers$$' -fuzztime $(FUZZTIME) ./causality/
	$(GO) test -run '^$$' -fuzz '^FuzzEngine$$' -fuzztime $(FUZZTIME) ./causality/
	$(GO) test -run '^$$' -fuzz '^FuzzRestore$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./causality/
	$(GO) test -run '^$$' -fuzz '^FuzzParseConfig$$' -fuzztime $(FUZZTIME) ./cmd/kube-otel-bridge/
	$(GO) test -run '^$$' -fuzz '^FuzzEncode$$' -fuzztime $(FUZZTIME) ./exporter/otlp/

## cluster-bins: build etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok and kubectl from their Go modules, and helm
cluster-bins: $(CLUSTER_BINS)

# Rebuilt only when the pinned versions change (test/cluster/tools/go.mod, go.sum).
$(BIN)/kube-apiserver $(BIN)/kube-controller-manager $(BIN)/kube-scheduler $(BIN)/kubectl: $(TOOLS)/go.mod $(TOOLS)/go.sum
	cd $(TOOLS) && CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $@ k8s.io/kubernetes/cmd/$(notdir $@)

$(BIN)/etcd: $(TOOLS)/go.mod $(TOOLS)/go.sum
	cd $(TOOLS) && CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $@ go.etcd.io/etcd/server/v3

$(BIN)/kwok: $(TOOLS)/go.mod $(TOOLS)/go.sum
	cd $(TOOLS) && CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $@ sigs.k8s.io/kwok/cmd/kwok

$(BIN)/.helm-$(HELM_VERSION):
	GOBIN=$(BIN) CGO_ENABLED=0 $(GO) install -trimpath -ldflags '-s -w' helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)
	touch $@

## cluster-up: start a mini cluster in .cluster/ and print the KUBECONFIG to use
cluster-up: cluster-bins
	KOB_CLUSTER_BIN=$(BIN) $(GO) run ./test/cluster/cmd/minicluster -dir $(CLUSTER_DIR) up

## cluster-down: stop the mini cluster started by cluster-up
cluster-down:
	$(GO) run ./test/cluster/cmd/minicluster -dir $(CLUSTER_DIR) down

## image: the container image (needs a Docker engine)
image:
	@command -v docker >/dev/null && docker info >/dev/null 2>&1 || { echo "make image needs a running Docker engine"; exit 1; }
	docker build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) -t $(IMAGE) .

clean:
	rm -rf $(BIN)
