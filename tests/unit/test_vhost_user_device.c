/*
 * Unit tests for virtio/vhost_user/device: the --vhost-user device kind driven
 * the way the transport drives it (create, activate, reset, pause = sleep,
 * resume = wake) against a fake back-end listening on a real Unix socket, with
 * real shared guest memory. The fake can drop the connection to play a
 * back-end that crashed: with reconnect= the device must replay the set-up
 * and restart the ring from the used index in guest memory; without it, it
 * must ask for DEVICE_NEEDS_RESET exactly once. The VM itself is not touched.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "virtio/vhost_user/msg.h"
#include "virtio/vhost_user/vhost_user.h"
#include "vmm/gmem.h"
#include "vmm/snapshot/format.h"
#include "vmm/vm.h"

#define RAM_SIZE  (2 * MiB)
#define RING_GPA  0x10000ull   /* desc; avail at +0x1000, used at +0x2000 */
#define QSIZE     64
#define MAX_LOG   256

struct fake {
	int listen_fd;
	char path[108];
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint64_t features, protocol;
	unsigned queue_num;
	bool drop;               /* close the connection now (a crash) */
	bool stop;
	unsigned connections;
	uint32_t log[MAX_LOG];   /* requests, with connection boundaries as 0 */
	unsigned nlog;
	uint32_t last_base;      /* last SET_VRING_BASE num */
	uint16_t avail_base;     /* what GET_VRING_BASE answers */
	uint64_t capacity;       /* in the config space it serves */
	int backend_req_fd;      /* the channel the front-end gave it, or -1 */
};

struct fx {
	struct fake fake;
	struct vm vm;
	struct vm_config cfg;
	struct virtio_dev vdev;
	int kick, call;
	unsigned needs_reset, signals, config_signals;
};

static struct fx *fx_of(struct virtio_dev *vdev)
{
	return (struct fx *)((uint8_t *)vdev - offsetof(struct fx, vdev));
}

static void hook_needs_reset(struct virtio_dev *vdev)
{
	__atomic_add_fetch(&fx_of(vdev)->needs_reset, 1, __ATOMIC_SEQ_CST);
}

static void hook_signal_used(struct virtio_dev *vdev, unsigned q)
{
	(void)q;
	__atomic_add_fetch(&fx_of(vdev)->signals, 1, __ATOMIC_SEQ_CST);
}

static void hook_signal_config(struct virtio_dev *vdev)
{
	__atomic_add_fetch(&fx_of(vdev)->config_signals, 1, __ATOMIC_SEQ_CST);
}

static int hook_kick_fd(struct virtio_dev *vdev, unsigned q)
{
	(void)q;
	return fx_of(vdev)->kick;
}

static int hook_call_fd(struct virtio_dev *vdev, unsigned q)
{
	(void)q;
	return fx_of(vdev)->call;
}

/* ---- the fake back-end ------------------------------------------------------------- */

static int rd_all(int s, uint8_t *b, size_t n, int *keep)
{
	size_t done = 0;

	while (done < n) {
		char ctl[CMSG_SPACE(sizeof(int) * 16)];
		struct iovec iov = { b + done, n - done };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
				     .msg_controllen = sizeof(ctl) };
		ssize_t r = recvmsg(s, &mh, 0);

		if (r <= 0)
			return -1;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			int fds[16];
			unsigned k = (unsigned)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));

			memcpy(fds, CMSG_DATA(c), k * sizeof(int));
			for (unsigned i = 0; i < k; i++) {
				if (keep && *keep < 0)
					*keep = fds[i];
				else
					close(fds[i]);
			}
		}
		done += (size_t)r;
	}
	return 0;
}

static void send_reply(int s, uint32_t req, const void *p, uint32_t len)
{
	uint8_t b[12 + 300];
	uint32_t flags = VHU_FLAG_VERSION | VHU_FLAG_REPLY;

	memcpy(b, &req, 4);
	memcpy(b + 4, &flags, 4);
	memcpy(b + 8, &len, 4);
	memcpy(b + 12, p, len);
	(void)!send(s, b, 12 + len, MSG_NOSIGNAL);
}

