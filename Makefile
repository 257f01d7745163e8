GO ?= go
PKGS := ./...
# The race detector needs cgo and a C compiler; without one, tests run
# without it (and say so) rather than not at all.
RACE ?= $(shell CC=$$($(GO) env CC); command -v $${CC%% *} >/dev/null 2>&1 && [ "$$($(GO) env CGO_ENABLED)" = 1 ] && echo -race)

.PHONY: all test vet demo demo-cluster bench bench-quick bench-distributed microbench fmt lint fuzz clean

all: test

## test: vet, then every test (with the race detector when a C compiler is present)
test: vet
	@[ -n "$(RACE)" ] || echo "note: no C compiler (or CGO_ENABLED=0): testing without -race"
	$(GO) test $(RACE) -count=1 -timeout 12m $(PKGS)

vet:
	$(GO) vet $(PKGS)

## demo: build the example SHA-512 worker and run the embedded demo program
demo:
	$(GO) run ./examples/demo

## demo-cluster: an embedded NATS server and three node processes on 127.0.0.1; one is killed partway
demo-cluster:
	$(GO) run ./examples/cluster

## bench: the article's experiments and ours; rewrites docs/benchmarks.md
bench:
	$(GO) run ./bench

## bench-quick: every experiment briefly, checking results, not speed
bench-quick:
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
