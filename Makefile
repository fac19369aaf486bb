# Tern: the first two targets are the README's quick start.
CARGO ?= cargo
# Nothing started by these targets (the demo, tests, benches, smoke runs) talks to a real hub
# unless asked: `make run TERN_HUB=on` lets the demo register with PH_CREDS_HOST.
export TERN_HUB ?= off
DEMO  ?= $(CURDIR)/.demo

.PHONY: all build run test bench bench-checksum fleet fuzz-smoke static clean setup-test-deps

all: build

build:
	$(CARGO) build --release

# Start the daemon on a local storage whose factory revision is the demo (two containers, see
# board-configs/demo/build.sh); the socket lands in .demo/run/pv-ctrl.
run: build
	@mkdir -p $(DEMO)
	bash board-configs/demo/build.sh $(DEMO)/revision target/release/tern
	@echo "tern: control socket $(DEMO)/run/pv-ctrl"
	@echo "try:  curl --unix-socket $(DEMO)/run/pv-ctrl http://localhost/containers"
	./target/release/tern daemon --storage $(DEMO)/storage --rundir $(DEMO)/run \
		--factory $(DEMO)/revision/factory --set PV_LOG_LEVEL=3

# Unit tests (pure parts) and end-to-end tests (the real binary on a temporary storage).
test:
	$(CARGO) test --all-targets

bench:
	bash tests/bench/run.sh
	bash tests/bench/containers.sh
	$(CARGO) test --release --test hub_bench -- --ignored --nocapture --test-threads=1
	$(CARGO) test --release --test hub_logs -- --ignored --nocapture --test-threads=1
	bash tests/bench/hostile.sh
	bash tests/bench/soak.sh
	$(MAKE) --no-print-directory bench-checksum

# 200 daemons against one test hub, with and without jitter (not part of `make test`, which
# runs the 10-device smoke). TERN_FLEET_DEVICES, _IDLE_SECS, _PAYLOAD_KB and _JITTER (a list,
# default "10,0") change the run. The hub holds a thread and two descriptors per connection.
fleet:
	ulimit -n $$(ulimit -Hn) && $(CARGO) test --release --test fleet -- --ignored --nocapture --test-threads=1 fleet_figures

fuzz-smoke:
	bash fuzz/smoke.sh 60

include board-configs/cross.mk

# The boot-time object check's cost in ms per MB: native, then armv7 under qemu-user.
bench-checksum:
	$(CARGO) build --release --bin tern
	bash tests/bench/checksum.sh $(CROSS_OUT)/release/tern
	$(MAKE) --no-print-directory cross-armv7 >/dev/null
	bash tests/bench/checksum.sh --qemu qemu-arm-static $(BIN_ARMV7)

clean:
	$(CARGO) clean
	rm -rf $(DEMO)
