// SPDX-License-Identifier: MIT
/*
 * Shared-memory SPSC ring.  Publication order (producer):
 *   ops+1, busy=1, [wrap marker], payload, record header, tail (release), wake,
 *   busy=0
 * and (consumer):
 *   ops+1, busy=1, read record, copy payload, head (release), wake, busy=0.
 * The single tail/head store is the commit point of each side.
 */
#include "channel/ring.h"
#include "channel/notifier.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define RING_MAGIC       UINT64_C(0x31474e49524d4d56) /* "VMMRING1" */
#define RING_VERSION     1u
#define REC_MSG          0x4753454du /* "MESG" */
#define REC_WRAP         0x50415257u /* "WRAP" */
#define REC_HDR          8u
#define DEFAULT_SPIN_US  20
#define DEFAULT_STALL_MS 1000
#define WAIT_SLICE_MS    20
#define LOCK_PRODUCER    0
#define LOCK_CONSUMER    1

/* The shared header page.  Geometry is written once at create and checked
 * on open; the rest is one cache line per writer. */
struct ring_shared {
	uint64_t magic;
	uint32_t version;
	uint32_t hdr_size;
	uint64_t data_size;
	uint32_t max_msg;
	uint32_t wake;
	uint32_t geom_check;
	uint32_t reserved0;
	uint8_t pad0[24];

	/* written by the producer */
	_Atomic uint64_t tail;
	_Atomic uint32_t data_seq;  /* futex: bumped after each publish */
	_Atomic uint32_t prod_attached;
	_Atomic uint32_t prod_busy;
	_Atomic uint32_t prod_waiting; /* producer sleeps for space */
	_Atomic uint32_t prod_ops;     /* pushes begun: progress for stall checks */
	uint8_t pad1[36];

	/* written by the consumer */
	_Atomic uint64_t head;
	_Atomic uint32_t space_seq; /* futex: bumped after each consume */
	_Atomic uint32_t cons_attached;
	_Atomic uint32_t cons_busy;
	_Atomic uint32_t cons_waiting; /* consumer sleeps for data */
	_Atomic uint32_t cons_ops;     /* pops begun */
	uint8_t pad2[36];
};
_Static_assert(offsetof(struct ring_shared, tail) == 64, "producer line");
_Static_assert(offsetof(struct ring_shared, head) == 128, "consumer line");
_Static_assert(offsetof(struct ring_shared, prod_ops) == 88, "in the producer line's padding");
_Static_assert(offsetof(struct ring_shared, cons_ops) == 152, "in the consumer line's padding");
_Static_assert(sizeof(struct ring_shared) == 192, "header size");
_Static_assert(sizeof(struct ring_shared) <= RING_HDR_SIZE, "header fits its page");

struct rec_hdr {
	uint32_t len;
	uint32_t type;
};
_Static_assert(sizeof(struct rec_hdr) == REC_HDR, "record header");

struct ring {
	int fd; /* our own open file description: carries our OFD lock */
	enum ring_role role;
	struct ring_shared *sh;
	uint8_t *data;
	size_t map_len;
	uint64_t size, mask;
	uint32_t max_msg;
	enum ring_wake wake;
	struct notifier data_efd, space_efd;
	uint64_t pos;      /* our private tail (producer) or head (consumer) */
	bool broken;       /* saw corrupt shared state: -EPROTO from now on */
	int64_t spin_ns;
	int stall_ms;
	/* The peer busy in one operation, as our waits saw it: kept across
	 * calls, so short waits add up to the stall limit. */
	bool stall_watch;
	uint32_t stall_ops;   /* the peer's op count when first seen busy */
	int64_t stall_since;  /* ms */
};

/* ---- fail points (test builds only) ------------------------------------ */

#ifdef VMM_TESTING
const char *const ring_push_failpoints[] = {
	"push_begin",        /* busy set, nothing written */
	"push_after_wrap",   /* wrap marker written, not published */
	"push_after_payload",
	"push_after_header", /* record complete, not published */
	"push_after_publish",
	"push_after_wake",
	NULL,
};
const char *const ring_pop_failpoints[] = {
	"pop_begin",
	"pop_after_copy",    /* payload copied, head not advanced */
	"pop_after_advance",
	"pop_after_wake",
	NULL,
};