/* Serve one connection until EOF or a drop. */
static void serve(struct fake *f, int s)
{
	for (;;) {
		uint8_t h[12], p[512];
		uint32_t req, flags, size;
		uint64_t v = 0;
		struct pollfd pfd = { .fd = s, .events = POLLIN };
		int got_fd;

		pthread_mutex_lock(&f->lock);
		if (f->drop || f->stop) {
			f->drop = false;
			pthread_mutex_unlock(&f->lock);
			return;
		}
		pthread_mutex_unlock(&f->lock);
		if (poll(&pfd, 1, 20) <= 0)
			continue;
		got_fd = -1;
		if (rd_all(s, h, 12, &got_fd))
			return;
		memcpy(&req, h, 4);
		memcpy(&flags, h + 4, 4);
		memcpy(&size, h + 8, 4);
		if (size > sizeof(p) || rd_all(s, p, size, &got_fd)) {
			if (got_fd >= 0)
				close(got_fd);
			return;
		}
		if (req == VHU_SET_BACKEND_REQ_FD && got_fd >= 0) {
			pthread_mutex_lock(&f->lock);
			if (f->backend_req_fd >= 0)
				close(f->backend_req_fd);
			f->backend_req_fd = got_fd;
			pthread_mutex_unlock(&f->lock);
		} else if (got_fd >= 0) {
			close(got_fd);
		}
		pthread_mutex_lock(&f->lock);
		if (f->nlog < MAX_LOG)
			f->log[f->nlog++] = req;
		if (req == VHU_SET_VRING_BASE)
			memcpy(&f->last_base, p + 4, 4);
		pthread_cond_broadcast(&f->cond);
		pthread_mutex_unlock(&f->lock);
		switch (req) {
		case VHU_GET_FEATURES:
			send_reply(s, req, &f->features, 8);
			break;
		case VHU_GET_PROTOCOL_FEATURES:
			send_reply(s, req, &f->protocol, 8);
			break;
		case VHU_GET_QUEUE_NUM:
			v = f->queue_num;
			send_reply(s, req, &v, 8);
			break;
		case VHU_GET_MAX_MEM_SLOTS:
			v = 8;
			send_reply(s, req, &v, 8);
			break;
		case VHU_GET_VRING_BASE: {
			uint32_t st[2];

			memcpy(st, p, 4);
			st[1] = f->avail_base;
			send_reply(s, req, st, 8);
			break;
		}
		case VHU_GET_CONFIG: {
			uint8_t c[12 + 256] = { 0 };
			uint32_t len;
			uint64_t capacity = f->capacity;

			memcpy(c, p, 12);
			memcpy(&len, p + 4, 4);
			memcpy(c + 12, &capacity, 8);
			c[12 + 34] = 7;   /* num_queues: the device must put its own there */
			send_reply(s, req, c, 12 + MIN(len, 256u));
			break;
		}
		default:
			if (flags & VHU_FLAG_NEED_REPLY)
				send_reply(s, req, &v, 8);
			break;
		}
	}
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;

	for (;;) {
		struct pollfd pfd = { .fd = f->listen_fd, .events = POLLIN };
		int s;

		pthread_mutex_lock(&f->lock);
		if (f->stop) {
			pthread_mutex_unlock(&f->lock);
			break;
		}
		pthread_mutex_unlock(&f->lock);
		if (poll(&pfd, 1, 20) <= 0)
			continue;
		s = accept4(f->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (s < 0)
			continue;
		pthread_mutex_lock(&f->lock);
		f->connections++;
		if (f->nlog < MAX_LOG)
			f->log[f->nlog++] = 0;
		pthread_cond_broadcast(&f->cond);
		pthread_mutex_unlock(&f->lock);
		serve(f, s);
		close(s);
	}
	return NULL;
}

static void fake_start(struct fake *f, uint64_t protocol)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	static unsigned n;

	memset(f, 0, sizeof(*f));
	snprintf(f->path, sizeof(f->path), "/tmp/vmm-test-vhu-%d-%u.sock", getpid(), n++);
	memcpy(sa.sun_path, f->path, strlen(f->path) + 1);
	unlink(f->path);
	f->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(f->listen_fd >= 0);
	assert_int_equal(bind(f->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(f->listen_fd, 4), 0);
	f->features = 1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_F_EVENT_IDX |
		      1ULL << VIRTIO_F_INDIRECT_DESC | 1ULL << VHU_F_PROTOCOL_FEATURES | 1ULL << 9;
	f->protocol = protocol;
	f->queue_num = 2;
	f->capacity = 2048;
	f->backend_req_fd = -1;
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->cond, NULL);
	assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static void fake_stop(struct fake *f)
{
	pthread_mutex_lock(&f->lock);
	f->stop = true;
	pthread_mutex_unlock(&f->lock);
	pthread_join(f->thread, NULL);
	close(f->listen_fd);
	if (f->backend_req_fd >= 0)
		close(f->backend_req_fd);
	unlink(f->path);
	pthread_cond_destroy(&f->cond);
	pthread_mutex_destroy(&f->lock);
}

/* Wait (up to ms) until the fake logged request `req` after position `from`; its index or -1. */
static int wait_request(struct fake *f, unsigned from, uint32_t req, unsigned ms)
{
	uint64_t end = monotonic_ns() + (uint64_t)ms * 1000000ULL;
	int found = -1;

	pthread_mutex_lock(&f->lock);
	for (;;) {
		for (unsigned i = from; i < f->nlog && found < 0; i++)
			if (f->log[i] == req)
				found = (int)i;
		if (found >= 0 || monotonic_ns() >= end)
			break;
		pthread_mutex_unlock(&f->lock);
		usleep(5000);
		pthread_mutex_lock(&f->lock);
	}
	pthread_mutex_unlock(&f->lock);
	return found;
}

static unsigned log_len(struct fake *f)
{
	unsigned n;

	pthread_mutex_lock(&f->lock);
	n = f->nlog;
	pthread_mutex_unlock(&f->lock);
	return n;
}

/* ---- the device under test --------------------------------------------------------- */

static int create(struct fx *x, const char *extra, char *err, size_t errlen)
{
	char args[256];

	snprintf(args, sizeof(args), "type=blk,socket=%s%s", x->fake.path, extra);
	memset(&x->vdev, 0, sizeof(x->vdev));
	x->vdev.vm = &x->vm;
	snprintf(x->vdev.id, sizeof(x->vdev.id), "vhost-user0");
	return vhost_user_kind.create(&x->vm, args, &x->vdev, err, errlen);
}

/* What the transport does after create: queues, hooks, lock. */
static void attach(struct fx *x)
{
	struct virtio_dev *vdev = &x->vdev;

	pthread_mutex_init(&vdev->cfg_lock, NULL);
	vdev->signal_used = hook_signal_used;
	vdev->signal_config = hook_signal_config;
	vdev->needs_reset = hook_needs_reset;
	vdev->queue_kick_fd = hook_kick_fd;
	vdev->queue_call_fd = hook_call_fd;
	for (unsigned q = 0; q < vdev->num_queues; q++)
		assert_int_equal(virtq_init(&vdev->vqs[q], &x->vm.mem, "q", vdev->queue_max_size), 0);
}

static void enable_queue0(struct fx *x)
{
	struct virtq *vq = &x->vdev.vqs[0];

	vq->size = QSIZE;
	vq->desc_gpa = RING_GPA;
	vq->avail_gpa = RING_GPA + 0x1000;
	vq->used_gpa = RING_GPA + 0x2000;
	x->vdev.driver_features = 1ULL << VIRTIO_F_VERSION_1 | 1ULL << 9 | 1ULL << VIRTIO_F_RING_RESET;
	assert_int_equal(virtq_enable(vq, x->vdev.driver_features), 0);
}

static void detach(struct fx *x)
{
	x->vdev.ops->reset(&x->vdev);
	x->vdev.ops->destroy(&x->vdev);
	pthread_mutex_destroy(&x->vdev.cfg_lock);
}

static int setup(void **state)
{
	struct fx *x = calloc(1, sizeof(*x));

	assert_int_equal(gmem_create_backed(&x->vm.mem, RAM_SIZE, RAM_SIZE, RAM_SIZE, GMEM_SHARED), 0);
	x->vm.cfg = &x->cfg;
	x->kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	x->call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	struct fx *x = *state;

	close(x->kick);
	close(x->call);
	gmem_destroy(&x->vm.mem);
	free(x);
	return 0;
}

#define PROTO (1ULL << VHU_PROTOCOL_F_MQ | 1ULL << VHU_PROTOCOL_F_REPLY_ACK | \
	       1ULL << VHU_PROTOCOL_F_CONFIG | 1ULL << VHU_PROTOCOL_F_CONFIGURE_MEM_SLOTS)

