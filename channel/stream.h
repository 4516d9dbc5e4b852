/* SPDX-License-Identifier: MIT */
/*
 * stream: a connected channel pair between two ends (threads or processes).
 *
 *   STREAM_BYTE     a byte stream (AF_UNIX SOCK_STREAM underneath);
 *   STREAM_MESSAGE  message framing (SOCK_SEQPACKET): one write is one read,
 *                   boundaries kept, at most max_msg bytes per message.
 *
 * Each end is blocking or non-blocking on its own, with optional read and
 * write timeouts.  Each end has two pollable fds, both owned by the end:
 *   read notifier:  readable exactly while a read would not block -- data is
 *                   queued, or the peer is gone (the read then returns 0).
 *                   It follows every read, partial or not, with no extra
 *                   call: it is an epoll fd watching the end's socket.
 *   close notifier: readable once the peer end is closed, including when the
 *                   process holding it dies (kill -9), and from then on.
 * An end can be handed to another process (stream_send_end over SCM_RIGHTS,
 * or stream_export/stream_import across fork+exec); the peer's close notifier
 * does not fire, since the peer's socket stays open in the receiver.
 *
 * Writing to a closed peer fails with -EPIPE; SIGPIPE is never raised.
 * One reader and one writer may use an end concurrently; two concurrent
 * readers (or writers) on one end are not supported.
 * Functions return 0 (or a byte count) or a negative errno.
 */
#ifndef CHANNEL_STREAM_H
#define CHANNEL_STREAM_H

#include <stddef.h>
#include <sys/types.h>

enum stream_framing {
	STREAM_BYTE,
	STREAM_MESSAGE,
};

enum stream_blocking {
	STREAM_BLOCKING,
	STREAM_NONBLOCKING,
};

#define STREAM_DEFAULT_MAX_MSG (64u * 1024u)

struct stream_end;

/* Creates a connected pair.  max_msg (message mode; 0 = the default 64 KiB)
 * is the largest message either end may write.  Every end that accepts a
 * max_msg (here, stream_recv_end, stream_import, stream_adopt) can write a message that
 * long: max_msg is at most 4 MiB (an AF_UNIX message is one kernel buffer)
 * and the socket send buffer is grown to hold it, within what the system
 * allows (net.core.wmem_max; about 415 KiB of max_msg with the defaults),
 * else -EINVAL.  In byte mode max_msg is ignored.  Returns 0 and sets *a and
 * *b, -EINVAL, -ENOMEM, or the errno of socketpair/epoll_create1. */
__attribute__((warn_unused_result))
int stream_pair(enum stream_framing framing, size_t max_msg,
		enum stream_blocking a_mode, enum stream_blocking b_mode,
		struct stream_end **a, struct stream_end **b);

/* Closes the end: the peer's close notifier fires (unless the end's socket
 * is still open elsewhere, e.g. it was handed to another process).  NULL is
 * a no-op. */
void stream_close(struct stream_end *end);

/* Reads up to len bytes.
 *   byte mode:    returns 1..len bytes as available (a partial read is
 *                 normal), 0 at end of stream (peer closed).
 *   message mode: returns the whole next message; if it is longer than len,
 *                 fails with -EMSGSIZE and the message stays queued (retry
 *                 with a bigger buffer), however long it is -- even longer
 *                 than this end's max_msg (a foreign writer, or a peer end
 *                 that announced a larger max_msg).  0 means the peer closed.
 * Blocking end: waits for data up to the read timeout (-ETIMEDOUT).
 * Non-blocking end: -EAGAIN if nothing is queued.  len == 0 is -EINVAL.
 * -ECONNRESET if the peer closed with our data unread. */
ssize_t stream_read(struct stream_end *end, void *buf, size_t len);

