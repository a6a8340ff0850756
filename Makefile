# sealgate — build, run and test.
GO       ?= go
BIN      := bin/sealgate
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
# Debian packages the tests drive as real peers.
TEST_DEBS := postfix swaks unbound nsd ldnsutils bind9-dnsutils redis-server

.PHONY: all build run test deps vet unit bench fuzz clean

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/sealgate

# Runs the gateway on :2525 with the defaults (see README for SEALGATE_*).
run: build
	./$(BIN) serve

# Installs what the tests need, then vets and runs every test with the race
# detector, e2e included.
test: deps vet
	$(GO) test -race -count=1 -timeout 20m ./...

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { gofmt -l .; echo 'gofmt needed'; exit 1; }
	$(GO) vet ./...

deps:
	@./.ci/deps $(TEST_DEBS)

bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 3s ./e2e/

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzSession -fuzztime 30s ./proxy

clean:
	rm -rf bin
