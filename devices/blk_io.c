/*
 * Block I/O engine: io_uring or a thread pool under one interface
 * (devices/blk_io.h). Completions reach the event loop through one eventfd.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <liburing.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "channel/evloop.h"
#include "devices/blk_io.h"

#define BLK_IO_THREADS_MAX 4u
#define BLK_IO_RING_MAX    4096u
/* Zeroes written where fallocate cannot: per write, and writes in the ring at once. */
#define BLK_IO_ZERO_CHUNK  (256u * 1024u)
#define BLK_IO_ZERO_SLOTS  4u

/* One chunk of a WRITE_ZEROES written out. */
struct zero_write {
	struct blk_io_req *req;    /* NULL: the slot is free */
	uint64_t off;
	uint32_t len;
	bool queued;               /* its SQE is prepared; false: zero_pump (re)queues it */
};

struct blk_io {
	enum blk_io_engine engine;
	int fd;
	unsigned depth;
	blk_io_done_fn *done;
	blk_io_batch_fn *batch;
	void *opaque;

	int efd;                   /* completion eventfd */
	struct evloop_fd *reg;     /* its registration, NULL when detached */
	unsigned inflight;         /* owner thread only */

	/* io_uring */
	struct io_uring ring;
	bool ring_ready;
	unsigned unsubmitted;      /* SQEs prepared since the last submit */
	unsigned in_ring;          /* SQEs prepared whose CQE is not reaped yet */
	struct blk_io_req *backlog_head, *backlog_tail;  /* found the SQ full */
	struct blk_io_req *zero_head, *zero_tail;        /* WRITE_ZEROES waiting for chunks */
	struct zero_write zero[BLK_IO_ZERO_SLOTS];       /* chunks of zeroes being written */

	/* thread pool */
	pthread_mutex_t lock;
	pthread_cond_t work_cond;  /* work queued or stopping */
	pthread_cond_t done_cond;  /* a request finished */
	struct blk_io_req *pending_head, *pending_tail;  /* submitted, not kicked (owner) */
	struct blk_io_req *work_head, *work_tail;        /* kicked, not taken (lock) */
	struct blk_io_req *done_head, *done_tail;        /* finished, not delivered (lock) */
	bool stopping;
	unsigned nthreads;
	pthread_t threads[BLK_IO_THREADS_MAX];
};

static void list_append(struct blk_io_req **head, struct blk_io_req **tail, struct blk_io_req *r)
{
	r->next = NULL;
	if (*tail)
		(*tail)->next = r;
	else
		*head = r;
	*tail = r;
}

/* Skip n bytes of r's iovecs (after a short transfer). */
static void iov_advance(struct blk_io_req *r, uint64_t n)
{
	while (n && r->iovcnt) {
		if (n >= r->iov[0].iov_len) {
			n -= r->iov[0].iov_len;
			r->iov++;
			r->iovcnt--;
		} else {
			r->iov[0].iov_base = (uint8_t *)r->iov[0].iov_base + n;
			r->iov[0].iov_len -= n;
			n = 0;
		}
	}
}

static bool unsupported(int err)
{
	return err == -EOPNOTSUPP || err == -ENOTSUP || err == -ENOSYS || err == -EINVAL;
}

#ifdef VMM_TESTING
static int test_falloc_err;

void blk_io_test_fail_fallocate(int err)
{
	__atomic_store_n(&test_falloc_err, err, __ATOMIC_SEQ_CST);
}

/* The result a fallocate gets: the injected error, if any. */
static int falloc_result(int res)
{
	int err = __atomic_load_n(&test_falloc_err, __ATOMIC_SEQ_CST);

	return err ? -err : res;
}
#define falloc_injected() (__atomic_load_n(&test_falloc_err, __ATOMIC_SEQ_CST) != 0)
#else
#define falloc_result(res) (res)
#define falloc_injected() false
#endif

/* fallocate mode for the request's current attempt. */
static int falloc_mode(const struct blk_io_req *r)
{
	if (r->op == BLK_IO_WRITE_ZEROES && !r->unmap && r->attempt == 0)
		return FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
	return FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
}

