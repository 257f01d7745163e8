GO ?= go
PKGS := ./...
# The race detector needs cgo and a C compiler; without one, tests run
# without it (and say so) rather than not at all.
RACE ?= $(shell CC=$$($(GO) env CC); command -v $${CC%% *} >/dev/null 2>&1 && [ "$$($(GO) env CGO_ENABLED)" = 1 ] && echo -race)

# The Python SDK runs on a Python 3.9+ that has msgpack: Debian's
# python3-msgpack installs it for /usr/bin/python3 (a pyenv python3 first on
# PATH usually lacks it). Override with PYTHON=...
PYTHON ?= $(shell for p in "$$PROCPOOL_PYTHON" /usr/bin/python3 python3; do [ -n "$$p" ] && "$$p" -c 'import msgpack' 2>/dev/null && { echo "$$p"; break; }; done)
NODE_SDK := sdk/node

.PHONY: all test vet demo demo-cluster bench bench-quick bench-distributed microbench fmt lint fuzz clean sdk-deps sdk-test

all: test

## test: vet, then every test (with the race detector when a C compiler is present),
## the conformance suite for every SDK whose runtime is here included, then the SDKs' own unit tests
test: vet sdk-deps
	@[ -n "$(RACE)" ] || echo "note: no C compiler (or CGO_ENABLED=0): testing without -race"
	$(GO) test $(RACE) -count=1 -timeout 12m $(PKGS)
	@$(MAKE) --no-print-directory sdk-test

## sdk-deps: the Node SDK's dependencies (npm ci, from its package-lock.json) when node is installed
sdk-deps:
	@if command -v node >/dev/null 2>&1; then \
		[ -d $(NODE_SDK)/node_modules/@msgpack/msgpack ] || (cd $(NODE_SDK) && npm ci --no-audit --no-fund); \
	else echo "note: no node: the Node.js SDK is not tested"; fi

## sdk-test: the Python and Node SDKs' unit tests (the conformance suite runs them under the host)
sdk-test:
	@if [ -n "$(PYTHON)" ]; then echo "$(PYTHON) -m unittest (sdk/python)"; $(PYTHON) -m unittest discover -s sdk/python/tests -p 'test_*.py'; \
	else echo "note: no python3 with msgpack (apt-get install python3-msgpack): the Python SDK is not tested"; fi
	@if command -v node >/dev/null 2>&1; then cd $(NODE_SDK) && npm test --silent; fi

vet:
	$(GO) vet $(PKGS)

## demo: build the example SHA-512 worker and run the embedded demo program
demo:
	$(GO) run ./examples/demo

## demo-cluster: an embedded NATS server and three node processes on 127.0.0.1; one is killed partway
demo-cluster:
	$(GO) run ./examples/cluster

## bench: the article's experiments and ours; rewrites docs/benchmarks.md
bench: sdk-deps
	$(GO) run ./bench

## bench-quick: sdk-deps every experiment briefly, checking results, not speed
bench-quick: sdk-deps
	$(GO) run ./bench -quick

## bench-distributed: a local pool against JetStream with 1 and 3 nodes; rewrites docs/benchmarks-distributed.md
bench-distributed:
	$(GO) run ./bench -distributed

## microbench: go test benchmarks of the codec, one worker and the full path
microbench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

fmt:
	gofmt -w .

STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

## lint: gofmt check, go vet and staticcheck
lint: vet
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) run $(STATICCHECK) ./...

## fuzz: run the codec decoder fuzzer for 30 seconds
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzReader -fuzztime 30s ./codec

clean:
	$(GO) clean -testcache