/* Writes buf.
 *   byte mode:    blocking end: writes all of it, waiting for room, unless
 *                 the write timeout passes (then the count written so far,
 *                 or -ETIMEDOUT if none).  Non-blocking end: writes what fits
 *                 now (-EAGAIN if nothing does).
 *   message mode: one message, all or nothing.  len > max_msg: -EMSGSIZE;
 *                 len == 0: -EINVAL (0 is reserved for end-of-stream).
 *                 Blocking: waits for room up to the write timeout
 *                 (-ETIMEDOUT); non-blocking: -EAGAIN if it does not fit.
 *                 -ENOBUFS if the kernel cannot allocate a large message
 *                 right now (it needs contiguous memory).
 * Peer closed: -EPIPE, never SIGPIPE. */
ssize_t stream_write(struct stream_end *end, const void *buf, size_t len);

/* Switches this end between blocking and non-blocking (the peer is not
 * affected).  Returns 0 or -EINVAL. */
int stream_set_blocking(struct stream_end *end, enum stream_blocking mode);

/* Sets the read and write timeouts of a blocking end in milliseconds; -1
 * waits forever (the default).  Returns 0 or -EINVAL (< -1). */
int stream_set_timeouts(struct stream_end *end, int read_ms, int write_ms);

/* The pollable notifiers described above (owned by the end; do not close).
 * Each is made on its first call (an end that is only watched through
 * stream_fd never pays for them); -errno (-EMFILE, -ENOMEM) if that fails. */
int stream_read_notifier(const struct stream_end *end);
int stream_close_notifier(const struct stream_end *end);

/* The end's socket, for EPOLLOUT waits on a non-blocking writer.  Owned by
 * the end; read and write through stream_read/stream_write only. */
int stream_fd(const struct stream_end *end);

enum stream_framing stream_framing_of(const struct stream_end *end);
size_t stream_max_msg(const struct stream_end *end);

/* Sends the end over the connected AF_UNIX socket sock (SCM_RIGHTS) together
 * with its framing and max_msg, then closes it locally without the peer
 * noticing.  On failure the end is left untouched.  Returns 0 or -errno. */
__attribute__((warn_unused_result))
int stream_send_end(int sock, struct stream_end *end);

/* Receives an end sent by stream_send_end, as a mode end.  Everything read
 * from sock is validated (message size, exactly one fd, an AF_UNIX socket of
 * the announced type, a max_msg the socket can carry as for stream_pair):
 * -EBADMSG otherwise, with any received fd closed.  Returns 0 and sets *out,
 * -EBADMSG, -ENOMEM, or -errno of recvmsg (0 bytes read: -ECONNRESET). */
__attribute__((warn_unused_result))
int stream_recv_end(int sock, enum stream_blocking mode, struct stream_end **out);

/* Prepares the end to be inherited across exec: clears FD_CLOEXEC on its
 * socket and writes a description ("stream:<fd>:<b|m>:<max_msg>") into buf.
 * The exporting process should stream_close() its copy once the child has
 * started; that does not fire the peer's close notifier.  Returns 0, or
 * -ENOSPC if len is too small (64 bytes is always enough). */
__attribute__((warn_unused_result))
int stream_export(struct stream_end *end, char *buf, size_t len);

/* Adopts an end from a description made by stream_export (in the child after
 * exec).  The description is parsed strictly and the fd and max_msg checked
 * like stream_recv_end does: -EINVAL otherwise (the fd is then left open).
 * Returns 0 and sets *out. */
__attribute__((warn_unused_result))
int stream_import(const char *desc, enum stream_blocking mode, struct stream_end **out);

/* Makes an end of a connected AF_UNIX socket this process made itself
 * (accept4 or socket + connect, with SOCK_CLOEXEC) of the type framing needs:
 * SOCK_STREAM for STREAM_BYTE (max_msg 0), SOCK_SEQPACKET for STREAM_MESSAGE.
 * The caller vouches for the type and close-on-exec, so nothing is checked
 * with a system call (stream_import checks a foreign fd); a message end's send
 * buffer is sized as for stream_pair.  On success the end owns fd.  Returns 0
 * and sets *out, -EINVAL (bad parameters, or a send buffer that cannot carry
 * max_msg; fd left open) or -ENOMEM. */
__attribute__((warn_unused_result))
int stream_adopt(int fd, enum stream_framing framing, size_t max_msg, enum stream_blocking mode,
		 struct stream_end **out);

#endif /* CHANNEL_STREAM_H */