/* Last resort for WRITE_ZEROES where fallocate cannot, on a pool worker: write zero pages. */
static int write_zeroes_sync(int fd, uint64_t off, uint64_t len)
{
	static const uint8_t zeroes[64 * 1024];

	while (len) {
		size_t n = (size_t)MIN(len, (uint64_t)sizeof(zeroes));
		ssize_t w = pwrite(fd, zeroes, n, (off_t)off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		if (w == 0)
			return -EIO;
		off += (uint64_t)w;
		len -= (uint64_t)w;
	}
	return 0;
}

static int exec_falloc_sync(int fd, struct blk_io_req *r)
{
	for (;;) {
		int ret = falloc_injected() ? falloc_result(0)
			  : fallocate(fd, falloc_mode(r), (off_t)r->off, (off_t)r->len) ? -errno : 0;

		if (ret == -EINTR)
			continue;
		if (ret == 0 || !unsupported(ret))
			return ret;
		if (r->op == BLK_IO_DISCARD)
			return 0;  /* advisory */
		if (r->attempt == 0 && !r->unmap) {
			r->attempt = 1;
			continue;
		}
		return write_zeroes_sync(fd, r->off, r->len);
	}
}

/* Run one request to the end on the calling thread. */
static int exec_sync(int fd, struct blk_io_req *r)
{
	switch (r->op) {
	case BLK_IO_READ:
	case BLK_IO_WRITE:
		while (r->done_bytes < r->len) {
			int cnt = (int)MIN(r->iovcnt, (unsigned)IOV_MAX);
			off_t off = (off_t)(r->off + r->done_bytes);
			ssize_t n = r->op == BLK_IO_READ ? preadv(fd, r->iov, cnt, off)
							 : pwritev(fd, r->iov, cnt, off);

			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				return -errno;
			if (n == 0)
				return -EIO;  /* end of file: the image shrank */
			r->done_bytes += (uint64_t)n;
			iov_advance(r, (uint64_t)n);
		}
		return 0;
	case BLK_IO_FLUSH:
		return fdatasync(fd) ? -errno : 0;
	case BLK_IO_DISCARD:
	case BLK_IO_WRITE_ZEROES:
		return exec_falloc_sync(fd, r);
	}
	return -EINVAL;
}

static void deliver(struct blk_io *io, struct blk_io_req *r)
{
	io->inflight--;
	io->done(io->opaque, r);
}

/* ---- io_uring ---------------------------------------------------------------- */

/*
 * Everything here runs on the thread that owns the engine (the event loop),
 * so nothing may block or take long: no synchronous I/O. A WRITE_ZEROES that
 * fallocate cannot do is written as zeroes from zero_chunk by queued writes,
 * at most BLK_IO_ZERO_SLOTS chunks in the ring for the whole engine; a submit
 * that the kernel runs inline therefore copies at most 1 MiB.
 */
static uint8_t zero_chunk[BLK_IO_ZERO_CHUNK];

/* A free SQE (counted as prepared), or NULL when the SQ stays full after a submit. */
static struct io_uring_sqe *uring_sqe(struct blk_io *io)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&io->ring);

	if (!sqe && io->unsubmitted) {
		/* The SQ is sized for depth, but submit and retry rather than trust that. */
		io_uring_submit(&io->ring);
		io->unsubmitted = 0;
		sqe = io_uring_get_sqe(&io->ring);
	}
	if (sqe) {
		io->unsubmitted++;
		io->in_ring++;
	}
	return sqe;
}

static void uring_prep(struct blk_io *io, struct blk_io_req *r)
{
	struct io_uring_sqe *sqe = uring_sqe(io);

	if (!sqe) {
		/* Prepared after the next completions make room; never run here instead. */
		list_append(&io->backlog_head, &io->backlog_tail, r);
		return;
	}
	switch (r->op) {
	case BLK_IO_READ:
		io_uring_prep_readv(sqe, io->fd, r->iov, MIN(r->iovcnt, (unsigned)IOV_MAX),
				    r->off + r->done_bytes);
		break;
	case BLK_IO_WRITE:
		io_uring_prep_writev(sqe, io->fd, r->iov, MIN(r->iovcnt, (unsigned)IOV_MAX),
				     r->off + r->done_bytes);
		break;
	case BLK_IO_FLUSH:
		io_uring_prep_fsync(sqe, io->fd, IORING_FSYNC_DATASYNC);
		break;
	case BLK_IO_DISCARD:
	case BLK_IO_WRITE_ZEROES:
		if (falloc_injected())
			io_uring_prep_nop(sqe);  /* its result is replaced in uring_result */
		else
			io_uring_prep_fallocate(sqe, io->fd, falloc_mode(r), r->off, r->len);
		break;
	}
	io_uring_sqe_set_data(sqe, r);
}

/* r's range is to be written as zeroes, chunk by chunk (zero_pump). */
static void zero_start(struct blk_io *io, struct blk_io_req *r)
{
	r->done_bytes = 0;     /* bytes handed to chunks so far */
	r->zero_pending = 0;   /* its chunks in the ring */
	r->result = 0;
	list_append(&io->zero_head, &io->zero_tail, r);
}

