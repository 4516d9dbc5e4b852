# vmm: a small, fast virtual machine monitor for x86_64 Linux hosts with KVM.
#
#   make            build ./build/vmm
#   make run        set up, build the guest images and boot a Linux guest to a shell
#   make test       set up, build, run every test; ends with "N passed, N failed"
#   make bench      benchmarks, side by side with their references
#
# Sources are found by wildcard: drop a .c file in a layer's folder and it is
# built; drop tests/unit/test_NAME.c and it becomes a unit test.

CC      ?= cc
V       ?= 0
# Quiet by default: one short line per step; `make V=1` shows the commands.
ifeq ($(V),0)
Q := @
say = @printf '  %-6s %s\n' $(1) $(2);
else
Q :=
say :=
endif
CLANG   ?= clang
BUILD   ?= build
NPROC   := $(shell nproc 2>/dev/null || echo 2)

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wno-missing-field-initializers
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -g -I. $(WARN) -MMD -MP -pthread
REL_CFLAGS  := $(BASE_CFLAGS) -O2
TEST_CFLAGS := $(BASE_CFLAGS) -O1 -DVMM_TESTING
SAN_FLAGS   := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
ASAN_CFLAGS := $(BASE_CFLAGS) -O1 -DVMM_TESTING $(SAN_FLAGS)
TSAN_CFLAGS := $(BASE_CFLAGS) -O1 -DVMM_TESTING -fsanitize=thread
FUZZ_CFLAGS := $(BASE_CFLAGS) -O1 -DVMM_TESTING -DVMM_FUZZING -fsanitize=fuzzer-no-link,address,undefined
# The API socket: libevent's evhttp (extra before core: it uses core), json-c, and
# http-parser for `vmm ctl`'s responses (libevent 2.1's client cannot use a Unix socket).
# libfdt: the snapshot state file is a flattened device tree (vmm/snapshot/format.h).
LIBS        := -pthread -luring -levent_extra -levent_core -ljson-c -lhttp_parser -lfdt
# vmm is one static binary: it runs on any x86_64 Linux host without its
# libraries, and starts faster (no dynamic loading; tens of ms in an emulated host).
VMM_LDFLAGS ?= -static-pie

