# aiproxy build. `make` builds build/aiproxyd and build/aiproxyctl;
# `make BUILD=build-asan SAN=1` builds the same under ASan+UBSan;
# `make test` runs the whole suite (scripts/test.sh does the set-up first).

CC      ?= cc
BUILD   ?= build
SAN     ?= 0

PKGS    := libevent_core libevent_extra libevent_openssl libevent_pthreads openssl \
           yaml-0.1 sqlite3 jansson yajl hiredis libnghttp2 libprotobuf-c
# libpq's headers only: the library is loaded when a PostgreSQL ledger is
# configured (src/budget/pq_dl.h), not by every process
CFLAGS  := -std=c17 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
           -g -Isrc -I$(BUILD)/gen $(shell pkg-config --cflags $(PKGS) libpq libgit2) -pthread -MMD -MP
# libgit2: aiproxyctl links it (the watcher's ignore rules); aiproxyd loads
# it on its first context diff (src/context/git_dl.h)
GIT_LIBS := $(shell pkg-config --libs libgit2)
LDLIBS  := $(shell pkg-config --libs $(PKGS)) -lhttp_parser -lm -pthread -ldl

ifeq ($(SAN),1)
CFLAGS  += -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
else
CFLAGS  += -O2
endif

ENTRY   := src/aiproxyd.c src/aiproxyctl.c
LIB_SRC := $(filter-out $(ENTRY),$(shell find src -name '*.c' | sort))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
# The dashboard's files, embedded into the binary as C arrays.
ASSETS  := assets/dashboard/index.html assets/dashboard/login.html assets/dashboard/app.js \
           assets/dashboard/app.css
# The gRPC service's messages: C generated from proto/ by protoc-c at
# build time (scripts/proto-c.sh), into $(BUILD)/gen.
PROTOS  := proto/aiproxy/v1/gateway.proto proto/grpc/health/v1/health.proto
PB_C    := $(PROTOS:proto/%.proto=$(BUILD)/gen/%.pb-c.c)
PB_H    := $(PB_C:.c=.h)
GEN_OBJ := $(BUILD)/gen/dashboard_assets.o $(PB_C:.c=.o)
UNIT_SRC := $(wildcard tests/unit/*_test.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

all: $(BUILD)/aiproxyd $(BUILD)/aiproxyctl

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# Every object may include a generated header: they come first.
$(LIB_OBJ) $(BUILD)/src/aiproxyd.o $(BUILD)/src/aiproxyctl.o $(UNIT_SRC:%.c=$(BUILD)/%.o): | $(PB_H)

$(BUILD)/gen/%.pb-c.c $(BUILD)/gen/%.pb-c.h: proto/%.proto scripts/proto-c.sh
	sh scripts/proto-c.sh $< $(BUILD)/gen

.SECONDARY: $(PB_C) $(PB_H)

$(BUILD)/gen/%.pb-c.o: $(BUILD)/gen/%.pb-c.c
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/gen/dashboard_assets.c: $(ASSETS) scripts/embed-assets.sh
	@mkdir -p $(dir $@)
	sh scripts/embed-assets.sh $@ $(ASSETS)

$(BUILD)/gen/dashboard_assets.o: $(BUILD)/gen/dashboard_assets.c
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libaiproxy.a: $(LIB_OBJ) $(GEN_OBJ)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/aiproxyd: $(BUILD)/src/aiproxyd.o $(BUILD)/libaiproxy.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/aiproxyctl: $(BUILD)/src/aiproxyctl.o $(BUILD)/libaiproxy.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(GIT_LIBS)

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(BUILD)/libaiproxy.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(GIT_LIBS) $(shell pkg-config --libs cmocka libpq)

unit: $(UNIT_BIN)

test: all unit
	scripts/run-tests.sh $(BUILD)

clean:
	rm -rf build build-asan build-fuzz

.PHONY: all unit test clean
-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