static void test_create_and_config(void **state)
{
	struct fx *x = *state;
	char err[256] = "";
	uint64_t capacity = 0;
	uint16_t nq = 0;

	fake_start(&x->fake, PROTO);
	assert_int_equal(create(x, "", err, sizeof(err)), 0);
	attach(x);
	assert_int_equal(x->vdev.ops->device_id, VIRTIO_ID_BLOCK);
	assert_true(x->vdev.external_queues);
	assert_int_equal(x->vdev.num_queues, 1);
	assert_int_equal(x->vdev.config_size, 60);
	/* The guest is offered the back-end's device bits, not the vhost-user ones. */
	assert_true(x->vdev.device_features == (1ULL << 9));
	x->vdev.ops->cfg_read(&x->vdev, 0, &capacity, 8);
	assert_true(capacity == 2048);
	x->vdev.ops->cfg_read(&x->vdev, 34, &nq, 2);
	assert_int_equal(nq, 1);
	detach(x);
	fake_stop(&x->fake);
}

static void test_create_errors(void **state)
{
	struct fx *x = *state;
	char err[256] = "";

	fake_start(&x->fake, PROTO);
	x->fake.features &= ~(1ULL << VIRTIO_F_VERSION_1);
	assert_int_equal(create(x, "", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "VIRTIO_F_VERSION_1"));
	x->fake.features |= 1ULL << VIRTIO_F_VERSION_1;
	assert_int_equal(create(x, ",queues=4", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "has 2 queues, 4 asked"));
	fake_stop(&x->fake);
	fake_start(&x->fake, 1ULL << VHU_PROTOCOL_F_MQ);
	assert_int_equal(create(x, "", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "no config space"));
	fake_stop(&x->fake);
	assert_int_equal(create(x, "", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "start the back-end first"));
	assert_int_equal(create(x, ",reconnect=0", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "reconnect=0"));
}

