# xenha: `make demo` shows it, `make test` proves it, `make bench` measures it.
GO ?= go
PKGS ?= ./...
TESTFLAGS ?= -race -timeout 25m
BENCHTIME ?= 1x

.PHONY: all deps demo demo-daemons test fmt-check vet unit bench fresh-check

all: test

deps:
	@bash scripts/deps.sh

demo: deps
	$(GO) run ./examples/demo $(DEMOFLAGS)

# Three xenha daemons from config files, driven with the xenha CLI
# (scripts/demo-daemons.sh stop ends them).
demo-daemons: deps
	@bash scripts/demo-daemons.sh start

# go test's usual output, then the skipped tests grouped by reason; go test's
# exit status (internal/testreport).
test: deps fmt-check vet
	$(GO) run ./internal/testreport $(TESTFLAGS) $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

bench: deps
	$(GO) run ./internal/benchtable $(if $(BENCH_JSON),-json $(BENCH_JSON)) -- $(PKGS)

# make demo and make test as root in a fresh Debian 12 root (debootstrap) with
# a clean `git archive HEAD`: what a new user's machine does. 10-20 minutes.
fresh-check:
	@bash scripts/fresh-check.sh
