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
#include <unistd.h>

#include "channel/evloop.h"
#include "devices/blk_io.h"

#define BLK_IO_THREADS_MAX 4u
#define BLK_IO_RING_MAX    4096u

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

/* fallocate mode for the request's current attempt. */
static int falloc_mode(const struct blk_io_req *r)
{
	if (r->op == BLK_IO_WRITE_ZEROES && !r->unmap && r->attempt == 0)
		return FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
	return FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
}

/* Last resort for WRITE_ZEROES where fallocate cannot: write zero pages. */
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
		int ret = fallocate(fd, falloc_mode(r), (off_t)r->off, (off_t)r->len) ? -errno : 0;

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

static void uring_prep(struct blk_io *io, struct blk_io_req *r)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&io->ring);

	if (!sqe) {
		/* The SQ is sized for depth, but submit and retry rather than trust that. */
		io_uring_submit(&io->ring);
		io->unsubmitted = 0;
		sqe = io_uring_get_sqe(&io->ring);
		if (!sqe) {
			r->result = exec_sync(io->fd, r);
			list_append(&io->done_head, &io->done_tail, r);
			return;
		}
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
		io_uring_prep_fallocate(sqe, io->fd, falloc_mode(r), r->off, r->len);
		break;
	}
	io_uring_sqe_set_data(sqe, r);
	io->unsubmitted++;
}

/* A CQE for r: true when r is finished (result set), false when resubmitted. */
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
		r->result = write_zeroes_sync(io->fd, r->off, r->len);
		return true;
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
		int ret;

		if (wait && finished == 0 && !io->done_head) {
			/* Resubmissions queued above must reach the kernel before we sleep. */
			if (io->unsubmitted) {
				io_uring_submit(&io->ring);
				io->unsubmitted = 0;
			}
			ret = io_uring_wait_cqe(&io->ring, &cqe);
		} else
			ret = io_uring_peek_cqe(&io->ring, &cqe);
		if (ret == -EINTR)
			continue;
		if (ret < 0)
			break;
		struct blk_io_req *r = io_uring_cqe_get_data(cqe);
		int res = cqe->res;

		io_uring_cqe_seen(&io->ring, cqe);
		if (uring_result(io, r, res)) {
			deliver(io, r);
			finished++;
		}
	}
	/* Synchronous fallbacks taken in uring_prep. */
	while (io->done_head) {
		struct blk_io_req *r = io->done_head;

		io->done_head = r->next;
		if (!io->done_head)
			io->done_tail = NULL;
		deliver(io, r);
		finished++;
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

		while (entries < depth && entries < BLK_IO_RING_MAX)
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
		if (io->unsubmitted) {
			io_uring_submit(&io->ring);
			io->unsubmitted = 0;
		}
		/* Requests that fell back to synchronous execution complete now. */
		if (io->done_head) {
			uint64_t one = 1;

			if (write(io->efd, &one, sizeof(one)) < 0) {
			}
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