/* Plays the back-end finishing two requests 100 ms from now. */
static void *complete_later(void *arg)
{
	struct fx *x = arg;
	uint16_t two = 2;

	usleep(100000);
	assert_int_equal(gmem_write(&x->vm.mem, RING_GPA + 0x2000 + 2, &two, 2), 0);
	return NULL;
}

/* Activate sets the ring up from the used index; reset reclaims it; sleep/wake keep the base. */
static void test_activate_reset_sleep_wake(void **state)
{
	struct fx *x = *state;
	char err[256] = "";
	int at;
	unsigned n;

	fake_start(&x->fake, PROTO);
	assert_int_equal(create(x, "", err, sizeof(err)), 0);
	attach(x);
	enable_queue0(x);
	n = log_len(&x->fake);
	assert_int_equal(x->vdev.ops->activate(&x->vdev), 0);
	assert_true(wait_request(&x->fake, n, VHU_SET_FEATURES, 1000) >= 0);
	assert_true(wait_request(&x->fake, n, VHU_ADD_MEM_REG, 1000) >= 0);
	assert_true(wait_request(&x->fake, n, VHU_SET_VRING_ENABLE, 1000) >= 0);
	assert_int_equal(x->fake.last_base, 0);

	/*
	 * Sleep: requests in flight finish first (the guest made 2 available, the
	 * back-end uses them 100 ms later), then GET_VRING_BASE; wake:
	 * SET_VRING_BASE with what it said.
	 */
	x->fake.avail_base = 9;
	{
		uint16_t two = 2;
		pthread_t t;
		uint64_t t0 = monotonic_ns();

		assert_int_equal(gmem_write(&x->vm.mem, RING_GPA + 0x1000 + 2, &two, 2), 0);
		assert_int_equal(pthread_create(&t, NULL, complete_later, x), 0);
		n = log_len(&x->fake);
		assert_int_equal(x->vdev.ops->pause(&x->vdev), 0);
		assert_true(monotonic_ns() - t0 >= 90000000ULL);
		pthread_join(t, NULL);
	}
	assert_true(wait_request(&x->fake, n, VHU_GET_VRING_BASE, 1000) >= 0);
	n = log_len(&x->fake);
	assert_int_equal(x->vdev.ops->resume(&x->vdev), 0);
	at = wait_request(&x->fake, n, VHU_SET_VRING_BASE, 1000);
	assert_true(at >= 0);
	assert_int_equal(x->fake.last_base, 9);
	/* No memory table again: it did not change. */
	assert_int_equal(wait_request(&x->fake, n, VHU_ADD_MEM_REG, 50), -1);

	/* Guest reset: the ring is reclaimed. */
	n = log_len(&x->fake);
	x->vdev.ops->reset(&x->vdev);
	assert_true(wait_request(&x->fake, n, VHU_GET_VRING_BASE, 1000) >= 0);
	assert_int_equal(x->needs_reset, 0);
	detach(x);
	fake_stop(&x->fake);
}

