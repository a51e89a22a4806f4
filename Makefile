# xenha: `make demo` shows it, `make test` proves it, `make bench` measures it.
GO ?= go
PKGS ?= ./...
TESTFLAGS ?= -race -timeout 25m
BENCHTIME ?= 1x

.PHONY: all deps demo demo-daemons test fmt-check vet unit bench

all: test

deps:
	@bash scripts/deps.sh

demo: deps
	$(GO) run ./examples/demo $(DEMOFLAGS)

# Three xenha daemons from config files, driven with the xenha CLI
# (scripts/demo-daemons.sh stop ends them).
demo-daemons: deps
	@bash scripts/demo-daemons.sh start

test: deps fmt-check vet
	$(GO) test $(TESTFLAGS) $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

bench: deps
	$(GO) run ./internal/benchtable $(if $(BENCH_JSON),-json $(BENCH_JSON)) -- $(PKGS)
