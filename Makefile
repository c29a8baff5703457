# kube-lb: `make demo` runs the demo, `make test` runs every test.
# Both install what is missing (Debian packages, npm packages) and build,
# idempotently; with nothing to do they return in seconds. Run as root.
SHELL := /bin/bash
.DEFAULT_GOAL := build

NODE := node_modules/.bin/node
BPF_OBJ := build/bpf/kube_lb.bpf.o
ADDON := build/Release/kube_lb_native.node
TS_STAMP := dist/.built

APT_PACKAGES := clang llvm libbpf-dev libelf-dev zlib1g-dev pkg-config cmake make g++ \
	bpftool iproute2 iptables nftables ipset util-linux procps kmod

.PHONY: build deps apt npm test demo clean

build: deps $(ADDON) $(BPF_OBJ) $(TS_STAMP)

deps: apt npm

# dpkg answers for installed packages without the network; apt runs only
# when something is missing.
apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

npm: node_modules/.installed
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

# After the addon: a full cmake-js rebuild empties build/.
$(BPF_OBJ): bpf/kube_lb.bpf.c $(wildcard bpf/include/*.h) | $(ADDON)
	@mkdir -p $(dir $@)
	clang -O2 -g -target bpf -Wall -Werror -I/usr/include/$$(gcc -dumpmachine) -c $< -o $@

# native/package.json declares the N-API version, so cmake-js builds against
# node-api-headers from npm and downloads nothing.
$(ADDON): $(wildcard native/*.cc native/*.h) native/CMakeLists.txt native/package.json node_modules/.installed
	@mkdir -p build
	PATH=$(CURDIR)/node_modules/.bin:$$PATH cmake-js compile --directory native --out build >build/native.log 2>&1 \
		|| { cat build/native.log; exit 1; }

$(TS_STAMP): $(shell find src test demo -name '*.ts' 2>/dev/null) tsconfig.json node_modules/.installed
	$(NODE) node_modules/.bin/tsc -p tsconfig.json
	touch $@

test: build
	$(NODE) --test --test-concurrency=1 --test-timeout=600000 'dist/test/**/*.test.js'

demo: build
	$(NODE) dist/demo/demo.js

clean:
	rm -rf build dist