/* The back-end crashes; with reconnect=1 the set-up is replayed from the used index. */
static void test_reconnect(void **state)
{
	struct fx *x = *state;
	char err[256] = "";
	uint16_t used_idx = 5;
	uint64_t kicks = 0, t0;
	unsigned n;

	fake_start(&x->fake, PROTO);
	assert_int_equal(create(x, ",reconnect=1", err, sizeof(err)), 0);
	attach(x);
	enable_queue0(x);
	assert_int_equal(x->vdev.ops->activate(&x->vdev), 0);
	assert_true(wait_request(&x->fake, 0, VHU_SET_VRING_ENABLE, 1000) >= 0);
	/* The guest got 5 requests back; then the back-end dies. */
	assert_int_equal(gmem_write(&x->vm.mem, RING_GPA + 0x2000 + 2, &used_idx, 2), 0);
	(void)!read(x->kick, &kicks, sizeof(kicks));
	n = log_len(&x->fake);
	t0 = monotonic_ns();
	pthread_mutex_lock(&x->fake.lock);
	x->fake.drop = true;
	pthread_mutex_unlock(&x->fake.lock);
	/* Back within reconnect=1 s (plus slack); the whole set-up again. */
	assert_true(wait_request(&x->fake, n, VHU_GET_FEATURES, 3000) >= 0);
	assert_true(wait_request(&x->fake, n, VHU_SET_FEATURES, 1000) >= 0);
	assert_true(wait_request(&x->fake, n, VHU_ADD_MEM_REG, 1000) >= 0);
	assert_true(wait_request(&x->fake, n, VHU_SET_VRING_ENABLE, 1000) >= 0);
	assert_true(monotonic_ns() - t0 < 3000000000ULL);
	assert_int_equal(x->fake.connections, 2);
	assert_int_equal(x->fake.last_base, 5);
	/* And the ring was kicked, so the back-end looks at it at once. */
	usleep(20000);
	assert_int_equal(read(x->kick, &kicks, sizeof(kicks)), 8);
	assert_true(kicks >= 1);
	assert_int_equal(x->needs_reset, 0);
	detach(x);
	fake_stop(&x->fake);
}

