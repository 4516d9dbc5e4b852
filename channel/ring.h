/* SPDX-License-Identifier: MIT */
/*
 * ring: a single-producer / single-consumer ring of variable-length messages
 * in shared memory (a sealed memfd or a file), for two processes or threads.
 *
 * Layout: one 4 KiB header page (magic, version, geometry, the producer's
 * tail and the consumer's head on separate cache lines, wake-up words,
 * attach and busy flags, operation counts), then data_size bytes of records.
 * A record is an 8-byte header {len, type} and the payload padded to 8
 * bytes; a message never straddles the end: a WRAP marker sends the consumer
 * to offset 0.
 *
 * Crash consistency: the producer publishes a message -- wrap marker
 * included -- with one 64-bit release store of tail.  If it dies at any
 * instruction, the message is either wholly visible or not at all; the
 * consumer likewise consumes with one store of head, so a consumer dying
 * mid-pop leaves the message to be read again.  A new producer or consumer
 * may open the ring after a crash and carries on from the stored tail/head.
 *
 * Everything in the shared mapping is untrusted: it is checked on open
 * (magic, version, sizes, a checksum of the geometry, the file's size and
 * memfd seals) and the indices and record headers are checked on every use.
 * A bad value yields -EPROTO from then on, never a crash or an access outside
 * the mapping.  (A file-backed ring cannot be sealed: a peer that truncates
 * the file can still make the other side fault.  Use memfd across trust
 * boundaries.)
 *
 * Peer liveness: each side holds an OFD lock on its own byte of the file
 * while attached, so a waiter tells apart
 *   -ETIMEDOUT   its timeout ran out; the peer is attached and alive;
 *   -EDEADLK     the peer is alive but has been stuck in the middle of one
 *                push/pop for at least the stall limit (opts.stall_ms),
 *                timed from the first wait of this handle (in this call or
 *                an earlier one) that found it busy in that push/pop: waits
 *                shorter than the limit still learn of it, after about the
 *                limit, and then every wait does while it stays stuck;
 *   -EOWNERDEAD  the peer died while attached (its lock went away);
 *   -EPIPE       no peer is attached (it closed cleanly, or never opened).
 * The consumer gets every published message before any of these.
 *
 * Wake-ups: RING_WAKE_FUTEX (futex on the shared header; no fds to pass) or
 * RING_WAKE_EVENTFD (two eventfds both sides must share, so the consumer can
 * poll one in an event loop).  A waiter spins briefly (opts.spin_us) before
 * sleeping.
 *
 * A handle is used by one thread at a time.  Functions return 0 (or a
 * length) or a negative errno.
 */
#ifndef CHANNEL_RING_H
#define CHANNEL_RING_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define RING_MIN_SIZE  1024u
#define RING_MAX_SIZE  (1u << 30)
#define RING_HDR_SIZE  4096u

enum ring_wake {
	RING_WAKE_FUTEX = 1,
	RING_WAKE_EVENTFD = 2,
};

enum ring_role {
	RING_PRODUCER,
	RING_CONSUMER,
};

enum ring_peer {
	RING_PEER_ALIVE,  /* attached and holding its lock */
	RING_PEER_ABSENT, /* never attached, or detached cleanly */
	RING_PEER_DEAD,   /* attached, but its process is gone */
};

struct ring_opts {
	/* RING_WAKE_EVENTFD: eventfds shared by both sides (the ring dups
	 * them); ignored otherwise.  data: producer -> consumer, space:
	 * consumer -> producer. */
	int data_efd, space_efd;
	/* Microseconds to busy-poll before sleeping: pays off when the peer
	 * runs on another CPU, wastes at most this much when it does not.
	 * 0: the default, 20 us; negative: sleep at once. */
	int spin_us;
	/* A peer stuck mid-operation this long, timed across our waits, is
	 * reported as stalled (-EDEADLK); 0: the default, 1000 ms. */
	int stall_ms;
};

struct ring;

/* Creates an anonymous ring: a memfd of RING_HDR_SIZE + data_size bytes,
 * sealed against shrinking and growing, with an empty ring.  data_size is a
 * power of two in [RING_MIN_SIZE, RING_MAX_SIZE].  The caller owns *fd_out
 * and passes it to ring_open (in this process or, e.g. via SCM_RIGHTS, in
 * another).  Returns 0, -EINVAL, or -errno of memfd_create/ftruncate/mmap. */
