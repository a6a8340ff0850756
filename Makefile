# sealgate — build, run and test.
GO       ?= go
BIN      := bin/sealgate
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
# staticcheck 2026.2 (v0.8.x) is the first release that knows Go 1.26.
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
# make soak: concurrent inbound sessions, how long new ones start, and the
# transactions measured for the duplicate window.
SOAK_SESSIONS ?= 1000
SOAK_DURATION ?= 60s
WINDOW_RUNS   ?= 2000
# Debian packages the tests drive as real peers.
TEST_DEBS := postfix swaks unbound nsd ldnsutils bind9-dnsutils redis-server iproute2 nftables
# The systemd unit and the appliance VM (deploy/systemd, deploy/appliance).
TEST_DEBS += systemd qemu-system-x86 debootstrap e2fsprogs
# The status page rendered in a real browser (e2e/statuspage_test.go).
TEST_DEBS += chromium fonts-dejavu-core
# The container image and the Kubernetes pod (deploy/container, e2e/k8s).
TEST_DEBS += buildah podman runc
# The README's rollout check reads sealgate check's JSON with jq.
TEST_DEBS += jq
# e2e/k8s is a module of its own (the Kubernetes libraries stay out of
# sealgate's): ./... at the top does not reach it.
K8S_TESTS := e2e/k8s

.PHONY: all build run test deps vet staticcheck unit bench soak fuzz clean appliance

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/sealgate

# Runs the gateway on :2525 with the defaults (see README for SEALGATE_*).
run: build
	./$(BIN) serve

# Installs what the tests need, then vets, runs staticcheck and runs every
# test with the race detector, e2e included (the soak in its short form).
test: deps vet staticcheck
	$(GO) test -race -count=1 -timeout 20m ./...
	cd $(K8S_TESTS) && $(GO) test -race -count=1 -timeout 10m ./...

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { gofmt -l .; echo 'gofmt needed'; exit 1; }
	$(GO) vet ./...
	cd $(K8S_TESTS) && $(GO) vet ./...

staticcheck:
	$(GO) run $(STATICCHECK) ./...
	cd $(K8S_TESTS) && $(GO) run $(STATICCHECK) ./...

deps:
	@./.ci/deps $(TEST_DEBS)

# The client straight to a TLS sink, through sealgate and through a private
# Postfix, side by side for 1 KB, 10 KB and 1 MB at concurrency 1, 20 and
# 200, then 10,000 idle sessions and CPU profiles of sealgate (see
# docs/performance.md). Needs root and postfix (make deps). The table and
# the profiles go to $(BENCH_OUT).
BENCH_OUT ?= bin/bench
bench:
	$(GO) test -count=1 -v -timeout 20m -run '^TestBench$$' ./e2e/bench/ -args -full -out $(abspath $(BENCH_OUT))

# Long: SOAK_SESSIONS concurrent sessions for SOAK_DURATION through the
# built binary (no race detector), then the duplicate window; prints the
# gateway's goroutines and RSS and the window's figures.
soak:
	$(GO) test -count=1 -v -timeout 30m -run '^(TestSoak|TestDuplicateWindow)$$' ./e2e/ \
		-args -soak.sessions=$(SOAK_SESSIONS) -soak.duration=$(SOAK_DURATION) -window.runs=$(WINDOW_RUNS)

# Runs every fuzz target of proxy in turn (go test takes one -fuzz target
# per run), FUZZTIME each.
FUZZTIME ?= 30s
fuzz:
	@set -e; for f in $$($(GO) test -list '^Fuzz' ./proxy | grep '^Fuzz'); do \
		echo "$$f"; $(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) ./proxy; \
	done

# The appliance VM image (see README, "Appliance"): the Debian root file
# system is cached under $(APPLIANCE_CACHE)/HASH of the recipe; the image,
# kernel and initrd go to bin/appliance. Needs root. APPLIANCE_CONF is the
# appliance.conf built in (default: the documented example).
APPLIANCE_CACHE ?= /var/cache/sealgate-appliance
APPLIANCE_CONF  ?= deploy/appliance/appliance.conf
appliance:
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o bin/appliance/sealgate ./cmd/sealgate
	@set -e; rootfs=$(APPLIANCE_CACHE)/$$(sh deploy/appliance/build.sh hash); \
	[ -d "$$rootfs/boot" ] || sh deploy/appliance/build.sh rootfs "$$rootfs"; \
	sh deploy/appliance/build.sh image "$$rootfs" bin/appliance/sealgate bin/appliance $(APPLIANCE_CONF)

clean:
	rm -rf bin