static const char *fp_name;
static enum ring_fp_action fp_action;

static bool fp_known(const char *name)
{
	for (int i = 0; ring_push_failpoints[i]; i++)
		if (!strcmp(ring_push_failpoints[i], name))
			return true;
	for (int i = 0; ring_pop_failpoints[i]; i++)
		if (!strcmp(ring_pop_failpoints[i], name))
			return true;
	return false;
}

int ring_failpoint_set(const char *name, enum ring_fp_action action)
{
	if (!name || action == RING_FP_OFF) {
		fp_name = NULL;
		fp_action = RING_FP_OFF;
		return 0;
	}
	if (!fp_known(name))
		return -ENOENT;
	fp_name = name;
	fp_action = action;
	return 0;
}

static void failpoint(const char *name)
{
	if (!fp_name || strcmp(fp_name, name))
		return;
	raise(fp_action == RING_FP_KILL ? SIGKILL : SIGSTOP);
}
#define FAILPOINT(name) failpoint(name)
#else
#define FAILPOINT(name) do { } while (0)
#endif

/* ---- helpers --------------------------------------------------------------- */

static uint32_t geom_checksum(const struct ring_shared *s)
{
	/* FNV-1a over the geometry fields. */
	uint64_t words[5] = { s->version, s->hdr_size, s->data_size, s->max_msg, s->wake };
	const uint8_t *p = (const uint8_t *)words;
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < sizeof(words); i++) {
		h ^= p[i];
		h *= 16777619u;
	}
	return h;
}

static bool size_ok(uint64_t size)
{
	return size >= RING_MIN_SIZE && size <= RING_MAX_SIZE && !(size & (size - 1));
}