__attribute__((warn_unused_result))
int ring_create_memfd(size_t data_size, enum ring_wake wake, int *fd_out);

/* Same, in a new file at path (created with O_EXCL, mode 0600): -EEXIST if
 * it exists.  The header's magic is written last, so a creator dying half way
 * leaves a file that ring_open rejects. */
__attribute__((warn_unused_result))
int ring_create_file(const char *path, size_t data_size, enum ring_wake wake);

/* Attaches to a ring as role.  fd is not consumed (the ring opens its own
 * file description through /proc/self/fd).  opts may be NULL in futex mode.
 * Returns 0 and sets *out, or:
 *   -EBADMSG     bad magic, geometry, checksum or file size (corrupt/foreign);
 *   -EPROTONOSUPPORT  a different format version;
 *   -EPROTO      the indices in the header are inconsistent;
 *   -EPERM       a memfd without the shrink seal;
 *   -EBUSY       another live process holds this role;
 *   -EINVAL      bad arguments, or eventfd mode without valid eventfds;
 *   -errno       from open/fstat/mmap/fcntl. */
__attribute__((warn_unused_result))
int ring_open(int fd, enum ring_role role, const struct ring_opts *opts, struct ring **out);

/* Same, opening the file at path. */
__attribute__((warn_unused_result))
int ring_open_path(const char *path, enum ring_role role, const struct ring_opts *opts,
		   struct ring **out);

/* Detaches cleanly: the peer then sees RING_PEER_ABSENT (after draining what
 * was published).  NULL is a no-op. */
void ring_close(struct ring *ring);

/* Producer: appends one message of len bytes (0 allowed, at most
 * ring_max_msg).  timeout_ms: 0 never waits (-EAGAIN if full), -1 waits
 * forever, else at most that long.  Returns 0, -EMSGSIZE, -EAGAIN,
 * -ETIMEDOUT, -EDEADLK, -EOWNERDEAD, -EPIPE (see above), -EPROTO, or -EINVAL
 * when called on a consumer. */
int ring_push(struct ring *ring, const void *msg, size_t len, int timeout_ms);

/* Consumer: takes the next message into buf and returns its length.  If it
 * is longer than len: -EMSGSIZE and the message stays.  timeout_ms as for
 * ring_push (-EAGAIN when empty and 0).  Other errors as for ring_push. */
ssize_t ring_pop(struct ring *ring, void *buf, size_t len, int timeout_ms);

/* Largest message: data_size / 2 - 8. */
size_t ring_max_msg(const struct ring *ring);

/* The peer's state right now (one fcntl). */
enum ring_peer ring_peer_state(const struct ring *ring);

/* Eventfd mode: the fd to poll for EPOLLIN -- the data eventfd for the
 * consumer, the space eventfd for the producer.  -EOPNOTSUPP in futex mode.
 * Use with ring_wait_prepare(): */
int ring_poll_fd(const struct ring *ring);

/* Before sleeping on ring_poll_fd: clears the eventfd, tells the peer to
 * signal it, and re-checks.  Returns 1 if a message (consumer) or room for a
 * max-size message (producer) is already there -- pop/push now instead of
 * sleeping -- or 0 when it is safe to wait for the fd.  -EPROTO if corrupt. */
int ring_wait_prepare(struct ring *ring);

#ifdef VMM_TESTING
/* Fail points, compiled into test builds only.  Each names a step of
 * ring_push (in order) or ring_pop.  When the armed point is reached the
 * calling process raises the signal: SIGKILL (dies right there, like kill -9)
 * or SIGSTOP (stalls there until killed or continued). */
enum ring_fp_action {
	RING_FP_OFF,
	RING_FP_KILL,
	RING_FP_STOP,
};

extern const char *const ring_push_failpoints[]; /* NULL-terminated, in order */
extern const char *const ring_pop_failpoints[];

/* Arms one fail point by name for this process (NULL/RING_FP_OFF disarms).
 * Returns 0, or -ENOENT for an unknown name. */
int ring_failpoint_set(const char *name, enum ring_fp_action action);
#endif

#endif /* CHANNEL_RING_H */
