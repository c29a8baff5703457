# kube-lb: `make demo` runs the demo, `make test` runs every test but the
# image's (`make test-image`, which builds the image; see docs/image.md).
# Both install what is missing (Debian packages, npm packages) and build,
# idempotently; with nothing to do they return in seconds. Run as root.
SHELL := /bin/bash
.DEFAULT_GOAL := build

NODE := node_modules/.bin/node
BPF_OBJS := build/bpf/kube_lb.bpf.o build/bpf/kube_lb_xdp.bpf.o build/test/xdp_pass.bpf.o build/bench/flood.bpf.o
ADDON := build/Release/kube_lb_native.node
TS_STAMP := dist/.built
BUNDLE := dist/bundle/cli.js

APT_PACKAGES := clang llvm libbpf-dev libelf-dev zlib1g-dev pkg-config cmake make g++ \
	bpftool iproute2 iptables nftables ipset util-linux procps kmod iperf3 ethtool \
	libmnl-dev qemu-system-x86 busybox-static cpio xz-utils ipvsadm conntrack openssl nginx curl python3 \
	mmdebstrap umoci

FORCE:
.PHONY: build deps apt npm test test-vm test-image image demo bench bench-vm clean readme-capabilities

build: deps $(ADDON) $(BPF_OBJS) $(TS_STAMP) $(BUNDLE)

deps: apt npm

# dpkg answers for installed packages without the network; apt runs only
# when something is missing.
apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@# The deploy test's kubectl: the machine's own if it has one, else Debian's.
	@command -v kubectl >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends kubernetes-client; }

npm: node_modules/.installed
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

# After the addon: a full cmake-js rebuild empties build/. The TC and XDP
# objects are built from the same headers (bpf/include/ctx.h).
build/bpf/%.bpf.o: bpf/%.bpf.c $(wildcard bpf/include/*.h) | $(ADDON)
	@mkdir -p $(dir $@)
	clang -O2 -g -target bpf -Wall -Werror -I/usr/include/$$(gcc -dumpmachine) -c $< -o $@

# The test sandbox's own program (test/lib/sandbox.ts), and the packet-rate
# benchmark's generator (bench/flood.ts).
build/test/%.bpf.o: test/lib/%.bpf.c | $(ADDON)
	@mkdir -p $(dir $@)
	clang -O2 -g -target bpf -Wall -Werror -I/usr/include/$$(gcc -dumpmachine) -c $< -o $@

build/bench/%.bpf.o: bench/%.bpf.c | $(ADDON)
	@mkdir -p $(dir $@)
	clang -O2 -g -target bpf -Wall -Werror -I/usr/include/$$(gcc -dumpmachine) -c $< -o $@

# native/package.json declares the N-API version, so cmake-js builds against
# node-api-headers from npm and downloads nothing.
$(ADDON): $(wildcard native/*.cc native/*.h) native/CMakeLists.txt native/package.json node_modules/.installed
	@mkdir -p build
	PATH=$(CURDIR)/node_modules/.bin:$$PATH cmake-js compile --directory native --out build >build/native.log 2>&1 \
		|| { cat build/native.log; exit 1; }

# dist/ is rebuilt whole, so no test removed from the sources lingers there.
$(TS_STAMP): $(shell find src test demo bench -name '*.ts' 2>/dev/null) tsconfig.json node_modules/.installed
	rm -rf dist
	$(NODE) node_modules/.bin/tsc -p tsconfig.json
	touch $@

# What bin/kube-lb runs: the compiled control plane in a few files, since
# loading hundreds of modules is most of a start where file access is slow
# (the test VM's shared root). The manifest parser is an entry of its own,
# as it runs in a worker thread; client-node stays out, loaded only with
# the API-server source. The banner gives the bundled CommonJS packages
# the require that ES modules lack.
$(BUNDLE): $(TS_STAMP)
	rm -rf dist/bundle
	node_modules/.bin/esbuild dist/src/cli.js dist/src/sources/manifest-parser.js \
		--bundle --platform=node --format=esm --splitting --outdir=dist/bundle --entry-names='[name]' \
		--external:@kubernetes/client-node --log-level=warning \
		"--banner:js=import { createRequire as createBundleRequire } from 'node:module'; const require = createBundleRequire(import.meta.url);"

# Two test files at a time: a conformance row mostly waits on processes and
# the network, and each file's sandboxes, pins and cgroups have names of
# their own. bpffs is mounted first so that two files cannot both mount it.
test: build
	@mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
	$(NODE) --test --test-concurrency=2 --test-timeout=600000 'dist/test/**/*.test.js'
	$(MAKE) --no-print-directory test-vm

# Kernel-dependent tests on Debian's kernels in qemu VMs, two VMs at a time
# (test/vm/test-all lists the jobs): on Debian 12's own (6.1), the ipvs
# backend (the host kernel has no IPVS), the SCTP rows and the ebpf kernel
# matrix (programs through the verifier, TC and XDP, a subset of the ebpf
# conformance scenarios); on 5.10 and 6.12, the ebpf programs and one
# scenario (test/vm/README.md).
test-vm: build
	test/vm/test-all $(NODE) --test --test-concurrency=1 --test-timeout=900000

# The DaemonSet's image (docs/image.md): an OCI archive built from Debian's
# packages without a container daemon. The Debian layer holds what kube-lb
# executes or links at run time, and is rebuilt only when this list changes.
IMAGE := build/image/kube-lb.oci.tar
IMAGE_REF := kube-lb:$(shell sed -n 's/^  "version": "\(.*\)",$$/\1/p' package.json)
IMAGE_DEBIAN_LAYER := build/image/debian.tar
IMAGE_DEBIAN_PACKAGES := libbpf1 libelf1 zlib1g libmnl0 libstdc++6 iproute2 iptables nftables ipset conntrack kmod mount bpftool
IMAGE_DEBIAN_SOURCES := "deb http://deb.debian.org/debian bookworm main" \
	"deb http://deb.debian.org/debian bookworm-updates main" \
	"deb http://deb.debian.org/debian-security bookworm-security main"
comma := ,
empty :=
space := $(empty) $(empty)

image: $(IMAGE)

# Rewritten only when the list or the sources change, which rebuilds the layer.
$(IMAGE_DEBIAN_LAYER).inputs: FORCE
	@mkdir -p $(dir $@)
	@echo '$(IMAGE_DEBIAN_PACKAGES) $(IMAGE_DEBIAN_SOURCES)' | cmp -s - $@ 2>/dev/null || echo '$(IMAGE_DEBIAN_PACKAGES) $(IMAGE_DEBIAN_SOURCES)' >$@

$(IMAGE_DEBIAN_LAYER): $(IMAGE_DEBIAN_LAYER).inputs | apt $(ADDON)
	@mkdir -p $(dir $@)
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct) mmdebstrap --quiet --mode=root --variant=essential --format=tar \
		--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
		--include=$(subst $(space),$(comma),$(IMAGE_DEBIAN_PACKAGES)) \
		--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
		--dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
		--dpkgopt='path-include=/usr/share/doc/*/copyright' \
		bookworm $@.tmp $(IMAGE_DEBIAN_SOURCES)
	mv $@.tmp $@

