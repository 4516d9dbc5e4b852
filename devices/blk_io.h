/*
 * blk_io: the block I/O engine behind virtio-blk. Requests on one image fd
 * run asynchronously, either on io_uring or on a small thread pool; their
 * completions are delivered on the event-loop thread.
 *
 * Use, all from the event-loop thread (or from a thread that owns the engine
 * because it is detached, see blk_io_drain):
 *
 *   blk_io_create(&io, BLK_IO_URING, fd, depth, done, batch, opaque)
 *   blk_io_attach(io, loop)       completions now arrive on the loop
 *   blk_io_submit(io, req) ...    queue requests
 *   blk_io_kick(io)               hand everything queued to the kernel / pool
 *   ... done(opaque, req) per request, then batch(opaque), on the loop ...
 *   blk_io_detach(io)             synchronous: no callback runs after it
 *   blk_io_drain(io)              wait for in-flight requests, calling done
 *   blk_io_destroy(io)            drains first
 *
 * The engine finishes a request entirely: short reads and writes are
 * resubmitted for the rest, and the result is 0 or a negative errno.
 * At most `depth` requests may be in flight; the caller enforces it.
 * Nothing runs synchronously on the owner's thread: where fallocate cannot
 * zero a range (EOPNOTSUPP, or EINVAL for an alignment the device refuses),
 * io_uring writes zeroes in 256 KiB chunks, at most four in flight per
 * engine; the thread pool writes them on a worker.
 */
#ifndef DEVICES_BLK_IO_H
#define DEVICES_BLK_IO_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vmm/util.h"

struct evloop;
struct blk_io;

enum blk_io_engine {
	BLK_IO_URING,      /* io_uring, one ring per engine */
	BLK_IO_THREADS,    /* preadv/pwritev on a pool of worker threads */
};

enum blk_io_op {
	BLK_IO_READ,
	BLK_IO_WRITE,
	BLK_IO_FLUSH,          /* fdatasync */
	BLK_IO_DISCARD,        /* punch a hole; success even where unsupported */
	BLK_IO_WRITE_ZEROES,   /* zero range (or punch a hole when unmap) */
};

struct blk_io_req {
	/* Filled by the caller. iov is modified in place for short transfers. */
	enum blk_io_op op;
	uint64_t off;          /* byte offset in the image */
	uint64_t len;          /* bytes: READ/WRITE (sum of iov), DISCARD, WRITE_ZEROES */
	struct iovec *iov;
	unsigned iovcnt;
	bool unmap;            /* WRITE_ZEROES: the range may be deallocated */

	/* Set by the engine before done() is called. */
	int result;            /* 0 or -errno */

	/* Private to the engine. */
	uint64_t done_bytes;   /* transferred; for zeroes written out, handed to chunks */
	int attempt;           /* fallocate fallback step */
	unsigned zero_pending; /* chunks of zeroes in flight */
	struct blk_io_req *next;
};

typedef void blk_io_done_fn(void *opaque, struct blk_io_req *req);
typedef void blk_io_batch_fn(void *opaque);

/*
 * Create an engine on fd (not owned). depth: the most requests in flight.
 * BLK_IO_URING falls back to BLK_IO_THREADS when io_uring is unavailable.
 * Returns 0 or -errno.
 */
int blk_io_create(struct blk_io **out, enum blk_io_engine engine, int fd, unsigned depth,
		  blk_io_done_fn *done, blk_io_batch_fn *batch, void *opaque) WUR;
void blk_io_destroy(struct blk_io *io);

/* The engine actually in use (after a fallback). */
enum blk_io_engine blk_io_engine_of(const struct blk_io *io);
const char *blk_io_engine_name(enum blk_io_engine engine);

/* Register / unregister the completion eventfd on loop. Detach is synchronous. */
int blk_io_attach(struct blk_io *io, struct evloop *loop) WUR;
void blk_io_detach(struct blk_io *io);

void blk_io_submit(struct blk_io *io, struct blk_io_req *req);
void blk_io_kick(struct blk_io *io);

/* Requests submitted and not yet completed through done(). */
unsigned blk_io_inflight(const struct blk_io *io);

/*
 * With the engine detached (or never attached), wait for every in-flight
 * request and deliver done()/batch() on the calling thread.
 */
void blk_io_drain(struct blk_io *io);

#ifdef VMM_TESTING
/*
 * Make every fallocate (DISCARD, WRITE_ZEROES) of every engine fail with
 * -err, as on a file system without it (EOPNOTSUPP) or a device that refuses
 * the alignment (EINVAL); 0 lets the real fallocate run again.
 */
void blk_io_test_fail_fallocate(int err);
#endif

#endif
