/*
 * Unit tests for virtio/vhost_user/frontend: a fake back-end on the other end
 * of a socketpair (a thread) answers like a libvhost-user back-end and
 * records what it was sent. The tests walk the whole set-up, a guest reset,
 * sleep and wake, a reconnect, the back-end request channel, and every way a
 * reply can be wrong: each must leave the connection in the failed state,
 * with no fd leaked and no wait beyond the timeout.
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "virtio/vhost_user/frontend.h"

#define TIMEOUT_MS 200
#define MAX_LOG    128

enum fault {
	F_NONE,
	F_WRONG_CODE,     /* reply carries another request code */
	F_BAD_SIZE,       /* payload 4 bytes short */
	F_EXTRA_FD,       /* an fd attached to a reply that has none */
	F_NO_REPLY_FLAG,  /* reply flag cleared */
	F_BAD_VERSION,
	F_SILENT,         /* no reply at all: the front-end times out */
	F_CLOSE,          /* the back-end closes the connection instead */
	F_NACK,           /* a well-formed failure */
	F_WRONG_INDEX,    /* GET_VRING_BASE names another ring */
	F_HUGE,           /* announces a payload above the limit */
	F_MANY_FDS,       /* more fds than any message may carry */
};

struct logged {
	uint32_t request, flags, size;
	uint8_t payload[64];
	unsigned nfds;
};

struct fake {
	int sock;
	pthread_t thread;
	uint64_t features, protocol;
	unsigned queue_num, mem_slots;
	uint32_t fault_request;      /* the request whose reply goes wrong (0: none) */
	enum fault fault;
	uint16_t last_avail[8];      /* what GET_VRING_BASE reports */
	int backend_req_fd;          /* the channel the front-end gave us */
	pthread_mutex_t lock;
	struct logged log[MAX_LOG];
	unsigned nlog;
};

static unsigned open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	unsigned n = 0;

	assert_non_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

/* Blocking read of exactly len bytes with any fds; 0, or -1 at EOF. */
static int fake_read(int s, uint8_t *buf, size_t len, int *fds, unsigned *nfds)
{
	size_t done = 0;

	while (done < len) {
		char ctl[CMSG_SPACE(sizeof(int) * 16)];
		struct iovec iov = { buf + done, len - done };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
				     .msg_controllen = sizeof(ctl) };
		ssize_t r = recvmsg(s, &mh, 0);

		if (r <= 0)
			return -1;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			unsigned n = (unsigned)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));

			memcpy(fds + *nfds, CMSG_DATA(c), n * sizeof(int));
			*nfds += n;
		}
		done += (size_t)r;
	}
	return 0;
}