CHANNEL_SRCS := $(wildcard channel/*.c)
# One level of subfolders too (devices/vsock/, virtio/vhost_user/, vmm/api/, ...).
CORE_SRCS    := $(filter-out vmm/main.c smoke/main.c,$(wildcard vmm/*.c vmm/*/*.c arch/x86_64/*.c \
                devices/*.c devices/*/*.c virtio/*.c virtio/*/*.c smoke/*.c))
UNIT_SRCS    := $(wildcard tests/unit/test_*.c)
UNIT_NAMES   := $(UNIT_SRCS:tests/unit/%.c=%)
FUZZ_SRCS    := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_NAMES   := $(FUZZ_SRCS:tests/fuzz/%.c=%)
BENCH_SRCS   := $(wildcard bench/*.c)

.PHONY: all setup run test unit unit-plain unit-asan tsan fuzz fuzz-smoke guest-images \
        boot-tests bench clean
all: $(BUILD)/vmm $(BUILD)/vmm-smoke

# --- one static library pair per build variant --------------------------------
# $(call variant,NAME,CC,CFLAGS)
define variant
$(BUILD)/$(1)/%.o: %.c
	@mkdir -p $$(@D)
	$$(call say,CC,$(1)/$$<)$(2) $(3) -c $$< -o $$@
$(BUILD)/$(1)/libchannel.a: $(CHANNEL_SRCS:%.c=$(BUILD)/$(1)/%.o)
	@rm -f $$@
	$$(call say,AR,$$@)ar rcs $$@ $$^
$(BUILD)/$(1)/libcore.a: $(CORE_SRCS:%.c=$(BUILD)/$(1)/%.o)
	@rm -f $$@
	$$(call say,AR,$$@)ar rcs $$@ $$^
-include $(shell find $(BUILD)/$(1) -name '*.d' 2>/dev/null)
endef
$(eval $(call variant,rel,$(CC),$(REL_CFLAGS)))
$(eval $(call variant,test,$(CC),$(TEST_CFLAGS)))
$(eval $(call variant,asan,$(CC),$(ASAN_CFLAGS)))
$(eval $(call variant,tsan,$(CC),$(TSAN_CFLAGS)))
$(eval $(call variant,fuzz,$(CLANG),$(FUZZ_CFLAGS)))

$(BUILD)/vmm: $(BUILD)/rel/vmm/main.o $(BUILD)/rel/libcore.a $(BUILD)/rel/libchannel.a
	$(call say,LD,$@)$(CC) $(REL_CFLAGS) $(VMM_LDFLAGS) -o $@ $^ $(LIBS)

# vmm-smoke finds the guest-image sources it builds its initramfs from here.
$(BUILD)/rel/smoke/main.o: smoke/main.c
	@mkdir -p $(@D)
	$(call say,CC,rel/$<)$(CC) $(REL_CFLAGS) -DSMOKE_REPO='"$(abspath .)"' -c $< -o $@
$(BUILD)/vmm-smoke: $(BUILD)/rel/smoke/main.o $(BUILD)/rel/libcore.a
	$(call say,LD,$@)$(CC) $(REL_CFLAGS) $(VMM_LDFLAGS) -o $@ $^

# --- unit tests: plain and under ASan+UBSan -----------------------------------
# channel/ stands alone, so its tests link only libchannel.
$(BUILD)/test/bin/test_channel%: $(BUILD)/test/tests/unit/test_channel%.o $(BUILD)/test/libchannel.a
	@mkdir -p $(@D)
	$(call say,LD,$@)$(CC) $(TEST_CFLAGS) -o $@ $^ -lcmocka $(LIBS)
$(BUILD)/asan/bin/test_channel%: $(BUILD)/asan/tests/unit/test_channel%.o $(BUILD)/asan/libchannel.a
	@mkdir -p $(@D)
	$(call say,LD,$@)$(CC) $(ASAN_CFLAGS) -o $@ $^ -lcmocka $(LIBS)
$(BUILD)/tsan/bin/test_channel%: $(BUILD)/tsan/tests/unit/test_channel%.o $(BUILD)/tsan/libchannel.a
	@mkdir -p $(@D)
	$(call say,LD,$@)$(CC) $(TSAN_CFLAGS) -o $@ $^ -lcmocka $(LIBS)
$(BUILD)/test/bin/%: $(BUILD)/test/tests/unit/%.o $(BUILD)/test/libcore.a $(BUILD)/test/libchannel.a
	@mkdir -p $(@D)
	$(call say,LD,$@)$(CC) $(TEST_CFLAGS) -o $@ $^ -lcmocka $(LIBS)
$(BUILD)/asan/bin/%: $(BUILD)/asan/tests/unit/%.o $(BUILD)/asan/libcore.a $(BUILD)/asan/libchannel.a
	@mkdir -p $(@D)
	$(call say,LD,$@)$(CC) $(ASAN_CFLAGS) -o $@ $^ -lcmocka $(LIBS)
$(BUILD)/tsan/bin/%: $(BUILD)/tsan/tests/unit/%.o $(BUILD)/tsan/libcore.a $(BUILD)/tsan/libchannel.a
	@mkdir -p $(@D)
	$(call say,LD,$@)$(CC) $(TSAN_CFLAGS) -o $@ $^ -lcmocka $(LIBS)
$(BUILD)/fuzz/bin/%: $(BUILD)/fuzz/tests/fuzz/%.o $(BUILD)/fuzz/libcore.a $(BUILD)/fuzz/libchannel.a
	@mkdir -p $(@D)
	$(call say,LD,$@)$(CLANG) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $^ $(LIBS)

.PRECIOUS: $(BUILD)/%.o $(BUILD)/%.a
# Keep objects that are only intermediate to a test binary.
.SECONDARY:
unit-plain: $(UNIT_NAMES:%=$(BUILD)/test/bin/%)
unit-asan: $(UNIT_NAMES:%=$(BUILD)/asan/bin/%)
unit: unit-plain unit-asan
	tests/run-unit.sh $(BUILD)/test/bin $(BUILD)/asan/bin

# Thread tests once under ThreadSanitizer.
TSAN_TESTS ?= $(filter test_channel% test_virtio_blk test_virtio_net test_virtio_pci,$(UNIT_NAMES))
tsan: $(TSAN_TESTS:%=$(BUILD)/tsan/bin/%)
	tests/run-unit.sh $(BUILD)/tsan/bin

FUZZ_SECONDS ?= 10
fuzz: $(FUZZ_NAMES:%=$(BUILD)/fuzz/bin/%)
fuzz-smoke: fuzz
	tests/run-fuzz.sh $(FUZZ_SECONDS) $(FUZZ_NAMES:%=$(BUILD)/fuzz/bin/%)

# --- setup, guest images, running, tests -------------------------------------
setup:
	@scripts/setup.sh

guest-images: setup
	@$(MAKE) --no-print-directory -C guest-images BUILD=$(abspath $(BUILD))/guest

run: setup all guest-images
	@tests/nested/run-vmm.sh $(BUILD)/vmm --kernel $(BUILD)/guest/vmlinuz-generic \
		--initramfs $(BUILD)/guest/initramfs-generic.cpio.gz --cpus 2 --memory 1G $(RUN_ARGS)

boot-tests: all guest-images
	tests/boot/run.sh

test: setup
	@$(MAKE) --no-print-directory -j$(NPROC) all unit-plain unit-asan fuzz guest-images
	@tests/run-all.sh

$(BUILD)/bench/channel: $(BUILD)/rel/bench/channel.o $(BUILD)/rel/libchannel.a
	@mkdir -p $(@D)
	$(call say,LD,$@)$(CC) $(REL_CFLAGS) -o $@ $^ $(LIBS)

# bench/pause.c: the client side of bench/pause.sh (vmm's API and QEMU's QMP).
$(BUILD)/bench/pause: $(BUILD)/rel/bench/pause.o $(BUILD)/rel/libcore.a $(BUILD)/rel/libchannel.a
	@mkdir -p $(@D)
	$(call say,LD,$@)$(CC) $(REL_CFLAGS) -o $@ $^ $(LIBS)

bench: setup all guest-images $(BUILD)/bench/channel $(BUILD)/bench/pause
	BUILD=$(BUILD) bench/run.sh

clean:
	rm -rf $(BUILD)
