# The gateway: `make deps`, `make`, `make test`, `make run`, `make asan`, `make bench`.

BUILD    ?= build
CC       ?= cc
LLHTTP_SRC ?= /usr/share/llhttp
LLHTTP_INC ?= /usr/share/include/llhttp

PKGS     := libuv luajit libpcre2-8 yaml-0.1 openssl hiredis zlib libcares
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

OPT      ?= -O2 -g
SAN      ?=
CFLAGS_GW = -std=c11 -D_GNU_SOURCE $(OPT) $(SAN) -Wall -Wextra -Werror \
            -Wno-unused-parameter -Igateway -I$(LLHTTP_INC) $(PKG_CFLAGS)
LDLIBS_GW = $(SAN) $(PKG_LIBS) -lm

# Debian's packages the gateway and its tests need (DESIGN.md section 3),
# and, apart, what only the side-by-side benchmark needs: a user who runs or
# tests the gateway does not get haproxy. prometheus (about 100 MB) is
# there for promtool, which checks /metrics in t/53.
DEB_PKGS := build-essential pkg-config libuv1-dev node-llhttp libluajit2-5.1-dev \
            libhiredis-dev libc-ares-dev libssl-dev libyaml-dev libpcre2-dev lua-cjson luajit2 \
            lua-check redis-server etcd-server etcd-client golang-go golang-etcd-server-dev curl \
            perl libjson-pp-perl libio-socket-ssl-perl iproute2 util-linux procps zlib1g-dev \
            prometheus
BENCH_PKGS := nginx-extras haproxy wrk

SRCS     := $(filter-out gateway/gw_main.c,$(wildcard gateway/gw_*.c))
OBJS     := $(patsubst gateway/%.c,$(BUILD)/obj/%.o,$(SRCS))
LLHTTP_OBJS := $(BUILD)/obj/llhttp.o $(BUILD)/obj/llhttp_api.o $(BUILD)/obj/llhttp_http.o
UNIT_SRCS := $(wildcard t/unit/test_*.c)
UNIT_BINS := $(patsubst t/unit/%.c,$(BUILD)/unit/%,$(UNIT_SRCS))
.PHONY: all deps bench-deps test unit asan run bench fmt fmt-check lint clean pkgs-present \
        install uninstall

all: $(BUILD)/gateway $(UNIT_BINS)

# apt-get install of what is missing from PKGS (nothing when all are there).
define apt_install
	@missing=""; for p in $(1); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	    $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null && \
	    $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing </dev/null; \
	else echo "all $(2) dependencies present"; fi
endef

deps:
	$(call apt_install,$(DEB_PKGS),build and test)

bench-deps:
	$(call apt_install,$(BENCH_PKGS),benchmark)