static void fake_send(int s, uint32_t req, uint32_t flags, const void *p, uint32_t len,
		      const int *fds, unsigned nfds)
{
	uint8_t b[12 + 512];
	char ctl[CMSG_SPACE(sizeof(int) * 16)];
	struct iovec iov = { b, 12 + len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	memcpy(b, &req, 4);
	memcpy(b + 4, &flags, 4);
	memcpy(b + 8, &len, 4);
	memcpy(b + 12, p, len);
	if (nfds) {
		struct cmsghdr *c;

		memset(ctl, 0, sizeof(ctl));
		mh.msg_control = ctl;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	(void)sendmsg(s, &mh, MSG_NOSIGNAL);
}

/* Reply with payload p (len bytes), applying the scripted fault if this is its request. */
static bool fake_reply(struct fake *f, uint32_t req, const void *p, uint32_t len)
{
	uint32_t flags = VHU_FLAG_VERSION | VHU_FLAG_REPLY;
	uint8_t buf[512];
	enum fault fault = f->fault_request == req ? f->fault : F_NONE;
	int extra[VHU_MAX_FDS + 2] = { 0 };
	unsigned nextra = 0;

	memcpy(buf, p, len);
	switch (fault) {
	case F_WRONG_CODE:
		req = req == VHU_GET_FEATURES ? VHU_GET_PROTOCOL_FEATURES : VHU_GET_FEATURES;
		break;
	case F_BAD_SIZE:
		len = len >= 4 ? len - 4 : len + 4;
		break;
	case F_EXTRA_FD:
		extra[nextra++] = eventfd(0, EFD_CLOEXEC);
		break;
	case F_MANY_FDS:
		for (unsigned i = 0; i < VHU_MAX_FDS + 2; i++)
			extra[nextra++] = eventfd(0, EFD_CLOEXEC);
		break;
	case F_NO_REPLY_FLAG:
		flags = VHU_FLAG_VERSION;
		break;
	case F_BAD_VERSION:
		flags = 2 | VHU_FLAG_REPLY;
		break;
	case F_SILENT:
		return true;
	case F_CLOSE:
		return false;
	case F_NACK:
		memset(buf, 0, len);
		if (len == 8)
			buf[0] = 1;
		else
			len = 0;   /* GET_CONFIG's failure */
		break;
	case F_WRONG_INDEX:
		buf[0] ^= 1;
		break;
	case F_HUGE: {
		uint32_t h[3] = { req, flags, VHU_MAX_PAYLOAD + 100 };

		(void)!write(f->sock, h, sizeof(h));
		return true;
	}
	case F_NONE:
		break;
	}
	fake_send(f->sock, req, flags, buf, len, extra, nextra);
	for (unsigned i = 0; i < nextra; i++)
		close(extra[i]);
	return true;
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;

	for (;;) {
		uint8_t h[12], p[512];
		int fds[32];
		unsigned nfds = 0;
		uint32_t req, flags, size;
		uint64_t v = 0;
		bool need, ok = true;

		if (fake_read(f->sock, h, 12, fds, &nfds))
			break;
		req = rd32(h);
		flags = rd32(h + 4);
		size = rd32(h + 8);
		if (size > sizeof(p) || fake_read(f->sock, p, size, fds, &nfds))
			break;
		need = flags & VHU_FLAG_NEED_REPLY;
		pthread_mutex_lock(&f->lock);
		if (f->nlog < MAX_LOG) {
			struct logged *l = &f->log[f->nlog++];

			l->request = req;
			l->flags = flags;
			l->size = size;
			memcpy(l->payload, p, MIN(size, sizeof(l->payload)));
			l->nfds = nfds;
		}
		pthread_mutex_unlock(&f->lock);
		if (req == VHU_SET_BACKEND_REQ_FD && nfds == 1) {
			f->backend_req_fd = fds[0];
			nfds = 0;
		}
		for (unsigned i = 0; i < nfds; i++)
			close(fds[i]);

		switch (req) {
		case VHU_GET_FEATURES:
			ok = fake_reply(f, req, &f->features, 8);
			break;
		case VHU_GET_PROTOCOL_FEATURES:
			ok = fake_reply(f, req, &f->protocol, 8);
			break;
		case VHU_GET_QUEUE_NUM:
			v = f->queue_num;
			ok = fake_reply(f, req, &v, 8);
			break;
		case VHU_GET_MAX_MEM_SLOTS:
			v = f->mem_slots;
			ok = fake_reply(f, req, &v, 8);
			break;
		case VHU_GET_VRING_BASE: {
			uint32_t st[2] = { rd32(p), f->last_avail[rd32(p) & 7] };

			ok = fake_reply(f, req, st, 8);
			break;
		}
		case VHU_GET_CONFIG: {
			uint8_t c[12 + 256];
			uint32_t len = rd32(p + 4);

			memcpy(c, p, 12);
			for (unsigned i = 0; i < len && i < 256; i++)
				c[12 + i] = (uint8_t)(0xa0 + i);
			ok = fake_reply(f, req, c, 12 + len);
			break;
		}
		case VHU_SET_DEVICE_STATE_FD:
			v = VHU_STATE_NOFD;
			ok = fake_reply(f, req, &v, 8);
			break;
		case VHU_CHECK_DEVICE_STATE:
			v = 0;
			ok = fake_reply(f, req, &v, 8);
			break;
		default:
			if (need)
				ok = fake_reply(f, req, &v, 8);
			break;
		}
		if (!ok)
			break;
	}
	shutdown(f->sock, SHUT_RDWR);
	return NULL;
}

#define ALL_PROTOCOL (1ULL << VHU_PROTOCOL_F_MQ | 1ULL << VHU_PROTOCOL_F_REPLY_ACK | \
		      1ULL << VHU_PROTOCOL_F_BACKEND_REQ | 1ULL << VHU_PROTOCOL_F_CONFIG | \
		      1ULL << VHU_PROTOCOL_F_CONFIGURE_MEM_SLOTS | 1ULL << VHU_PROTOCOL_F_LOG_SHMFD | \
		      1ULL << VHU_PROTOCOL_F_DEVICE_STATE)
#define FEATURES (1ULL << VIRTIO_F_VERSION_1_BIT | 1ULL << VHU_F_PROTOCOL_FEATURES | 0x7ULL)
#define VIRTIO_F_VERSION_1_BIT 32

struct fx {
	struct fake fake;
	struct vhu_fe fe;
	unsigned fds_before;
	int kick, call, err, memfd;
};

static void fake_start(struct fx *x, uint64_t protocol)
{
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	x->fake.sock = sv[1];
	x->fake.features = FEATURES;
	x->fake.protocol = protocol;
	x->fake.queue_num = 4;
	x->fake.mem_slots = 32;
	x->fake.backend_req_fd = -1;
	x->fake.nlog = 0;
	x->fake.fault_request = 0;
	x->fake.fault = F_NONE;
	pthread_mutex_init(&x->fake.lock, NULL);
	assert_int_equal(pthread_create(&x->fake.thread, NULL, fake_main, &x->fake), 0);
	vhu_fe_init(&x->fe, "test0", sv[0], TIMEOUT_MS);
}

static void fake_stop(struct fx *x)
{
	vhu_fe_close(&x->fe);
	pthread_join(x->fake.thread, NULL);
	close(x->fake.sock);
	if (x->fake.backend_req_fd >= 0)
		close(x->fake.backend_req_fd);
	x->fake.backend_req_fd = -1;
	pthread_mutex_destroy(&x->fake.lock);
}

static int setup(void **state)
{
	struct fx *x = calloc(1, sizeof(*x));

	x->fds_before = open_fds();
	x->kick = eventfd(0, EFD_CLOEXEC);
	x->call = eventfd(0, EFD_CLOEXEC);
	x->err = eventfd(0, EFD_CLOEXEC);
	x->memfd = eventfd(0, EFD_CLOEXEC);  /* any fd will do: the fake never maps it */
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	struct fx *x = *state;

	close(x->kick);
	close(x->call);
	close(x->err);
	close(x->memfd);
	/* Every fd either side received or made is closed again. */
	assert_int_equal(open_fds(), x->fds_before);
	free(x);
	return 0;
}

/* The requests the fake saw from index `from` on must be exactly `want`. */
static void expect_log(struct fx *x, unsigned from, const uint32_t *want, unsigned n)
{
	/* Without REPLY_ACK nothing waits for the fake: give it a moment to catch up. */
	for (unsigned i = 0; i < 100; i++) {
		pthread_mutex_lock(&x->fake.lock);
		if (x->fake.nlog >= from + n) {
			pthread_mutex_unlock(&x->fake.lock);
			break;
		}
		pthread_mutex_unlock(&x->fake.lock);
		usleep(10000);
	}
	usleep(n ? 0 : 20000);   /* and nothing more comes after */
	pthread_mutex_lock(&x->fake.lock);
	if (x->fake.nlog - from != n) {
		for (unsigned i = from; i < x->fake.nlog; i++)
			print_message("  got %s\n", vhu_request_name(x->fake.log[i].request));
	}
	assert_int_equal(x->fake.nlog - from, n);
	for (unsigned i = 0; i < n; i++)
		assert_string_equal(vhu_request_name(x->fake.log[from + i].request),
				    vhu_request_name(want[i]));
	pthread_mutex_unlock(&x->fake.lock);
}

static struct logged *logged_at(struct fx *x, unsigned i)
{
	return &x->fake.log[i];
}

static struct vhu_fe_region region(struct fx *x)
{
	return (struct vhu_fe_region){ .gpa = 0, .size = 1 << 20, .hva = 0x7f0000000000,
				       .fd = x->memfd, .fd_offset = 0 };
}

static struct vhu_ring_cfg ring(struct fx *x, uint16_t base)
{
	return (struct vhu_ring_cfg){ .size = 256, .base = base, .desc = 0x7f0000001000,
				      .avail = 0x7f0000002000, .used = 0x7f0000003000,
				      .kick_fd = x->kick, .call_fd = x->call, .err_fd = x->err };
}

static void walk_setup(struct fx *x)
{
	struct vhu_fe_region r = region(x);
	struct vhu_ring_cfg c = ring(x, 0);

	assert_int_equal(vhu_fe_negotiate(&x->fe, ~0ULL), 0);
	assert_int_equal(vhu_fe_set_features(&x->fe, FEATURES & ~(1ULL << VHU_F_PROTOCOL_FEATURES)), 0);
	assert_int_equal(vhu_fe_set_mem_table(&x->fe, &r, 1), 0);
	assert_int_equal(vhu_fe_ring_start(&x->fe, 0, &c), 0);
}

static void test_setup_sequence(void **state)
{
	struct fx *x = *state;
	static const uint32_t want[] = {
		VHU_GET_FEATURES, VHU_GET_PROTOCOL_FEATURES, VHU_SET_PROTOCOL_FEATURES, VHU_SET_OWNER,
		VHU_GET_QUEUE_NUM, VHU_GET_MAX_MEM_SLOTS, VHU_SET_BACKEND_REQ_FD,
		VHU_SET_FEATURES, VHU_ADD_MEM_REG,
		VHU_SET_VRING_NUM, VHU_SET_VRING_ADDR, VHU_SET_VRING_BASE, VHU_SET_VRING_CALL,
		VHU_SET_VRING_ERR, VHU_SET_VRING_KICK, VHU_SET_VRING_ENABLE,
	};
	struct vhu_fe_region r = region(x);

	fake_start(x, ALL_PROTOCOL);
	walk_setup(x);
	expect_log(x, 0, want, ARRAY_SIZE(want));
	assert_true(x->fe.backend_features == FEATURES);
	/* LOG_SHMFD is offered but not ours to use. */
	assert_false(vhu_fe_has_protocol(&x->fe, VHU_PROTOCOL_F_LOG_SHMFD));
	assert_true(rd64(logged_at(x, 2)->payload) == (ALL_PROTOCOL & ~(1ULL << VHU_PROTOCOL_F_LOG_SHMFD)));
	assert_int_equal(x->fe.queue_num, 4);
	assert_int_equal(x->fe.max_mem_slots, 32);
	assert_true(x->fe.backend_req_fd >= 0);
	/* SET_PROTOCOL_FEATURES goes without REPLY_ACK; later messages ask for it. */
	assert_false(logged_at(x, 2)->flags & VHU_FLAG_NEED_REPLY);
	assert_true(logged_at(x, 3)->flags & VHU_FLAG_NEED_REPLY);
	/* SET_FEATURES carries VHOST_USER_F_PROTOCOL_FEATURES. */
	assert_true(rd64(logged_at(x, 7)->payload) & (1ULL << VHU_F_PROTOCOL_FEATURES));
	/* ADD_MEM_REG: the region after 8 bytes of padding, one fd. */
	assert_int_equal(logged_at(x, 8)->nfds, 1);
	assert_true(rd64(logged_at(x, 8)->payload + 8 + 16) == 0x7f0000000000);
	/* Ring 0: size, the three addresses in wire order, base, fds. */
	assert_int_equal(rd32(logged_at(x, 9)->payload + 4), 256);
	assert_true(rd64(logged_at(x, 10)->payload + 8) == 0x7f0000001000);
	assert_true(rd64(logged_at(x, 10)->payload + 16) == 0x7f0000003000);
	assert_true(rd64(logged_at(x, 10)->payload + 24) == 0x7f0000002000);
	assert_int_equal(logged_at(x, 12)->nfds, 1);
	assert_int_equal(logged_at(x, 14)->nfds, 1);
	assert_true(rd64(logged_at(x, 14)->payload) == 0);
	assert_int_equal(rd32(logged_at(x, 15)->payload + 4), 1);
	/* The same memory table again is not resent. */
	assert_int_equal(vhu_fe_set_mem_table(&x->fe, &r, 1), 0);
	expect_log(x, ARRAY_SIZE(want), NULL, 0);
	fake_stop(x);
}

static void test_setup_without_mem_slots_or_ack(void **state)
{
	struct fx *x = *state;
	static const uint32_t want[] = {
		VHU_GET_FEATURES, VHU_GET_PROTOCOL_FEATURES, VHU_SET_PROTOCOL_FEATURES, VHU_SET_OWNER,
		VHU_SET_FEATURES, VHU_SET_MEM_TABLE,
		VHU_SET_VRING_NUM, VHU_SET_VRING_ADDR, VHU_SET_VRING_BASE, VHU_SET_VRING_CALL,
		VHU_SET_VRING_ERR, VHU_SET_VRING_KICK, VHU_SET_VRING_ENABLE,
	};

	fake_start(x, 1ULL << VHU_PROTOCOL_F_CONFIG);
	walk_setup(x);
	expect_log(x, 0, want, ARRAY_SIZE(want));
	assert_false(logged_at(x, 3)->flags & VHU_FLAG_NEED_REPLY);
	assert_int_equal(rd32(logged_at(x, 5)->payload), 1);   /* one region */
	assert_int_equal(logged_at(x, 5)->nfds, 1);
	assert_int_equal(x->fe.queue_num, 0);
	assert_int_equal(x->fe.backend_req_fd, -1);
	fake_stop(x);
}

/* Guest reset: each ring stopped (ENABLE 0, GET_VRING_BASE); RESET_DEVICE where offered. */
static void test_reset(void **state)
{
	struct fx *x = *state;
	static const uint32_t want[] = { VHU_SET_VRING_ENABLE, VHU_GET_VRING_BASE };
	uint16_t base = 0;
	unsigned n;

	fake_start(x, ALL_PROTOCOL);
	walk_setup(x);
	n = x->fake.nlog;
	x->fake.last_avail[0] = 42;
	assert_int_equal(vhu_fe_ring_stop(&x->fe, 0, &base), 0);
	assert_int_equal(base, 42);
	expect_log(x, n, want, ARRAY_SIZE(want));
	assert_int_equal(rd32(logged_at(x, n)->payload + 4), 0);
	assert_int_equal(vhu_fe_reset_device(&x->fe), -EOPNOTSUPP);
	fake_stop(x);

	fake_start(x, ALL_PROTOCOL | 1ULL << VHU_PROTOCOL_F_RESET_DEVICE);
	walk_setup(x);
	n = x->fake.nlog;
	assert_int_equal(vhu_fe_reset_device(&x->fe), 0);
	expect_log(x, n, (const uint32_t[]){ VHU_RESET_DEVICE }, 1);
	fake_stop(x);
}

/* Sleep keeps the base GET_VRING_BASE reports; wake restarts the ring from it. */
static void test_sleep_wake(void **state)
{
	struct fx *x = *state;
	static const uint32_t want[] = {
		VHU_SET_VRING_NUM, VHU_SET_VRING_ADDR, VHU_SET_VRING_BASE, VHU_SET_VRING_CALL,
		VHU_SET_VRING_ERR, VHU_SET_VRING_KICK, VHU_SET_VRING_ENABLE,
	};
	struct vhu_ring_cfg c;
	uint16_t base = 0;
	unsigned n;

	fake_start(x, ALL_PROTOCOL);
	walk_setup(x);
	x->fake.last_avail[0] = 1234;
	assert_int_equal(vhu_fe_ring_stop(&x->fe, 0, &base), 0);
	n = x->fake.nlog;
	c = ring(x, base);
	assert_int_equal(vhu_fe_ring_start(&x->fe, 0, &c), 0);
	expect_log(x, n, want, ARRAY_SIZE(want));
	assert_int_equal(rd32(logged_at(x, n + 2)->payload + 4), 1234);
	fake_stop(x);
}

/*
 * The back-end dies: the next request says so (-ECONNRESET), without a
 * signal. A new connection replays the set-up; the ring restarts from the
 * index the caller read from the used ring.
 */
static void test_reconnect(void **state)
{
	struct fx *x = *state;
	static const uint32_t want[] = {
		VHU_GET_FEATURES, VHU_GET_PROTOCOL_FEATURES, VHU_SET_PROTOCOL_FEATURES, VHU_SET_OWNER,
		VHU_GET_QUEUE_NUM, VHU_GET_MAX_MEM_SLOTS, VHU_SET_BACKEND_REQ_FD,
		VHU_SET_FEATURES, VHU_ADD_MEM_REG,
		VHU_SET_VRING_NUM, VHU_SET_VRING_ADDR, VHU_SET_VRING_BASE, VHU_SET_VRING_CALL,
		VHU_SET_VRING_ERR, VHU_SET_VRING_KICK, VHU_SET_VRING_ENABLE,
	};
	struct vhu_fe_region r = region(x);
	struct vhu_ring_cfg c = ring(x, 77);
	uint64_t t0;
	uint16_t base;

	fake_start(x, ALL_PROTOCOL);
	walk_setup(x);
	x->fake.fault_request = VHU_SET_VRING_ENABLE;
	x->fake.fault = F_CLOSE;
	t0 = monotonic_ns();
	assert_int_equal(vhu_fe_ring_stop(&x->fe, 0, &base), -ECONNRESET);
	assert_true(monotonic_ns() - t0 < TIMEOUT_MS * 1000000ULL);
	assert_true(x->fe.failed);
	assert_int_equal(vhu_fe_ring_stop(&x->fe, 0, &base), -EIO);
	fake_stop(x);

	fake_start(x, ALL_PROTOCOL);
	assert_int_equal(vhu_fe_negotiate(&x->fe, ~0ULL), 0);
	assert_false(x->fe.failed);
	assert_int_equal(vhu_fe_set_features(&x->fe, 0x7 | 1ULL << 32), 0);
	assert_int_equal(vhu_fe_set_mem_table(&x->fe, &r, 1), 0);
	assert_int_equal(vhu_fe_ring_start(&x->fe, 0, &c), 0);
	expect_log(x, 0, want, ARRAY_SIZE(want));
	assert_int_equal(rd32(logged_at(x, 11)->payload + 4), 77);
	fake_stop(x);
}

/* One bad reply: -EIO (or -ETIMEDOUT), failed state, nothing more sent, no fd leaked. */
static void bad_reply(struct fx *x, uint32_t request, enum fault fault, int want_err)
{
	struct vhu_fe_region r = region(x);
	struct vhu_ring_cfg c = ring(x, 0);
	uint8_t cfg[16];
	uint64_t t0 = monotonic_ns();
	uint16_t base;
	unsigned n;
	int ret;

	fake_start(x, ALL_PROTOCOL);
	x->fake.fault_request = request;
	x->fake.fault = fault;
	switch (request) {
	case VHU_GET_FEATURES:
	case VHU_GET_PROTOCOL_FEATURES:
	case VHU_GET_QUEUE_NUM:
	case VHU_GET_MAX_MEM_SLOTS:
	case VHU_SET_OWNER:
		ret = vhu_fe_negotiate(&x->fe, ~0ULL);
		break;
	case VHU_SET_MEM_TABLE:
	case VHU_ADD_MEM_REG:
		assert_int_equal(vhu_fe_negotiate(&x->fe, ~0ULL), 0);
		ret = vhu_fe_set_mem_table(&x->fe, &r, 1);
		break;
	case VHU_SET_VRING_KICK:
		assert_int_equal(vhu_fe_negotiate(&x->fe, ~0ULL), 0);
		ret = vhu_fe_ring_start(&x->fe, 0, &c);
		break;
	case VHU_GET_VRING_BASE:
		walk_setup(x);
		ret = vhu_fe_ring_stop(&x->fe, 0, &base);
		break;
	case VHU_GET_CONFIG:
		assert_int_equal(vhu_fe_negotiate(&x->fe, ~0ULL), 0);
		ret = vhu_fe_get_config(&x->fe, 0, cfg, sizeof(cfg));
		break;
	default:
		fail();
		return;
	}
	assert_int_equal(ret, want_err);
	assert_true(monotonic_ns() - t0 < 3ULL * TIMEOUT_MS * 1000000ULL);
	if (want_err == -EREMOTEIO) {
		assert_false(x->fe.failed);   /* a refusal, not a broken stream */
	} else {
		assert_true(x->fe.failed);
		n = x->fake.nlog;
		assert_int_equal(vhu_fe_set_features(&x->fe, 1), -EIO);
		expect_log(x, n, NULL, 0);
	}
	fake_stop(x);
	assert_int_equal(open_fds(), x->fds_before + 4);
}

static void test_bad_replies(void **state)
{
	struct fx *x = *state;

	bad_reply(x, VHU_GET_FEATURES, F_WRONG_CODE, -EIO);
	bad_reply(x, VHU_GET_FEATURES, F_BAD_SIZE, -EIO);
	bad_reply(x, VHU_GET_FEATURES, F_EXTRA_FD, -EIO);
	bad_reply(x, VHU_GET_FEATURES, F_MANY_FDS, -EIO);
	bad_reply(x, VHU_GET_FEATURES, F_NO_REPLY_FLAG, -EIO);
	bad_reply(x, VHU_GET_FEATURES, F_BAD_VERSION, -EIO);
	bad_reply(x, VHU_GET_FEATURES, F_SILENT, -ETIMEDOUT);
	bad_reply(x, VHU_GET_FEATURES, F_CLOSE, -ECONNRESET);
	bad_reply(x, VHU_GET_PROTOCOL_FEATURES, F_BAD_SIZE, -EIO);
	bad_reply(x, VHU_GET_QUEUE_NUM, F_BAD_VERSION, -EIO);
	bad_reply(x, VHU_GET_MAX_MEM_SLOTS, F_EXTRA_FD, -EIO);
	bad_reply(x, VHU_SET_OWNER, F_NO_REPLY_FLAG, -EIO);      /* the REPLY_ACK */
	bad_reply(x, VHU_SET_OWNER, F_SILENT, -ETIMEDOUT);
	bad_reply(x, VHU_SET_OWNER, F_NACK, -EREMOTEIO);
	bad_reply(x, VHU_ADD_MEM_REG, F_WRONG_CODE, -EIO);
	bad_reply(x, VHU_ADD_MEM_REG, F_EXTRA_FD, -EIO);
	bad_reply(x, VHU_SET_VRING_KICK, F_BAD_SIZE, -EIO);
	bad_reply(x, VHU_SET_VRING_KICK, F_CLOSE, -ECONNRESET);
	bad_reply(x, VHU_GET_VRING_BASE, F_WRONG_INDEX, -EIO);
	bad_reply(x, VHU_GET_VRING_BASE, F_BAD_SIZE, -EIO);
	bad_reply(x, VHU_GET_VRING_BASE, F_NO_REPLY_FLAG, -EIO);
	bad_reply(x, VHU_GET_VRING_BASE, F_EXTRA_FD, -EIO);
	bad_reply(x, VHU_GET_VRING_BASE, F_SILENT, -ETIMEDOUT);
	bad_reply(x, VHU_GET_VRING_BASE, F_HUGE, -EIO);
	bad_reply(x, VHU_GET_CONFIG, F_BAD_SIZE, -EIO);
	bad_reply(x, VHU_GET_CONFIG, F_EXTRA_FD, -EIO);
	bad_reply(x, VHU_GET_CONFIG, F_NACK, -EREMOTEIO);
}

static void test_config(void **state)
{
	struct fx *x = *state;
	uint8_t cfg[60], w[1] = { 1 };
	unsigned n;

	fake_start(x, ALL_PROTOCOL);
	assert_int_equal(vhu_fe_negotiate(&x->fe, ~0ULL), 0);
	assert_int_equal(vhu_fe_get_config(&x->fe, 0, cfg, sizeof(cfg)), 0);
	for (unsigned i = 0; i < sizeof(cfg); i++)
		assert_int_equal(cfg[i], (uint8_t)(0xa0 + i));
	n = x->fake.nlog;
	assert_int_equal(vhu_fe_set_config(&x->fe, 32, w, 1), 0);
	expect_log(x, n, (const uint32_t[]){ VHU_SET_CONFIG }, 1);
	assert_int_equal(rd32(logged_at(x, n)->payload), 32);
	assert_int_equal(rd32(logged_at(x, n)->payload + 4), 1);
	assert_int_equal(logged_at(x, n)->payload[12], 1);
	fake_stop(x);

	fake_start(x, 0);
	assert_int_equal(vhu_fe_negotiate(&x->fe, ~0ULL), 0);
	assert_int_equal(vhu_fe_get_config(&x->fe, 0, cfg, sizeof(cfg)), -EOPNOTSUPP);
	fake_stop(x);
}

static void test_device_state(void **state)
{
	struct fx *x = *state;
	int pipefd[2], reply_fd = 0;

	assert_int_equal(pipe(pipefd), 0);
	fake_start(x, ALL_PROTOCOL);
	assert_int_equal(vhu_fe_negotiate(&x->fe, ~0ULL), 0);
	assert_int_equal(vhu_fe_set_device_state_fd(&x->fe, 0, pipefd[1], &reply_fd), 0);
	assert_int_equal(reply_fd, -1);
	assert_int_equal(vhu_fe_check_device_state(&x->fe), 0);
	fake_stop(x);
	fake_start(x, 0);
	assert_int_equal(vhu_fe_negotiate(&x->fe, ~0ULL), 0);
	assert_int_equal(vhu_fe_set_device_state_fd(&x->fe, 0, pipefd[1], &reply_fd), -EOPNOTSUPP);
	fake_stop(x);
	close(pipefd[0]);
	close(pipefd[1]);
}

/* The back-end request channel: CONFIG_CHANGE answered, unknown refused, garbage closes it. */
static void test_backend_requests(void **state)
{
	struct fx *x = *state;
	uint8_t b[64];
	uint64_t zero = 0;
	uint32_t req = 0;

	fake_start(x, ALL_PROTOCOL);
	assert_int_equal(vhu_fe_negotiate(&x->fe, ~0ULL), 0);
	assert_true(x->fake.backend_req_fd >= 0);
	fake_send(x->fake.backend_req_fd, VHU_BACKEND_CONFIG_CHANGE_MSG,
		  VHU_FLAG_VERSION | VHU_FLAG_NEED_REPLY, &zero, 8, NULL, 0);
	assert_int_equal(vhu_fe_backend_req(&x->fe, &req), 0);
	assert_int_equal(req, VHU_BACKEND_CONFIG_CHANGE_MSG);
	assert_int_equal(read(x->fake.backend_req_fd, b, 20), 20);
	assert_int_equal(rd32(b), VHU_BACKEND_CONFIG_CHANGE_MSG);
	assert_int_equal(rd32(b + 4), VHU_FLAG_VERSION | VHU_FLAG_REPLY);
	assert_true(rd64(b + 12) == 0);

	fake_send(x->fake.backend_req_fd, VHU_BACKEND_VRING_HOST_NOTIFIER_MSG,
		  VHU_FLAG_VERSION | VHU_FLAG_NEED_REPLY, &zero, 8, NULL, 0);
	assert_int_equal(vhu_fe_backend_req(&x->fe, &req), -EOPNOTSUPP);
	assert_int_equal(read(x->fake.backend_req_fd, b, 20), 20);
	assert_true(rd64(b + 12) != 0);

	fake_send(x->fake.backend_req_fd, VHU_BACKEND_CONFIG_CHANGE_MSG,
		  0x2, &zero, 8, NULL, 0);
	assert_int_equal(vhu_fe_backend_req(&x->fe, &req), -EIO);
	assert_int_equal(x->fe.backend_req_fd, -1);
	assert_false(x->fe.failed);   /* the main connection is not affected */
	fake_stop(x);
}

static void test_connect_refused(void **state)
{
	(void)state;
	assert_int_equal(vhu_connect("/nonexistent-dir/vhost.sock"), -ENOENT);
	assert_true(vhu_connect("/tmp/this-path-is-far-too-long-for-a-unix-socket-address-"
				"because-sun-path-holds-only-108-bytes-xxxxxxxxxxxxxxxxxxxx") ==
		    -ENAMETOOLONG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_setup_sequence, setup, teardown),
		cmocka_unit_test_setup_teardown(test_setup_without_mem_slots_or_ack, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sleep_wake, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reconnect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_replies, setup, teardown),
		cmocka_unit_test_setup_teardown(test_config, setup, teardown),
		cmocka_unit_test_setup_teardown(test_device_state, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backend_requests, setup, teardown),
		cmocka_unit_test(test_connect_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