static void zero_pop(struct blk_io *io)
{
	io->zero_head = io->zero_head->next;
	if (!io->zero_head)
		io->zero_tail = NULL;
}

/* Give free slots the next chunks, and put every slot's write in the ring. */
static void zero_pump(struct blk_io *io)
{
	for (unsigned i = 0; i < BLK_IO_ZERO_SLOTS; i++) {
		struct zero_write *z = &io->zero[i];
		struct io_uring_sqe *sqe;

		if (!z->req && io->zero_head) {
			struct blk_io_req *r = io->zero_head;

			z->req = r;
			z->off = r->off + r->done_bytes;
			z->len = (uint32_t)MIN(r->len - r->done_bytes, (uint64_t)BLK_IO_ZERO_CHUNK);
			z->queued = false;
			r->done_bytes += z->len;
			r->zero_pending++;
			if (r->done_bytes == r->len)
				zero_pop(io);
		}
		if (!z->req || z->queued)
			continue;
		sqe = uring_sqe(io);
		if (!sqe)
			return;
		io_uring_prep_write(sqe, io->fd, zero_chunk, z->len, z->off);
		io_uring_sqe_set_data(sqe, z);
		z->queued = true;
	}
}

/* The CQE of chunk z: its request when that is now finished, else NULL. */
static struct blk_io_req *zero_result(struct blk_io *io, struct zero_write *z, int res)
{
	struct blk_io_req *r = z->req;

	z->queued = false;
	if (res == -EINTR || res == -EAGAIN)
		return NULL;               /* zero_pump queues it again */
	if (res > 0 && (uint32_t)res < z->len) {
		z->off += (uint64_t)res;   /* short: the rest, likewise */
		z->len -= (uint32_t)res;
		return NULL;
	}
	if (res <= 0 && !r->result) {
		r->result = res < 0 ? res : -EIO;
		if (io->zero_head == r) {  /* hand out no more of it */
			zero_pop(io);
			r->done_bytes = r->len;
		}
	}
	z->req = NULL;
	if (--r->zero_pending || r->done_bytes < r->len)
		return NULL;
	return r;
}

/* A CQE's user data: one of the zero-write slots, or else a request. */
static bool is_zero_write(const struct blk_io *io, const void *data)
{
	uintptr_t p = (uintptr_t)data, first = (uintptr_t)io->zero;

	return p >= first && p < first + sizeof(io->zero);
}

/* After completions made room: the requests that found the SQ full, then the zero writes. */
static void uring_refill(struct blk_io *io)
{
	struct blk_io_req *list = io->backlog_head;

	io->backlog_head = io->backlog_tail = NULL;
	while (list) {
		struct blk_io_req *r = list;

		list = r->next;
		uring_prep(io, r);
	}
	zero_pump(io);
}

/* A CQE for r: true when r is finished (result set), false when it goes on. */
static bool uring_result(struct blk_io *io, struct blk_io_req *r, int res)
{
	if (res == -EINTR || res == -EAGAIN) {
		uring_prep(io, r);
		return false;
	}
	switch (r->op) {
	case BLK_IO_READ:
	case BLK_IO_WRITE:
		if (res < 0) {
			r->result = res;
			return true;
		}
		if (res == 0) {
			r->result = -EIO;
			return true;
		}
		r->done_bytes += (uint64_t)res;
		if (r->done_bytes >= r->len) {
			r->result = 0;
			return true;
		}
		iov_advance(r, (uint64_t)res);
		uring_prep(io, r);
		return false;
	case BLK_IO_FLUSH:
		r->result = res;
		return true;
	case BLK_IO_DISCARD:
	case BLK_IO_WRITE_ZEROES:
		res = falloc_result(res);
		if (res >= 0 || !unsupported(res)) {
			r->result = res < 0 ? res : 0;
			return true;
		}
		if (r->op == BLK_IO_DISCARD) {
			r->result = 0;
			return true;
		}
		if (r->attempt == 0 && !r->unmap) {
			r->attempt = 1;
			uring_prep(io, r);
			return false;
		}
		/* Neither zero range nor punch hole here (EOPNOTSUPP, or EINVAL: alignment). */
		zero_start(io, r);
		return false;
	}
	r->result = -EINVAL;
	return true;
}