static uint32_t max_msg_for(uint64_t size)
{
	return (uint32_t)(size / 2 - REC_HDR);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static void futex_wait(_Atomic uint32_t *word, uint32_t val, int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	/* Shared mapping across processes: not FUTEX_PRIVATE. */
	syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, val, &ts, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *word)
{
	syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* ---- create ---------------------------------------------------------------- */

static int init_shared(int fd, uint64_t size, enum ring_wake wake)
{
	struct ring_shared *s;

	if (ftruncate(fd, (off_t)(RING_HDR_SIZE + size)) < 0)
		return -errno;
	s = mmap(NULL, RING_HDR_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (s == MAP_FAILED)
		return -errno;
	memset(s, 0, RING_HDR_SIZE);
	s->version = RING_VERSION;
	s->hdr_size = RING_HDR_SIZE;
	s->data_size = size;
	s->max_msg = max_msg_for(size);
	s->wake = (uint32_t)wake;
	s->geom_check = geom_checksum(s);
	/* Magic last: a half-initialised ring is rejected on open. */
	atomic_thread_fence(memory_order_release);
	s->magic = RING_MAGIC;
	munmap(s, RING_HDR_SIZE);
	return 0;
}

static int check_create_args(size_t data_size, enum ring_wake wake)
{
	if (!size_ok(data_size))
		return -EINVAL;
	if (wake != RING_WAKE_FUTEX && wake != RING_WAKE_EVENTFD)
		return -EINVAL;
	return 0;
}

int ring_create_memfd(size_t data_size, enum ring_wake wake, int *fd_out)
{
	int fd, ret = check_create_args(data_size, wake);

	if (ret)
		return ret;
	fd = memfd_create("vmm-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	ret = init_shared(fd, data_size, wake);
	if (ret)
		goto err_close;
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		ret = -errno;
		goto err_close;
	}
	*fd_out = fd;
	return 0;

err_close:
	close(fd);
	return ret;
}

int ring_create_file(const char *path, size_t data_size, enum ring_wake wake)
{
	int fd, ret = check_create_args(data_size, wake);

	if (ret)
		return ret;
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	ret = init_shared(fd, data_size, wake);
	close(fd);
	if (ret)
		unlink(path);
	return ret;
}

/* ---- open ------------------------------------------------------------------ */

static int lock_byte(int fd, short type, int cmd, off_t byte, struct flock *out)
{
	struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1 };

	if (fcntl(fd, cmd, &fl) < 0)
		return -errno;
	if (out)
		*out = fl;
	return 0;
}

/* Validates the geometry read (copied) from the file against its size. */
static int check_geometry(const struct ring_shared *g, off_t file_size)
{
	if (g->magic != RING_MAGIC)
		return -EBADMSG;
	if (g->version != RING_VERSION)
		return -EPROTONOSUPPORT;
	if (g->hdr_size != RING_HDR_SIZE || !size_ok(g->data_size) ||
	    g->max_msg != max_msg_for(g->data_size) ||
	    (g->wake != RING_WAKE_FUTEX && g->wake != RING_WAKE_EVENTFD) ||
	    g->geom_check != geom_checksum(g))
		return -EBADMSG;
	if ((uint64_t)file_size != RING_HDR_SIZE + g->data_size)
		return -EBADMSG;
	return 0;
}

static int dup_efd(struct notifier *n, int fd)
{
	int d;
	int ret;

	n->fd = -1;
	if (fd < 0)
		return -EINVAL;
	d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (d < 0)
		return -errno;
	ret = notifier_adopt(n, d);
	if (ret)
		close(d);
	return ret;
}

/* Opens the ring on own_fd (consumed). */
static int ring_open_owned(int own_fd, enum ring_role role, const struct ring_opts *opts,
			   struct ring **out)
{
	struct ring_shared geom;
	struct stat st;
	struct ring *r;
	int ret, seals;
	uint64_t head, tail;

	if (role != RING_PRODUCER && role != RING_CONSUMER) {
		ret = -EINVAL;
		goto err_fd;
	}
	if (fstat(own_fd, &st) < 0) {
		ret = -errno;
		goto err_fd;
	}
	if (!S_ISREG(st.st_mode) || st.st_size < (off_t)RING_HDR_SIZE) {
		ret = -EBADMSG;
		goto err_fd;
	}
	/* A memfd must be sealed, so the peer cannot shrink it under us. */
	seals = fcntl(own_fd, F_GET_SEALS);
	if (seals >= 0 && !(seals & F_SEAL_SHRINK)) {
		ret = -EPERM;
		goto err_fd;
	}
	/* Copy the geometry once, then trust only the copy. */
	if (pread(own_fd, &geom, sizeof(geom), 0) != (ssize_t)sizeof(geom)) {
		ret = -EBADMSG;
		goto err_fd;
	}
	ret = check_geometry(&geom, st.st_size);
	if (ret)
		goto err_fd;

	r = calloc(1, sizeof(*r));
	if (!r) {
		ret = -ENOMEM;
		goto err_fd;
	}
	r->fd = own_fd;
	r->role = role;
	r->size = geom.data_size;
	r->mask = geom.data_size - 1;
	r->max_msg = geom.max_msg;
	r->wake = (enum ring_wake)geom.wake;
	r->spin_ns = (int64_t)(opts && opts->spin_us ? opts->spin_us : DEFAULT_SPIN_US) * 1000;
	r->stall_ms = opts && opts->stall_ms > 0 ? opts->stall_ms : DEFAULT_STALL_MS;
	r->data_efd.fd = r->space_efd.fd = -1;
	if (r->wake == RING_WAKE_EVENTFD) {
		if (!opts) {
			ret = -EINVAL;
			goto err_free;
		}
		ret = dup_efd(&r->data_efd, opts->data_efd);
		if (!ret)
			ret = dup_efd(&r->space_efd, opts->space_efd);
		if (ret)
			goto err_efd;
	}
	r->map_len = RING_HDR_SIZE + r->size;
	r->sh = mmap(NULL, r->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, own_fd, 0);
	if (r->sh == MAP_FAILED) {
		ret = -errno;
		goto err_efd;
	}
	r->data = (uint8_t *)r->sh + RING_HDR_SIZE;

	/* One live holder per role: the lock dies with its process. */
	ret = lock_byte(own_fd, F_WRLCK, F_OFD_SETLK,
			role == RING_PRODUCER ? LOCK_PRODUCER : LOCK_CONSUMER, NULL);
	if (ret) {
		ret = (ret == -EAGAIN || ret == -EACCES) ? -EBUSY : ret;
		goto err_unmap;
	}
	head = atomic_load_explicit(&r->sh->head, memory_order_acquire);
	tail = atomic_load_explicit(&r->sh->tail, memory_order_acquire);
	if (tail - head > r->size || (head | tail) % REC_HDR) {
		ret = -EPROTO;
		goto err_unmap; /* closing the fd drops the lock */
	}
	/* Recover from a predecessor that died mid-operation: its half-written
	 * record lies beyond tail (or before head) and is simply ignored. */
	if (role == RING_PRODUCER) {
		r->pos = tail;
		atomic_store(&r->sh->prod_busy, 0);
		atomic_store(&r->sh->prod_waiting, 0);
		atomic_store(&r->sh->prod_attached, 1);
	} else {
		r->pos = head;
		atomic_store(&r->sh->cons_busy, 0);
		atomic_store(&r->sh->cons_waiting, 0);
		atomic_store(&r->sh->cons_attached, 1);
	}
	*out = r;
	return 0;

err_unmap:
	munmap(r->sh, r->map_len);
err_efd:
	notifier_destroy(&r->data_efd);
	notifier_destroy(&r->space_efd);
err_free:
	free(r);
err_fd:
	close(own_fd);
	return ret;
}

int ring_open(int fd, enum ring_role role, const struct ring_opts *opts, struct ring **out)
{
	char path[64];
	int own;

	if (fd < 0 || !out)
		return -EINVAL;
	/* A file description of our own, so our OFD lock is ours alone. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	own = open(path, O_RDWR | O_CLOEXEC);
	if (own < 0)
		return -errno;
	return ring_open_owned(own, role, opts, out);
}

int ring_open_path(const char *path, enum ring_role role, const struct ring_opts *opts,
		   struct ring **out)
{
	int fd;

	if (!path || !out)
		return -EINVAL;
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	return ring_open_owned(fd, role, opts, out);
}

void ring_close(struct ring *r)
{
	if (!r)
		return;
	/* Detach before the lock goes, so the peer never mistakes a clean
	 * close for a death. */
	if (r->role == RING_PRODUCER)
		atomic_store(&r->sh->prod_attached, 0);
	else
		atomic_store(&r->sh->cons_attached, 0);
	/* Wake a peer sleeping on us so it notices. */
	if (r->wake == RING_WAKE_FUTEX) {
		atomic_fetch_add(r->role == RING_PRODUCER ? &r->sh->data_seq : &r->sh->space_seq, 1);
		futex_wake(r->role == RING_PRODUCER ? &r->sh->data_seq : &r->sh->space_seq);
	} else {
		(void)notifier_signal(r->role == RING_PRODUCER ? &r->data_efd : &r->space_efd);
	}
	munmap(r->sh, r->map_len);
	close(r->fd);
	notifier_destroy(&r->data_efd);
	notifier_destroy(&r->space_efd);
	free(r);
}

size_t ring_max_msg(const struct ring *r)
{
	return r->max_msg;
}

enum ring_peer ring_peer_state(const struct ring *r)
{
	const struct ring_shared *s = r->sh;
	_Atomic uint32_t *att = r->role == RING_PRODUCER ? (_Atomic uint32_t *)&s->cons_attached
							 : (_Atomic uint32_t *)&s->prod_attached;
	struct flock fl = { .l_type = F_WRLCK };

	if (!atomic_load(att))
		return RING_PEER_ABSENT;
	if (lock_byte(r->fd, F_WRLCK, F_OFD_GETLK,
		      r->role == RING_PRODUCER ? LOCK_CONSUMER : LOCK_PRODUCER, &fl) < 0)
		return RING_PEER_ALIVE; /* cannot tell: assume alive */
	if (fl.l_type != F_UNLCK)
		return RING_PEER_ALIVE;
	/* Unlocked: dead, unless it detached cleanly meanwhile. */
	return atomic_load(att) ? RING_PEER_DEAD : RING_PEER_ABSENT;
}

/* ---- readiness --------------------------------------------------------------- */

/* Bytes needed to push a len-byte message at tail t (with a wrap if the
 * record does not fit before the end). */
static uint64_t push_need(const struct ring *r, uint64_t t, size_t len, bool *wrap)
{
	uint64_t rec = REC_HDR + ((len + 7) & ~(uint64_t)7);
	uint64_t contig = r->size - (t & r->mask);

	*wrap = rec > contig;
	return *wrap ? contig + rec : rec;
}

/* Producer: 1 if need bytes are free, 0 if not, -EPROTO if head is bogus. */
static int space_ready(struct ring *r, uint64_t need)
{
	uint64_t h = atomic_load_explicit(&r->sh->head, memory_order_acquire);
	uint64_t used = r->pos - h;

	if (used > r->size || h % REC_HDR) {
		r->broken = true;
		return -EPROTO;
	}
	return r->size - used >= need;
}

/* Consumer: 1 if something is published, -EPROTO if tail is bogus. */
static int data_ready(struct ring *r)
{
	uint64_t t = atomic_load_explicit(&r->sh->tail, memory_order_acquire);
	uint64_t avail = t - r->pos;

	if (avail > r->size || t % REC_HDR) {
		r->broken = true;
		return -EPROTO;
	}
	return avail != 0;
}

static int check_ready(struct ring *r, uint64_t need)
{
	return r->role == RING_PRODUCER ? space_ready(r, need) : data_ready(r);
}

/* Marks this side busy in a push/pop.  The op count tells a peer that sees
 * us busy twice whether it is the same operation, stuck, or a later one. */
static void busy_enter(struct ring *r)
{
	bool prod = r->role == RING_PRODUCER;
	_Atomic uint32_t *ops = prod ? &r->sh->prod_ops : &r->sh->cons_ops;

	/* Only this side writes ops: no read-modify-write needed. */
	atomic_store_explicit(ops, atomic_load_explicit(ops, memory_order_relaxed) + 1,
			      memory_order_relaxed);
	/* Release: a peer that sees this busy also sees the new count. */
	atomic_store_explicit(prod ? &r->sh->prod_busy : &r->sh->cons_busy, 1,
			      memory_order_release);
}

static void busy_leave(struct ring *r)
{
	atomic_store_explicit(r->role == RING_PRODUCER ? &r->sh->prod_busy : &r->sh->cons_busy,
			      0, memory_order_relaxed);
}

/* True once the peer has been busy in one and the same operation for
 * stall_ms, counted from the first of our waits (in this call or an earlier
 * one) that saw it so. */
static bool peer_stalled(struct ring *r, int64_t now)
{
	bool prod = r->role == RING_PRODUCER;
	struct ring_shared *s = r->sh;
	/* busy first (acquire), then the count it was set with, or a later one. */
	uint32_t busy = atomic_load_explicit(prod ? &s->cons_busy : &s->prod_busy,
					     memory_order_acquire);
	uint32_t ops = atomic_load_explicit(prod ? &s->cons_ops : &s->prod_ops,
					    memory_order_relaxed);

	if (!busy) {
		r->stall_watch = false;
		return false;
	}
	if (!r->stall_watch || ops != r->stall_ops) {
		r->stall_watch = true;
		r->stall_ops = ops;
		r->stall_since = now;
		return false;
	}
	return now - r->stall_since >= r->stall_ms;
}

/* Waits until check_ready (or an error).  deadline -1: forever. */
static int wait_ready(struct ring *r, uint64_t need, int64_t deadline)
{
	bool prod = r->role == RING_PRODUCER;
	struct ring_shared *s = r->sh;
	_Atomic uint32_t *waiting = prod ? &s->prod_waiting : &s->cons_waiting;
	_Atomic uint32_t *seqw = prod ? &s->space_seq : &s->data_seq;
	struct notifier *efd = prod ? &r->space_efd : &r->data_efd;
	int ret;

	if (r->spin_ns > 0) {
		int64_t spin_end = now_ns() + r->spin_ns;

		do {
			for (int i = 0; i < 32; i++) {
				ret = check_ready(r, need);
				if (ret)
					return ret < 0 ? ret : 0;
				cpu_relax();
			}
		} while (now_ns() < spin_end);
	}
	for (;;) {
		uint32_t seq = atomic_load(seqw);
		int slice = WAIT_SLICE_MS;
		int64_t now;

		/* Announce the sleep, then re-check (pairs with the peer's
		 * publish, fence, load of our waiting flag). */
		atomic_store(waiting, 1);
		atomic_thread_fence(memory_order_seq_cst);
		ret = check_ready(r, need);
		if (ret) {
			atomic_store(waiting, 0);
			return ret < 0 ? ret : 0;
		}
		if (deadline >= 0) {
			int64_t rem = deadline - now_ms();

			if (rem < slice)
				slice = rem > 0 ? (int)rem : 0;
		}
		if (slice > 0) {
			if (r->wake == RING_WAKE_FUTEX) {
				futex_wait(seqw, seq, slice);
			} else {
				struct pollfd pfd = { .fd = notifier_fd(efd), .events = POLLIN };

				(void)poll(&pfd, 1, slice);
				(void)notifier_reset(efd);
			}
		}
		ret = check_ready(r, need);
		if (ret) {
			atomic_store(waiting, 0);
			return ret < 0 ? ret : 0;
		}
		/* Nothing yet: is the peer there, alive, moving? */
		switch (ring_peer_state(r)) {
		case RING_PEER_ABSENT:
			atomic_store(waiting, 0);
			return -EPIPE;
		case RING_PEER_DEAD:
			atomic_store(waiting, 0);
			return -EOWNERDEAD;
		case RING_PEER_ALIVE:
			break;
		}
		now = now_ms();
		if (peer_stalled(r, now)) {
			atomic_store(waiting, 0);
			return -EDEADLK;
		}
		if (deadline >= 0 && now >= deadline) {
			atomic_store(waiting, 0);
			return -ETIMEDOUT;
		}
	}
}

/* Wakes the peer if it announced a sleep (after our commit store). */
static void wake_peer(struct ring *r)
{
	bool prod = r->role == RING_PRODUCER;
	struct ring_shared *s = r->sh;
	_Atomic uint32_t *peer_waiting = prod ? &s->cons_waiting : &s->prod_waiting;
	_Atomic uint32_t *seqw = prod ? &s->data_seq : &s->space_seq;

	/* Commit store before reading the peer's flag (Dekker with wait_ready). */
	atomic_thread_fence(memory_order_seq_cst);
	if (r->wake == RING_WAKE_FUTEX) {
		atomic_fetch_add(seqw, 1);
		if (atomic_load(peer_waiting) && atomic_exchange(peer_waiting, 0))
			futex_wake(seqw);
	} else if (atomic_load(peer_waiting) && atomic_exchange(peer_waiting, 0)) {
		(void)notifier_signal(prod ? &r->data_efd : &r->space_efd);
	}
}

static int64_t deadline_of(int timeout_ms)
{
	return timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
}

/* ---- push / pop ------------------------------------------------------------- */

int ring_push(struct ring *r, const void *msg, size_t len, int timeout_ms)
{
	struct ring_shared *s = r->sh;
	struct rec_hdr rec = { .len = (uint32_t)len, .type = REC_MSG };
	uint64_t need, off;
	bool wrap;
	int ret;

	if (r->role != RING_PRODUCER || (!msg && len) || timeout_ms < -1)
		return -EINVAL;
	if (r->broken)
		return -EPROTO;
	if (len > r->max_msg)
		return -EMSGSIZE;
	need = push_need(r, r->pos, len, &wrap);
	ret = space_ready(r, need);
	if (ret < 0)
		return ret;
	if (!ret) {
		if (timeout_ms == 0)
			return -EAGAIN;
		ret = wait_ready(r, need, deadline_of(timeout_ms));
		if (ret)
			return ret;
	}
	busy_enter(r);
	FAILPOINT("push_begin");
	off = r->pos & r->mask;
	if (wrap) {
		struct rec_hdr w = { .len = 0, .type = REC_WRAP };

		memcpy(r->data + off, &w, sizeof(w));
		FAILPOINT("push_after_wrap");
		off = 0;
	}
	if (len)
		memcpy(r->data + off + REC_HDR, msg, len);
	FAILPOINT("push_after_payload");
	memcpy(r->data + off, &rec, sizeof(rec));
	FAILPOINT("push_after_header");
	/* Commit point: the record (and wrap marker) become visible at once. */
	r->pos += need;
	atomic_store_explicit(&s->tail, r->pos, memory_order_release);
	FAILPOINT("push_after_publish");
	wake_peer(r);
	FAILPOINT("push_after_wake");
	busy_leave(r);
	return 0;
}

ssize_t ring_pop(struct ring *r, void *buf, size_t len, int timeout_ms)
{
	struct ring_shared *s = r->sh;
	struct rec_hdr rec;
	uint64_t h, t, off, avail, rs;
	int ret;

	if (r->role != RING_CONSUMER || (!buf && len) || timeout_ms < -1)
		return -EINVAL;
	if (r->broken)
		return -EPROTO;
	ret = data_ready(r);
	if (ret < 0)
		return ret;
	if (!ret) {
		if (timeout_ms == 0)
			return -EAGAIN;
		ret = wait_ready(r, 0, deadline_of(timeout_ms));
		if (ret)
			return ret;
	}
	busy_enter(r);
	FAILPOINT("pop_begin");
	h = r->pos;
	t = atomic_load_explicit(&s->tail, memory_order_acquire);
	for (;;) {
		avail = t - h;
		if (avail > r->size || t % REC_HDR)
			goto corrupt;
		if (avail == 0) {
			/* Only a wrap marker was published (a foreign producer):
			 * remember the skip and report empty. */
			r->pos = h;
			atomic_store_explicit(&s->head, h, memory_order_release);
			busy_leave(r);
			return -EAGAIN;
		}
		off = h & r->mask;
		/* Copy the record header out once; the peer may change it. */
		memcpy(&rec, r->data + off, sizeof(rec));
		if (rec.type == REC_WRAP) {
			uint64_t skip = r->size - off;

			if (skip > avail || off == 0)
				goto corrupt;
			h += skip;
			continue;
		}
		if (rec.type != REC_MSG || rec.len > r->max_msg)
			goto corrupt;
		rs = REC_HDR + (((uint64_t)rec.len + 7) & ~(uint64_t)7);
		if (rs > avail || off + rs > r->size)
			goto corrupt;
		break;
	}
	if (rec.len > len) {
		busy_leave(r);
		return -EMSGSIZE;
	}
	if (rec.len)
		memcpy(buf, r->data + off + REC_HDR, rec.len);
	FAILPOINT("pop_after_copy");
	/* Commit point: the record's space goes back to the producer. */
	r->pos = h + rs;
	atomic_store_explicit(&s->head, r->pos, memory_order_release);
	FAILPOINT("pop_after_advance");
	wake_peer(r);
	FAILPOINT("pop_after_wake");
	busy_leave(r);
	return (ssize_t)rec.len;

corrupt:
	r->broken = true;
	busy_leave(r);
	return -EPROTO;
}

/* ---- event-loop integration ------------------------------------------------ */

int ring_poll_fd(const struct ring *r)
{
	if (r->wake != RING_WAKE_EVENTFD)
		return -EOPNOTSUPP;
	return notifier_fd(r->role == RING_PRODUCER ? &r->space_efd : &r->data_efd);
}

int ring_wait_prepare(struct ring *r)
{
	bool prod = r->role == RING_PRODUCER;
	_Atomic uint32_t *waiting = prod ? &r->sh->prod_waiting : &r->sh->cons_waiting;
	bool wrap;
	int ret;

	if (r->wake != RING_WAKE_EVENTFD)
		return -EOPNOTSUPP;
	if (r->broken)
		return -EPROTO;
	(void)notifier_reset(prod ? &r->space_efd : &r->data_efd);
	atomic_store(waiting, 1);
	atomic_thread_fence(memory_order_seq_cst);
	ret = check_ready(r, prod ? push_need(r, r->pos, r->max_msg, &wrap) : 0);
	if (ret)
		atomic_store(waiting, 0);
	return ret;
}
