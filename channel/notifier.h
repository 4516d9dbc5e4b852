/* SPDX-License-Identifier: MIT */
/*
 * notifier: an eventfd wrapper.
 *
 * A notifier holds a 64-bit counter.  notifier_signal() adds to it; the fd
 * (notifier_fd) polls readable exactly while the counter is non-zero.
 *   NOTIFIER_COUNTER:   a wait takes the whole count and resets it to 0;
 *   NOTIFIER_SEMAPHORE: a wait takes 1 and leaves the rest.
 * The counter lives in the kernel, so a notifier's fd may be shared with
 * other threads and processes (fork, SCM_RIGHTS); the mode travels with it.
 * Every call is thread-safe.  Functions return 0 or a negative errno.
 */
#ifndef CHANNEL_NOTIFIER_H
#define CHANNEL_NOTIFIER_H

#include <stdbool.h>
#include <stdint.h>

enum notifier_mode {
	NOTIFIER_COUNTER,
	NOTIFIER_SEMAPHORE,
};

struct notifier {
	int fd;       /* eventfd, O_NONBLOCK | O_CLOEXEC; -1 when closed */
	bool counter; /* made in NOTIFIER_COUNTER mode: one read takes the whole count */
};

/* Creates a notifier with counter 0.  Returns 0, -EINVAL for a bad mode, or
 * the errno of eventfd (-EMFILE, -ENOMEM, ...). */
__attribute__((warn_unused_result))
int notifier_init(struct notifier *n, enum notifier_mode mode);

/* Wraps an eventfd received from elsewhere (inherited or via SCM_RIGHTS); the
 * notifier owns fd from now on and sets O_NONBLOCK on it.  Returns 0, or
 * -EINVAL if fd is not an eventfd. */
__attribute__((warn_unused_result))
int notifier_adopt(struct notifier *n, int fd);

/* Closes the fd.  Safe to call twice or on a zeroed notifier with fd -1. */
void notifier_destroy(struct notifier *n);

/* Adds 1 to the counter, waking waiters and pollers.  Async-signal-safe.
 * Returns 0, or -EOVERFLOW if the counter is at its maximum
 * (0xfffffffffffffffe, i.e. nobody has consumed it for 2^64 signals). */
int notifier_signal(struct notifier *n);

/* Adds value (1 .. 0xfffffffffffffffe) to the counter.  Returns 0, -EINVAL,
 * or -EOVERFLOW if the sum would overflow (the counter is left unchanged). */
int notifier_add(struct notifier *n, uint64_t value);

/* Waits until the counter is non-zero, then consumes it as the mode says and
 * stores what was consumed in *value (may be NULL).  timeout_ms: -1 waits
 * forever, 0 polls.  Returns 0, -ETIMEDOUT when the time ran out (-EAGAIN when
 * timeout_ms is 0), or another -errno.  EINTR is retried with the remaining
 * time. */
__attribute__((warn_unused_result))
int notifier_wait(struct notifier *n, int timeout_ms, uint64_t *value);

/* Resets the counter to 0 without blocking (in semaphore mode: drains it).
 * Returns how many signals were consumed (0 if none), or -errno. */
int64_t notifier_reset(struct notifier *n);

/* True if the counter is non-zero right now (does not consume). */
bool notifier_is_set(const struct notifier *n);

/* The pollable fd (readable while the counter is non-zero), owned by the
 * notifier: do not close it.  Register it with evloop_fd_add(EPOLLIN). */
static inline int notifier_fd(const struct notifier *n)
{
	return n->fd;
}

#endif /* CHANNEL_NOTIFIER_H */