/* Reap completions; with wait, block until at least one arrives. Returns how many finished. */
static unsigned uring_reap(struct blk_io *io, bool wait)
{
	unsigned finished = 0;

	for (;;) {
		struct io_uring_cqe *cqe;
		struct blk_io_req *r = NULL;
		void *data;
		int ret, res;

		uring_refill(io);
		ret = io_uring_peek_cqe(&io->ring, &cqe);
		if (ret == -EAGAIN && wait && finished == 0 && io->in_ring) {
			/* What was prepared must reach the kernel before we sleep. */
			ret = io_uring_submit_and_wait(&io->ring, 1);
			if (ret >= 0)
				io->unsubmitted = 0;
			if (ret < 0 && ret != -EINTR) {
				/* Not even submitted (no memory?): the caller is off the loop, retry soon. */
				struct timespec ms = { 0, 1000000 };

				nanosleep(&ms, NULL);
			}
			continue;
		}
		if (ret < 0)
			break;
		data = io_uring_cqe_get_data(cqe);
		res = cqe->res;
		io_uring_cqe_seen(&io->ring, cqe);
		io->in_ring--;
		if (is_zero_write(io, data))
			r = zero_result(io, data, res);
		else if (uring_result(io, data, res))
			r = data;
		if (r) {
			deliver(io, r);
			finished++;
		}
	}
	if (io->unsubmitted) {
		io_uring_submit(&io->ring);
		io->unsubmitted = 0;
	}
	return finished;
}

/* ---- thread pool ------------------------------------------------------------- */

static void *pool_worker(void *arg)
{
	struct blk_io *io = arg;

	pthread_mutex_lock(&io->lock);
	for (;;) {
		struct blk_io_req *r;
		bool was_empty;

		while (!io->work_head && !io->stopping)
			pthread_cond_wait(&io->work_cond, &io->lock);
		if (!io->work_head)
			break;
		r = io->work_head;
		io->work_head = r->next;
		if (!io->work_head)
			io->work_tail = NULL;
		pthread_mutex_unlock(&io->lock);

		r->result = exec_sync(io->fd, r);

		pthread_mutex_lock(&io->lock);
		was_empty = !io->done_head;
		list_append(&io->done_head, &io->done_tail, r);
		pthread_cond_broadcast(&io->done_cond);
		if (was_empty) {
			uint64_t one = 1;

			/* Only a full counter fails, and then the loop is woken anyway. */
			if (write(io->efd, &one, sizeof(one)) < 0) {
			}
		}
	}
	pthread_mutex_unlock(&io->lock);
	return NULL;
}

/* Deliver what the workers finished; with wait, block until something has. */
static unsigned pool_reap(struct blk_io *io, bool wait)
{
	struct blk_io_req *list;
	unsigned finished = 0;

	pthread_mutex_lock(&io->lock);
	while (wait && !io->done_head)
		pthread_cond_wait(&io->done_cond, &io->lock);
	list = io->done_head;
	io->done_head = io->done_tail = NULL;
	pthread_mutex_unlock(&io->lock);
	while (list) {
		struct blk_io_req *r = list;

		list = r->next;
		deliver(io, r);
		finished++;
	}
	return finished;
}

/* ---- interface ----------------------------------------------------------------- */

static void on_completion(void *opaque, int fd, uint32_t events)
{
	struct blk_io *io = opaque;
	uint64_t v;
	unsigned n;

	(void)events;
	if (read(fd, &v, sizeof(v)) < 0) {
		/* EAGAIN: a wake-up already consumed; the reap below still looks. */
	}
	n = io->engine == BLK_IO_URING ? uring_reap(io, false) : pool_reap(io, false);
	if (n)
		io->batch(io->opaque);
}

static int pool_start(struct blk_io *io)
{
	io->nthreads = 0;
	for (unsigned i = 0; i < BLK_IO_THREADS_MAX && i < io->depth; i++) {
		int ret = vmm_thread_create(&io->threads[i], pool_worker, io, "blk-io");

		if (ret)
			return ret;
		io->nthreads++;
	}
	return 0;
}