$(IMAGE): $(IMAGE_DEBIAN_LAYER) $(ADDON) build/bpf/kube_lb.bpf.o build/bpf/kube_lb_xdp.bpf.o $(BUNDLE) package-lock.json bin/kube-lb deploy/image/build
	deploy/image/build $(IMAGE_DEBIAN_LAYER) $(IMAGE_REF) $@

# The image run as the DaemonSet runs it, against the sandbox node (test/image/).
test-image: build image
	@start=$$(date +%s); \
	$(NODE) --test --test-concurrency=1 --test-timeout=600000 dist/test/image/*.image-test.js; \
	status=$$?; echo "test-image: $$(( $$(date +%s) - start )) s"; exit $$status

# The backend capability table (src/backends/capabilities.ts) as Markdown, for the README.
readme-capabilities: build
	@$(NODE) --input-type=module -e "import { capabilityTableMarkdown } from './dist/src/backends/capabilities.js'; process.stdout.write(capabilityTableMarkdown());"

demo: build
	$(NODE) dist/demo/demo.js

# Every backend side by side (bench/results/); BENCH_ARGS=--quick for the
# under-5-minutes development run.
bench: build
	bin/kube-lb bench $(BENCH_ARGS)

# The same with ipvs, inside the test VM (KUBE_LB_VM_KERNEL picks the kernel,
# as for test/vm/run); under software emulation only the ratios between
# backends mean anything, and the report says so.
bench-vm: build
	KUBE_LB_TEST_SLOWDOWN=10 KUBE_LB_VM_WRITABLE=$(CURDIR)/bench/results test/vm/run bin/kube-lb bench --vm --quick $(BENCH_ARGS)

clean:
	rm -rf build dist
