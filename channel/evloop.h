/* SPDX-License-Identifier: MIT */
/*
 * evloop: the epoll event loop the device threads run.
 *
 * One thread calls evloop_run(); devices register fds (ioeventfds, tap fds,
 * sockets), timers and one-shot operations with a callback and an opaque
 * pointer.  Every callback runs on the loop thread, one at a time.
 *
 * Removal is synchronous: once evloop_fd_remove(), evloop_timer_remove() or
 * evloop_op_cancel() returns -- from ANY thread -- the callback is not running
 * and will never run again.  That is what makes device pause safe: the vCPU
 * thread removes a device's registrations and may then touch its state.
 * (Called from the loop thread, e.g. from inside a callback, removal never
 * waits: only the caller's own callback can be running there.)
 * The price of waiting: a caller on another thread must not hold a lock that
 * the callback takes, or the two wait for each other forever. Drop the lock
 * around the removal, or do it on the loop thread (an evloop_op_start() whose
 * callback removes).
 *
 * Every call below is thread-safe unless it says otherwise.
 * Functions return 0 (or a count) on success and a negative errno on failure.
 */
#ifndef CHANNEL_EVLOOP_H
#define CHANNEL_EVLOOP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

#define EVLOOP_WUR __attribute__((warn_unused_result))

struct evloop;
struct evloop_fd;
struct evloop_timer;

/* ---- the loop ------------------------------------------------------------ */

/* Creates a loop.  *out is set only on success.  Returns 0, -ENOMEM, or the
 * errno of epoll_create1/eventfd. */
EVLOOP_WUR int evloop_create(struct evloop **out);

/* Frees the loop.  The loop must not be running.  Registrations still present
 * are freed without calling their callbacks.  Operations it still holds
 * (pending, or completed with the callback yet to run) are dropped: their
 * callbacks never run, and each is left idle and detached as if never started
 * (evloop_op_pending() false, evloop_op_complete() -EALREADY,
 * evloop_op_cancel() false), free to start on any loop.  An op that went idle
 * before (its callback ran, or it was cancelled) still refers to this loop:
 * once it is destroyed, only start such an op again or discard it.  NULL is a
 * no-op. */
void evloop_destroy(struct evloop *loop);

/* Runs the loop on the calling thread until evloop_stop().  Ready events are
 * processed in batches (up to 64 per epoll_wait).  Only one thread may run a
 * loop at a time (-EBUSY otherwise).  Each evloop_stop() request is consumed
 * by the evloop_run() it ends, so a stop issued before evloop_run() starts
 * makes that run return at once.  Returns 0 or a negative errno from
 * epoll_wait (EINTR is retried). */
EVLOOP_WUR int evloop_run(struct evloop *loop);

/* Waits at most timeout_ms (-1: forever, 0: poll) for events and processes
 * one batch.  Returns the number of callbacks run (0 on timeout or wake-up),
 * -EBUSY if another thread is running the loop.  Ignores evloop_stop(). */
EVLOOP_WUR int evloop_run_once(struct evloop *loop, int timeout_ms);

/* Asks evloop_run() to return after the batch in progress.  Any thread,
 * async-signal-unsafe (takes a lock).  Idempotent until consumed. */
void evloop_stop(struct evloop *loop);

/* Makes the loop's current (or next) wait return so it re-examines its state;
 * no callback runs.  Any thread; async-signal-safe (one eventfd write). */
void evloop_wake(struct evloop *loop);

/* True when called on the thread currently running the loop. */
bool evloop_in_loop_thread(const struct evloop *loop);

/* ---- fd callbacks (level-triggered unless EPOLLET is passed) ------------- */

/* events: the epoll mask that was ready (EPOLLIN, EPOLLOUT, EPOLLHUP, ...). */
typedef void (*evloop_fd_fn)(void *opaque, int fd, uint32_t events);

/* Watches fd for events (EPOLLIN, EPOLLOUT, EPOLLPRI, EPOLLRDHUP, optionally
 * EPOLLET; EPOLLERR/EPOLLHUP are always reported).  The loop does not own fd:
 * the caller keeps it open until evloop_fd_remove() returns.  One fd may be
 * registered once per loop (-EEXIST).  Returns 0 and sets *out (before the
 * first callback can run, so a callback may use it), -EINVAL for a
 * bad mask or NULL fn, -ENOMEM, or the errno of epoll_ctl (-EPERM for regular
 * files, -EBADF). */
EVLOOP_WUR int evloop_fd_add(struct evloop *loop, int fd, uint32_t events,
			     evloop_fd_fn fn, void *opaque,
			     struct evloop_fd **out);

/* Changes the event mask of a registration (0 pauses it: only ERR/HUP are
 * then reported).  Returns 0, -EINVAL, or the errno of epoll_ctl. */
EVLOOP_WUR int evloop_fd_modify(struct evloop_fd *reg, uint32_t events);

/* Removes and frees reg.  On return the callback is not running (it waits for
 * a run in progress on the loop thread) and will never run again, even for
 * events already fetched in the current batch.  From inside the callback of
 * reg itself it returns at once; the callback may finish normally.  NULL is a
 * no-op. */