int blk_io_create(struct blk_io **out, enum blk_io_engine engine, int fd, unsigned depth,
		  blk_io_done_fn *done, blk_io_batch_fn *batch, void *opaque)
{
	struct blk_io *io;
	int ret;

	if (!depth || !done || !batch || fd < 0)
		return -EINVAL;
	io = calloc(1, sizeof(*io));
	if (!io)
		return -ENOMEM;
	io->engine = engine;
	io->fd = fd;
	io->depth = depth;
	io->done = done;
	io->batch = batch;
	io->opaque = opaque;
	pthread_mutex_init(&io->lock, NULL);
	pthread_cond_init(&io->work_cond, NULL);
	pthread_cond_init(&io->done_cond, NULL);

	io->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (io->efd < 0) {
		ret = -errno;
		goto err_free;
	}
	if (engine == BLK_IO_URING) {
		unsigned entries = 1;

		while (entries < depth + BLK_IO_ZERO_SLOTS && entries < BLK_IO_RING_MAX)
			entries <<= 1;
		/* CQ twice the SQ: every in-flight request fits, so the CQ never overflows. */
		ret = io_uring_queue_init(entries, &io->ring, 0);
		if (ret == 0) {
			io->ring_ready = true;
			ret = io_uring_register_eventfd(&io->ring, io->efd);
			if (ret < 0)
				goto err_ring;
		} else {
			pr_info("io_uring unavailable (%s): using the thread pool", strerror(-ret));
			io->engine = BLK_IO_THREADS;
		}
	}
	if (io->engine == BLK_IO_THREADS) {
		ret = pool_start(io);
		if (ret < 0)
			goto err_threads;
	}
	*out = io;
	return 0;

err_threads:
	pthread_mutex_lock(&io->lock);
	io->stopping = true;
	pthread_cond_broadcast(&io->work_cond);
	pthread_mutex_unlock(&io->lock);
	for (unsigned i = 0; i < io->nthreads; i++)
		pthread_join(io->threads[i], NULL);
err_ring:
	if (io->ring_ready)
		io_uring_queue_exit(&io->ring);
	close(io->efd);
err_free:
	pthread_cond_destroy(&io->done_cond);
	pthread_cond_destroy(&io->work_cond);
	pthread_mutex_destroy(&io->lock);
	free(io);
	return ret;
}

void blk_io_destroy(struct blk_io *io)
{
	if (!io)
		return;
	blk_io_detach(io);
	blk_io_drain(io);
	if (io->engine == BLK_IO_THREADS) {
		pthread_mutex_lock(&io->lock);
		io->stopping = true;
		pthread_cond_broadcast(&io->work_cond);
		pthread_mutex_unlock(&io->lock);
		for (unsigned i = 0; i < io->nthreads; i++)
			pthread_join(io->threads[i], NULL);
	}
	if (io->ring_ready)
		io_uring_queue_exit(&io->ring);
	close(io->efd);
	pthread_cond_destroy(&io->done_cond);
	pthread_cond_destroy(&io->work_cond);
	pthread_mutex_destroy(&io->lock);
	free(io);
}

enum blk_io_engine blk_io_engine_of(const struct blk_io *io)
{
	return io->engine;
}

const char *blk_io_engine_name(enum blk_io_engine engine)
{
	return engine == BLK_IO_URING ? "io_uring" : "threads";
}

int blk_io_attach(struct blk_io *io, struct evloop *loop)
{
	if (io->reg)
		return 0;
	return evloop_fd_add(loop, io->efd, EPOLLIN, on_completion, io, &io->reg);
}

void blk_io_detach(struct blk_io *io)
{
	evloop_fd_remove(io->reg);
	io->reg = NULL;
}

void blk_io_submit(struct blk_io *io, struct blk_io_req *req)
{
	req->result = 0;
	req->done_bytes = 0;
	req->attempt = 0;
	io->inflight++;
	if (io->engine == BLK_IO_URING)
		uring_prep(io, req);
	else
		list_append(&io->pending_head, &io->pending_tail, req);
}

void blk_io_kick(struct blk_io *io)
{
	if (io->engine == BLK_IO_URING) {
		uring_refill(io);
		if (io->unsubmitted) {
			io_uring_submit(&io->ring);
			io->unsubmitted = 0;
		}
		return;
	}
	if (!io->pending_head)
		return;
	pthread_mutex_lock(&io->lock);
	if (io->work_tail)
		io->work_tail->next = io->pending_head;
	else
		io->work_head = io->pending_head;
	io->work_tail = io->pending_tail;
	pthread_cond_broadcast(&io->work_cond);
	pthread_mutex_unlock(&io->lock);
	io->pending_head = io->pending_tail = NULL;
}

unsigned blk_io_inflight(const struct blk_io *io)
{
	return io->inflight;
}

void blk_io_drain(struct blk_io *io)
{
	bool any = false;

	blk_io_kick(io);
	while (io->inflight) {
		unsigned n = io->engine == BLK_IO_URING ? uring_reap(io, true) : pool_reap(io, true);

		any |= n > 0;
	}
	if (any)
		io->batch(io->opaque);
}
