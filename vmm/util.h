/* Small helpers shared by every layer except channel/ (which stands alone). */
#ifndef VMM_UTIL_H
#define VMM_UTIL_H

#include <stddef.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define ALIGN_UP(x, a) (((x) + ((a) - 1)) & ~((__typeof__(x))(a) - 1))
#define IS_ALIGNED(x, a) (((x) & ((a) - 1)) == 0)
#define WUR __attribute__((warn_unused_result))
#define PRINTF_FMT(f, a) __attribute__((format(printf, f, a)))

#define KiB (1024ULL)
#define MiB (1024ULL * KiB)
#define GiB (1024ULL * MiB)

/*
 * Little-endian guest structures. The host is x86_64, so the accessors are
 * plain loads and stores; the distinct names document the wire format and
 * keep a future big-endian port honest.
 */
typedef uint16_t le16;
typedef uint32_t le32;
typedef uint64_t le64;

static inline uint16_t le16_to_cpu(le16 v) { return v; }
static inline uint32_t le32_to_cpu(le32 v) { return v; }
static inline uint64_t le64_to_cpu(le64 v) { return v; }
static inline le16 cpu_to_le16(uint16_t v) { return v; }
static inline le32 cpu_to_le32(uint32_t v) { return v; }
static inline le64 cpu_to_le64(uint64_t v) { return v; }

/* Diagnostics go to stderr, prefixed so they stand out from the guest console. */
void vmm_log(const char *fmt, ...) PRINTF_FMT(1, 2);
void vmm_verbose(const char *fmt, ...) PRINTF_FMT(1, 2);
extern int vmm_verbosity;

#define pr_err(...) vmm_log(__VA_ARGS__)
#define pr_info(...) vmm_verbose(__VA_ARGS__)

/*
 * Rate-limited log for guest-triggered errors: a hostile guest must not be
 * able to flood the host's log. One line per call site per second at most.
 */
#define pr_guest_err(...)                                        \
	do {                                                     \
		static _Thread_local uint64_t last_ns_;          \
		if (log_ratelimit(&last_ns_))                    \
			vmm_log(__VA_ARGS__);                    \
	} while (0)
int log_ratelimit(uint64_t *last_ns);

uint64_t monotonic_ns(void);
/*
 * CLOCK_MONOTONIC as of the last scheduler tick: never ahead of
 * monotonic_ns(), behind it by at most a tick (1-10 ms), and read without a
 * system call or a clock device. For deadlines of seconds.
 */
uint64_t monotonic_coarse_ns(void);

/*
 * Read exactly len bytes at offset off of fd into buf, retrying short reads
 * and EINTR. Returns 0, -errno, or -EIO when the file ends first.
 */
int pread_full(int fd, void *buf, size_t len, uint64_t off) WUR;

/*
 * pthread_create() with a 1 MiB stack and a name (15 characters at most). The
 * default 8 MiB stack is 2 MiB-aligned often enough for transparent huge pages
 * to back its first touch with a whole 2 MiB page: 2 MiB of RSS per thread for
 * a few KiB of use. Below 2 MiB that cannot happen. Returns 0 or -errno.
 */
int vmm_thread_create(pthread_t *thread, void *(*fn)(void *), void *arg, const char *name) WUR;

#endif