void evloop_fd_remove(struct evloop_fd *reg);

/* ---- timers (timerfd, CLOCK_MONOTONIC) ----------------------------------- */

/* expirations: how many periods elapsed since the last call (>= 1). */
typedef void (*evloop_timer_fn)(void *opaque, uint64_t expirations);

/* Creates a disarmed timer.  Returns 0 and sets *out, -EINVAL, -ENOMEM, or
 * the errno of timerfd_create/epoll_ctl. */
EVLOOP_WUR int evloop_timer_add(struct evloop *loop, evloop_timer_fn fn,
				void *opaque, struct evloop_timer **out);

/* Arms timer to fire first after first_ns, then every period_ns (0: once).
 * first_ns == 0 disarms it; an expiration already fetched but not yet
 * delivered is dropped.  Returns 0 or -errno of timerfd_settime. */
EVLOOP_WUR int evloop_timer_arm(struct evloop_timer *timer, uint64_t first_ns,
				uint64_t period_ns);

/* Removes and frees timer, with the same guarantee as evloop_fd_remove(). */
void evloop_timer_remove(struct evloop_timer *timer);

/* ---- one-shot operations (completion style) ------------------------------ */

/*
 * An operation is caller-owned storage (embed it in your device) that the
 * loop borrows from start until either its callback has run or
 * evloop_op_cancel() has returned.  Its callback runs at most once per start.
 *
 * It is pending from start until it completes (evloop_op_complete() returns
 * 0, or the loop finds the fd ready or the timeout passed) or is cancelled.
 * A completed op is no longer pending, but the loop holds it until its
 * callback has run: evloop_op_cancel() can still stop that callback, and
 * starting the op again fails with -EBUSY.
 *
 * result passed to the callback:
 *   evloop_op_start_fd():  the ready epoll mask (> 0), or -ETIMEDOUT;
 *   evloop_op_start():     the value given to evloop_op_complete().
 *
 * Inside the callback the op is already idle and may be started again.
 */
struct evloop_op;
typedef void (*evloop_op_fn)(struct evloop_op *op, int result, void *opaque);

struct evloop_op {
	/* Private: owned by the loop while it holds the op.  Zero-initialise
	 * (or use EVLOOP_OP_INIT) before the first start. */
	struct evloop *loop;
	evloop_op_fn fn;
	void *opaque;
	struct evloop_op *next, *prev;
	int state;
	int result;
	int fd;
	uint32_t events;
	uint32_t slot;
	uint64_t deadline_ns;
};
#define EVLOOP_OP_INIT { 0 }

/* Starts a one-shot wait for events on fd (as for evloop_fd_add, no EPOLLET),
 * completing with the ready mask, or with -ETIMEDOUT after timeout_ms
 * (-1: no timeout).  fd must not also be registered with evloop_fd_add, and
 * must stay open until completion or cancel.  Returns 0, -EBUSY if the loop
 * still holds op (pending, or completed with its callback yet to run),
 * -EINVAL, -ENOMEM, or the errno of epoll_ctl. */
EVLOOP_WUR int evloop_op_start_fd(struct evloop *loop, struct evloop_op *op,
				  int fd, uint32_t events, int timeout_ms,
				  evloop_op_fn fn, void *opaque);

/* Starts an operation that completes when someone calls
 * evloop_op_complete() (work finished on another thread, a request answered,
 * ...).  Returns 0, -EBUSY if the loop still holds op (as for
 * evloop_op_start_fd), -EINVAL. */
EVLOOP_WUR int evloop_op_start(struct evloop *loop, struct evloop_op *op,
			       evloop_op_fn fn, void *opaque);

/* Completes an op started with evloop_op_start(): from now on it is not
 * pending, and its callback will run on the loop thread with result (unless
 * cancelled first).  Any thread.  Returns 0; -EALREADY if the op is not
 * pending (already completed or cancelled, or never started) -- the caller
 * must then not touch the op, it may be freed; -EINVAL if it is a pending
 * evloop_op_start_fd() op, which only the loop completes. */
int evloop_op_complete(struct evloop_op *op, int result);

/* Cancels op.  Returns true if it was cancelled: its callback had not run and
 * now never will -- op was pending, or completed with its callback yet to
 * run (that completion is discarded).  Returns false if the callback has
 * already run, or op was never started or already cancelled; if the callback
 * is running on the loop thread right now, waits for it to return first.
 * Either way, on return the loop no longer uses op and the caller may free
 * it.  From inside op's own callback it never waits: false, unless the
 * callback started op again (that new start is then cancelled: true). */
bool evloop_op_cancel(struct evloop_op *op);

/* True while op is pending: started, and neither completed nor cancelled.
 * False once evloop_op_complete() has returned 0, though the callback may
 * still be queued (evloop_op_cancel() would still stop it); false inside
 * the op's own callback, until the callback starts it again. */
bool evloop_op_pending(const struct evloop_op *op);

#endif /* CHANNEL_EVLOOP_H */