/* Without reconnect=: the device needs a reset, once; a later activate fails. */
static void test_crash_without_reconnect(void **state)
{
	struct fx *x = *state;
	char err[256] = "";

	fake_start(&x->fake, PROTO);
	assert_int_equal(create(x, "", err, sizeof(err)), 0);
	attach(x);
	enable_queue0(x);
	assert_int_equal(x->vdev.ops->activate(&x->vdev), 0);
	assert_true(wait_request(&x->fake, 0, VHU_SET_VRING_ENABLE, 1000) >= 0);
	pthread_mutex_lock(&x->fake.lock);
	x->fake.drop = true;
	pthread_mutex_unlock(&x->fake.lock);
	for (unsigned i = 0; i < 200 && !__atomic_load_n(&x->needs_reset, __ATOMIC_SEQ_CST); i++)
		usleep(5000);
	assert_int_equal(x->needs_reset, 1);
	usleep(100000);
	assert_int_equal(x->needs_reset, 1);
	assert_int_equal(x->fake.connections, 1);
	x->vdev.ops->reset(&x->vdev);
	assert_int_equal(x->vdev.ops->activate(&x->vdev), -EIO);
	detach(x);
	fake_stop(&x->fake);
}

/* CONFIG_CHANGE_MSG on the back-end channel: the config is read again, the driver told. */
static void test_config_change(void **state)
{
	struct fx *x = *state;
	char err[256] = "";
	uint32_t hdr[3] = { VHU_BACKEND_CONFIG_CHANGE_MSG, VHU_FLAG_VERSION | VHU_FLAG_NEED_REPLY, 8 };
	uint8_t msg[20] = { 0 }, reply[20];
	uint64_t capacity = 0;
	struct pollfd pfd;

	fake_start(&x->fake, PROTO | 1ULL << VHU_PROTOCOL_F_BACKEND_REQ);
	assert_int_equal(create(x, "", err, sizeof(err)), 0);
	attach(x);
	enable_queue0(x);
	assert_int_equal(x->vdev.ops->activate(&x->vdev), 0);   /* starts the worker */
	assert_true(x->fake.backend_req_fd >= 0);
	x->fake.capacity = 4096;
	memcpy(msg, hdr, sizeof(hdr));
	assert_int_equal(send(x->fake.backend_req_fd, msg, sizeof(msg), MSG_NOSIGNAL), 20);
	pfd = (struct pollfd){ .fd = x->fake.backend_req_fd, .events = POLLIN };
	assert_int_equal(poll(&pfd, 1, 2000), 1);
	assert_int_equal(read(x->fake.backend_req_fd, reply, sizeof(reply)), 20);
	assert_true(reply[12] == 0);   /* success */
	for (unsigned i = 0; i < 200 && !__atomic_load_n(&x->config_signals, __ATOMIC_SEQ_CST); i++)
		usleep(5000);
	assert_int_equal(x->config_signals, 1);
	x->vdev.ops->cfg_read(&x->vdev, 0, &capacity, 8);
	assert_true(capacity == 4096);
	assert_int_equal(x->vdev.config_generation, 1);
	detach(x);
	fake_stop(&x->fake);
}

static void *save_dev(struct fx *x, size_t *len)
{
	struct snap_writer w;
	const void *blob;
	void *copy;

	assert_non_null(x->vdev.ops->snap_save);
	assert_int_equal(snap_writer_init(&w), 0);
	assert_int_equal(snap_begin_node(&w, "dev"), 0);
	assert_int_equal(x->vdev.ops->snap_save(&x->vdev, &w), 0);
	assert_int_equal(snap_end_node(&w), 0);
	assert_int_equal(snap_writer_finish(&w, &blob, len), 0);
	copy = malloc(*len);
	memcpy(copy, blob, *len);
	snap_writer_free(&w);
	return copy;
}