$(BUILD)/obj/%.o: gateway/%.c gateway/*.h | $(BUILD)/obj
	$(CC) $(CFLAGS_GW) -c $< -o $@

# llhttp from Debian's sources, in strict mode: the loose default accepts
# known request-smuggling forms.
$(BUILD)/obj/llhttp.o: $(LLHTTP_SRC)/llhttp.c | $(BUILD)/obj
	$(CC) -std=c11 $(OPT) $(SAN) -DLLHTTP_STRICT_MODE=1 -I$(LLHTTP_INC) -c $< -o $@
$(BUILD)/obj/llhttp_api.o: $(LLHTTP_SRC)/api.c | $(BUILD)/obj
	$(CC) -std=c11 $(OPT) $(SAN) -DLLHTTP_STRICT_MODE=1 -I$(LLHTTP_INC) -c $< -o $@
$(BUILD)/obj/llhttp_http.o: $(LLHTTP_SRC)/http.c | $(BUILD)/obj
	$(CC) -std=c11 $(OPT) $(SAN) -DLLHTTP_STRICT_MODE=1 -I$(LLHTTP_INC) -c $< -o $@

$(BUILD)/libgw.a: $(OBJS) $(LLHTTP_OBJS)
	rm -f $@ && ar rcs $@ $^

# -Wl,-E: Lua plugins reach the gw_ffi_* functions through the FFI.
$(BUILD)/gateway: $(BUILD)/obj/gw_main.o $(BUILD)/libgw.a
	$(CC) -Wl,-E -o $@ $(BUILD)/obj/gw_main.o -Wl,--whole-archive $(BUILD)/libgw.a \
	    -Wl,--no-whole-archive $(LDLIBS_GW)

$(BUILD)/unit/%: t/unit/%.c t/unit/tap.h $(BUILD)/libgw.a | $(BUILD)/unit
	$(CC) $(CFLAGS_GW) -It/unit -o $@ $< $(BUILD)/libgw.a $(LDLIBS_GW)

$(BUILD)/obj $(BUILD)/unit: | pkgs-present
	mkdir -p $@

# An empty pkg-config answer would surface later as a wall of link errors.
pkgs-present:
	@pkg-config --exists $(PKGS) || { echo "missing libraries ($(PKGS)): run 'make deps'" >&2; exit 1; }

unit: $(UNIT_BINS)
	prove --exec '' $(UNIT_BINS)

# C unit tests, then the integration tests against build/gateway.
test: deps
	$(MAKE) all
	$(MAKE) lint
	prove --exec '' $(UNIT_BINS)
	GATEWAY_BIN=$(BUILD)/gateway prove -r t/

# The same tests on an AddressSanitizer + UndefinedBehaviorSanitizer build.
asan:
	GW_TEST_TIMEOUT_MULT=3 $(MAKE) BUILD=build/asan OPT="-O1 -g -fno-omit-frame-pointer" \
	    SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined" test

run: deps
	$(MAKE) all
	./conf/run-demo.sh

bench: bench-deps all
	bench/bench.sh

# luacheck over the Lua runtime and the plugins (.luacheckrc knows the
# sandbox's globals).
lint:
	luacheck -q lua/ plugins/ bench/plugins/ t/lua/

fmt:
	clang-format -i gateway/*.c gateway/*.h t/unit/*.c t/unit/*.h

fmt-check:
	clang-format --dry-run --Werror gateway/*.c gateway/*.h t/unit/*.c t/unit/*.h

clean:
	rm -rf build

# make install [PREFIX=/usr/local] [SYSCONFDIR=/etc] [DESTDIR=]: the binary
# in $(PREFIX)/lib/gateway/bin beside its lua/ and plugins/ (found from the
# binary's own path), a link in $(PREFIX)/bin, the systemd unit, the docs,
# and $(SYSCONFDIR)/gateway/gateway.yaml unless one exists
# (docs/operations.md).
PREFIX     ?= /usr/local
SYSCONFDIR ?= /etc
GW_HOME     = $(DESTDIR)$(PREFIX)/lib/gateway
UNIT_DIR    = $(DESTDIR)$(PREFIX)/lib/systemd/system
DOC_DIR     = $(DESTDIR)$(PREFIX)/share/doc/gateway

install: $(BUILD)/gateway
	install -d $(GW_HOME)/bin $(GW_HOME)/plugins $(DESTDIR)$(PREFIX)/bin $(UNIT_DIR) \
	    $(DOC_DIR)/examples $(DESTDIR)$(SYSCONFDIR)/gateway
	install -m 0755 $(BUILD)/gateway $(GW_HOME)/bin/gateway
	cd lua && find . -type f -name '*.lua' -exec install -D -m 0644 {} $(GW_HOME)/lua/{} \;
	install -m 0644 plugins/*.lua $(GW_HOME)/plugins/
	ln -sfn ../lib/gateway/bin/gateway $(DESTDIR)$(PREFIX)/bin/gateway
	sed -e 's#/usr/local/bin/gateway#$(PREFIX)/bin/gateway#g' \
	    -e 's#/usr/local/share/doc/gateway#$(PREFIX)/share/doc/gateway#g' \
	    -e 's#/etc/gateway/#$(SYSCONFDIR)/gateway/#g' conf/gateway.service \
	    > $(UNIT_DIR)/gateway.service
	chmod 0644 $(UNIT_DIR)/gateway.service
	install -m 0644 docs/*.md docs/grafana-dashboard.json $(DOC_DIR)/
	install -m 0644 conf/examples/*.yaml $(DOC_DIR)/examples/
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/gateway/gateway.yaml ]; then \
	    echo "kept $(DESTDIR)$(SYSCONFDIR)/gateway/gateway.yaml"; \
	else \
	    install -m 0640 conf/gateway-service.yaml $(DESTDIR)$(SYSCONFDIR)/gateway/gateway.yaml; \
	fi

# Leaves $(SYSCONFDIR)/gateway (the operator's config) and the logs.
uninstall:
	rm -rf $(GW_HOME) $(DOC_DIR)
	rm -f $(DESTDIR)$(PREFIX)/bin/gateway $(UNIT_DIR)/gateway.service