static int load_dev(struct fx *x, const void *blob, size_t len, char *err, size_t errlen)
{
	struct snap_reader r;
	int ret;

	assert_int_equal(snap_reader_open(&r, blob, len), 0);
	ret = x->vdev.ops->snap_load(&x->vdev, &r, snap_node(&r, 0, "dev"));
	snprintf(err, errlen, "%s", r.err);
	snap_reader_close(&r);
	return ret;
}

/*
 * A blk device saves its type and config; a restore against a back-end with
 * another disk size is refused by name. The restored device, activated,
 * paused and woken as the transport does, re-arms the ring's notifications
 * the old back-end left suppressed (VRING_USED_F_NO_NOTIFY in guest memory),
 * kicks the new back-end once and sends one interrupt.
 */
static void test_snapshot(void **state)
{
	struct fx *x = *state;
	char err[SNAP_ERR_LEN] = "";
	uint16_t flags = 1;  /* VRING_USED_F_NO_NOTIFY */
	uint64_t v = 0;
	size_t len;
	void *blob;
	unsigned n;

	fake_start(&x->fake, PROTO);
	assert_int_equal(create(x, "", err, sizeof(err)), 0);
	attach(x);
	blob = save_dev(x, &len);
	detach(x);
	fake_stop(&x->fake);

	/* Another disk size behind the socket: refused, naming both sizes. */
	fake_start(&x->fake, PROTO);
	x->fake.capacity = 4096;
	assert_int_equal(create(x, "", err, sizeof(err)), 0);
	attach(x);
	assert_int_equal(load_dev(x, blob, len, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "4096 sectors, the snapshot's had 2048"));
	detach(x);
	fake_stop(&x->fake);

	/* The same disk: loaded; the first wake re-arms, kicks and interrupts. */
	fake_start(&x->fake, PROTO);
	assert_int_equal(create(x, "", err, sizeof(err)), 0);
	attach(x);
	assert_int_equal(load_dev(x, blob, len, err, sizeof(err)), 0);
	enable_queue0(x);
	assert_int_equal(gmem_write(&x->vm.mem, RING_GPA + 0x2000, &flags, 2), 0);
	assert_int_equal(x->vdev.ops->activate(&x->vdev), 0);
	assert_int_equal(x->vdev.ops->pause(&x->vdev), 0);
	while (read(x->kick, &v, sizeof(v)) > 0)
		;
	while (read(x->call, &v, sizeof(v)) > 0)
		;
	n = log_len(&x->fake);
	assert_int_equal(x->vdev.ops->resume(&x->vdev), 0);
	assert_true(wait_request(&x->fake, n, VHU_SET_VRING_ENABLE, 1000) >= 0);
	assert_int_equal(gmem_read(&x->vm.mem, RING_GPA + 0x2000, &flags, 2), 0);
	assert_int_equal(flags, 0);
	assert_int_equal(read(x->kick, &v, sizeof(v)), (ssize_t)sizeof(v));
	assert_int_equal(read(x->call, &v, sizeof(v)), (ssize_t)sizeof(v));
	/* Only the first wake after the restore: a later sleep and wake leave both alone. */
	assert_int_equal(x->vdev.ops->pause(&x->vdev), 0);
	flags = 1;
	assert_int_equal(gmem_write(&x->vm.mem, RING_GPA + 0x2000, &flags, 2), 0);
	assert_int_equal(x->vdev.ops->resume(&x->vdev), 0);
	assert_int_equal(gmem_read(&x->vm.mem, RING_GPA + 0x2000, &flags, 2), 0);
	assert_int_equal(flags, 1);
	assert_int_equal(read(x->call, &v, sizeof(v)), -1);
	free(blob);
	detach(x);
	fake_stop(&x->fake);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_create_and_config, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_activate_reset_sleep_wake, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reconnect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_without_reconnect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_config_change, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
