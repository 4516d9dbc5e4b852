// SPDX-License-Identifier: MIT
/* Unit tests for channel/evloop: fd callbacks, synchronous removal from other
 * threads, timers, one-shot operations (start / complete / cancel / timeout),
 * stop and wake-up, and cancellation races under many threads. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "channel/evloop.h"

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static void sleep_us(long us)
{
	struct timespec ts = { 0, us * 1000L };

	nanosleep(&ts, NULL);
}

static int new_efd(uint64_t initial)
{
	int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);

	assert_true(fd >= 0);
	if (initial)
		assert_int_equal(write(fd, &initial, 8), 8);
	return fd;
}

static void efd_signal(int fd)
{
	uint64_t one = 1;

	assert_int_equal(write(fd, &one, 8), 8);
}

/* Runs loop batches until cond() or ~10 s pass (generous: behaviour, not speed). */
static bool run_until(struct evloop *loop, bool (*cond)(void *), void *arg)
{
	for (int i = 0; i < 1000; i++) {
		if (cond(arg))
			return true;
		assert_true(evloop_run_once(loop, 10) >= 0);
	}
	return cond(arg);
}

/* ---- fd callbacks ---------------------------------------------------------- */

struct fd_ctx {
	atomic_int calls;
	uint32_t last_events;
	bool drain;
	struct evloop_fd *self_reg; /* removed from inside the callback if set */
	struct evloop_fd *victim;   /* removed from inside the callback if set */
};

static void fd_cb(void *opaque, int fd, uint32_t events)
{
	struct fd_ctx *c = opaque;
	uint64_t v;

	atomic_fetch_add(&c->calls, 1);
	c->last_events = events;
	if (c->drain)
		(void)!read(fd, &v, 8);
	if (c->victim) {
		evloop_fd_remove(c->victim);
		c->victim = NULL;
	}
	if (c->self_reg) {
		evloop_fd_remove(c->self_reg);
		c->self_reg = NULL;
	}
}

static bool calls_ge1(void *arg)
{
	return atomic_load(&((struct fd_ctx *)arg)->calls) >= 1;
}

static void test_fd_callback_basic(void **state)
{
	struct evloop *loop;
	struct evloop_fd *reg;
	struct fd_ctx c = { .drain = true };
	int fd = new_efd(0);

	(void)state;
	assert_int_equal(evloop_create(&loop), 0);
	assert_int_equal(evloop_fd_add(loop, fd, EPOLLIN, fd_cb, &c, &reg), 0);
	/* Same fd twice, bad masks, NULL callbacks are refused. */
	{
		struct evloop_fd *dup_reg;

		assert_int_equal(evloop_fd_add(loop, fd, EPOLLIN, fd_cb, &c, &dup_reg), -EEXIST);
		assert_int_equal(evloop_fd_add(loop, fd, EPOLLONESHOT, fd_cb, &c, &dup_reg), -EINVAL);
		assert_int_equal(evloop_fd_add(loop, fd, EPOLLIN, NULL, &c, &dup_reg), -EINVAL);
		assert_int_equal(evloop_fd_add(loop, -1, EPOLLIN, fd_cb, &c, &dup_reg), -EINVAL);
	}
	assert_int_equal(evloop_run_once(loop, 0), 0);
	assert_int_equal(atomic_load(&c.calls), 0);
	efd_signal(fd);
	assert_true(run_until(loop, calls_ge1, &c));
	assert_int_equal(atomic_load(&c.calls), 1);
	assert_true(c.last_events & EPOLLIN);
	/* Drained: level-triggered callback does not repeat. */
	assert_int_equal(evloop_run_once(loop, 0), 0);
	/* Mask 0 pauses the registration. */
	assert_int_equal(evloop_fd_modify(reg, 0), 0);
	efd_signal(fd);
	assert_int_equal(evloop_run_once(loop, 20), 0);
	assert_int_equal(atomic_load(&c.calls), 1);
	assert_int_equal(evloop_fd_modify(reg, EPOLLIN), 0);
	assert_int_equal(evloop_run_once(loop, 1000), 1);
	assert_int_equal(atomic_load(&c.calls), 2);
	assert_int_equal(evloop_fd_modify(reg, EPOLLEXCLUSIVE), -EINVAL);
	evloop_fd_remove(reg);
	efd_signal(fd);
	assert_int_equal(evloop_run_once(loop, 20), 0);
	assert_int_equal(atomic_load(&c.calls), 2);
	evloop_fd_remove(NULL);
	evloop_destroy(loop);
	close(fd);
}

/* A callback removing itself, and one removing another registration whose
 * event was already fetched in the same batch: that one must never run. */
static void test_remove_inside_batch(void **state)
{
	struct evloop *loop;
	struct fd_ctx a = { 0 }, b = { 0 };
	struct evloop_fd *ra, *rb;
	int fa = new_efd(1), fb = new_efd(1);

	(void)state;
	assert_int_equal(evloop_create(&loop), 0);
	assert_int_equal(evloop_fd_add(loop, fa, EPOLLIN, fd_cb, &a, &ra), 0);
	assert_int_equal(evloop_fd_add(loop, fb, EPOLLIN, fd_cb, &b, &rb), 0);
	/* Whoever runs first removes the other and itself. */
	a.victim = rb;
	a.self_reg = ra;
	b.victim = ra;
	b.self_reg = rb;
	assert_int_equal(evloop_run_once(loop, 1000), 1);
	assert_int_equal(atomic_load(&a.calls) + atomic_load(&b.calls), 1);
	assert_int_equal(evloop_run_once(loop, 20), 0);
	assert_int_equal(atomic_load(&a.calls) + atomic_load(&b.calls), 1);
	evloop_destroy(loop);
	close(fa);
	close(fb);
}

/* ---- removal from another thread waits for a running callback ------------- */

struct slow_ctx {
	atomic_int in_cb;
	atomic_int calls;
	atomic_int after_remove;
	atomic_bool removed;
};

static void slow_cb(void *opaque, int fd, uint32_t events)
{
	struct slow_ctx *c = opaque;

	(void)fd;
	(void)events;
	if (atomic_load(&c->removed))
		atomic_fetch_add(&c->after_remove, 1);
	atomic_store(&c->in_cb, 1);
	atomic_fetch_add(&c->calls, 1);
	sleep_ms(30);
	atomic_store(&c->in_cb, 0);
}

static void *loop_thread(void *arg)
{
	assert_int_equal(evloop_run(arg), 0);
	return NULL;
}

static void test_remove_waits_for_callback(void **state)
{
	struct evloop *loop;
	struct evloop_fd *reg;
	struct slow_ctx c = { 0 };
	pthread_t t;
	int fd = new_efd(1); /* stays readable: callback keeps firing */

	(void)state;
	assert_int_equal(evloop_create(&loop), 0);
	assert_int_equal(evloop_fd_add(loop, fd, EPOLLIN, slow_cb, &c, &reg), 0);
	assert_int_equal(pthread_create(&t, NULL, loop_thread, loop), 0);
	for (int i = 0; i < 10000 && !atomic_load(&c.in_cb); i++)
		sleep_us(100);
	assert_int_equal(atomic_load(&c.in_cb), 1);
	evloop_fd_remove(reg);
	/* The callback was mid-sleep; remove returned only after it finished. */
	assert_int_equal(atomic_load(&c.in_cb), 0);
	atomic_store(&c.removed, true);
	sleep_ms(100);
	assert_int_equal(atomic_load(&c.after_remove), 0);
	assert_int_equal(atomic_load(&c.in_cb), 0);
	evloop_stop(loop);
	pthread_join(t, NULL);
	evloop_destroy(loop);
	close(fd);
}

/* A callback may use the registration evloop_fd_add() hands back: it is set first. */
struct own_reg_ctx {
	struct evloop_fd *_Atomic reg;
	atomic_int calls, saw_null;
};

static void own_reg_cb(void *opaque, int fd, uint32_t events)
{
	struct own_reg_ctx *c = opaque;
	uint64_t v;

	(void)events;
	if (!atomic_load(&c->reg))
		atomic_fetch_add(&c->saw_null, 1);
	if (read(fd, &v, sizeof(v)) != sizeof(v))
		atomic_fetch_add(&c->saw_null, 100);
	atomic_fetch_add(&c->calls, 1);
}

static void test_fd_add_sets_out_before_a_callback(void **state)
{
	struct evloop *loop;
	pthread_t t;

	(void)state;
	assert_int_equal(evloop_create(&loop), 0);
	assert_int_equal(pthread_create(&t, NULL, loop_thread, loop), 0);
	for (int i = 0; i < 300; i++) {
		struct own_reg_ctx c = { 0 };
		struct evloop_fd *reg = NULL;
		int fd = new_efd(1); /* readable at once: the loop may fire before add returns */

		assert_int_equal(evloop_fd_add(loop, fd, EPOLLIN, own_reg_cb, &c,
					       (struct evloop_fd **)&c.reg), 0);
		reg = atomic_load(&c.reg);
		for (int w = 0; w < 10000 && !atomic_load(&c.calls); w++)
			sleep_us(100);
		evloop_fd_remove(reg);
		assert_int_equal(atomic_load(&c.calls), 1);
		assert_int_equal(atomic_load(&c.saw_null), 0);
		close(fd);
	}
	evloop_stop(loop);
	pthread_join(t, NULL);
	evloop_destroy(loop);
}

/* ---- timers ---------------------------------------------------------------- */

struct timer_ctx {
	uint64_t expirations;
	int calls;
	struct evloop *loop;
	int stop_after;
};

static void timer_cb(void *opaque, uint64_t n)
{
	struct timer_ctx *c = opaque;

	c->expirations += n;
	c->calls++;
	if (c->stop_after && c->calls == c->stop_after)
		evloop_stop(c->loop);
}

static void test_timers(void **state)
{
	struct evloop *loop;
	struct evloop_timer *periodic, *once;
	struct timer_ctx p = { 0 }, o = { 0 };

	(void)state;
	assert_int_equal(evloop_create(&loop), 0);
	p.loop = loop;
	p.stop_after = 3;
	assert_int_equal(evloop_timer_add(loop, timer_cb, &p, &periodic), 0);
	assert_int_equal(evloop_timer_add(loop, timer_cb, &o, &once), 0);
	assert_int_equal(evloop_timer_add(loop, NULL, &o, &once), -EINVAL);
	assert_int_equal(evloop_timer_add(loop, timer_cb, &o, &once), 0);
	assert_int_equal(evloop_timer_arm(periodic, 2000000, 2000000), 0);
	assert_int_equal(evloop_timer_arm(once, 1000000, 0), 0);
	assert_int_equal(evloop_run(loop), 0);
	assert_int_equal(p.calls, 3);
	assert_true(p.expirations >= 3);
	assert_int_equal(o.calls, 1);
	assert_int_equal(o.expirations, 1);
	/* Disarm: an expiration pending right now is dropped. */
	assert_int_equal(evloop_timer_arm(periodic, 1000000, 1000000), 0);
	sleep_ms(5);
	assert_int_equal(evloop_timer_arm(periodic, 0, 0), 0);
	p.calls = 0;
	assert_int_equal(evloop_run_once(loop, 30), 0);
	assert_int_equal(p.calls, 0);
	evloop_timer_remove(periodic);
	evloop_timer_remove(NULL);
	/* 'once' is left registered: destroy frees it. */
	evloop_destroy(loop);
}

/* ---- operations ------------------------------------------------------------ */

struct op_ctx {
	atomic_int calls;
	int result;
	bool restart;
	struct evloop *loop;
};

static void op_cb(struct evloop_op *op, int result, void *opaque)
{
	struct op_ctx *c = opaque;

	c->result = result;
	atomic_fetch_add(&c->calls, 1);
	assert_false(evloop_op_pending(op)); /* idle inside its callback */
	if (c->restart) {
		c->restart = false;
		assert_int_equal(evloop_op_start(c->loop, op, op_cb, c), 0);
	}
}

static bool op_called(void *arg)
{
	return atomic_load(&((struct op_ctx *)arg)->calls) >= 1;
}

static void test_op_fd_and_timeout(void **state)
{
	struct evloop *loop;
	struct evloop_op op = EVLOOP_OP_INIT;
	struct op_ctx c = { 0 };
	int fd = new_efd(0);

	(void)state;
	assert_int_equal(evloop_create(&loop), 0);
	assert_int_equal(evloop_op_start_fd(loop, &op, fd, EPOLLIN, -1, op_cb, &c), 0);
	assert_int_equal(evloop_op_start_fd(loop, &op, fd, EPOLLIN, -1, op_cb, &c), -EBUSY);
	assert_true(evloop_op_pending(&op));
	assert_int_equal(evloop_run_once(loop, 10), 0);
	efd_signal(fd);
	assert_true(run_until(loop, op_called, &c));
	assert_true(c.result & EPOLLIN);
	/* One-shot: fd still readable, no second call. */
	assert_int_equal(evloop_run_once(loop, 20), 0);
	assert_int_equal(atomic_load(&c.calls), 1);
	assert_false(evloop_op_cancel(&op));

	/* Timeout completes with -ETIMEDOUT. */
	{
		uint64_t v;

		assert_int_equal(read(fd, &v, 8), 8);
	}
	atomic_store(&c.calls, 0);
	assert_int_equal(evloop_op_start_fd(loop, &op, fd, EPOLLIN, 20, op_cb, &c), 0);
	assert_true(run_until(loop, op_called, &c));
	assert_int_equal(c.result, -ETIMEDOUT);
	/* The fd was released: it can be watched again right away. */
	atomic_store(&c.calls, 0);
	assert_int_equal(evloop_op_start_fd(loop, &op, fd, EPOLLIN, 5000, op_cb, &c), 0);
	assert_true(evloop_op_cancel(&op));
	efd_signal(fd);
	assert_int_equal(evloop_run_once(loop, 20), 0);
	assert_int_equal(atomic_load(&c.calls), 0);
	assert_false(evloop_op_pending(&op));
	/* Bad arguments. */
	assert_int_equal(evloop_op_start_fd(loop, &op, fd, EPOLLIN | EPOLLET, -1, op_cb, &c), -EINVAL);
	assert_int_equal(evloop_op_start_fd(loop, &op, fd, 0, -1, op_cb, &c), -EINVAL);
	assert_int_equal(evloop_op_start_fd(loop, &op, -1, EPOLLIN, -1, op_cb, &c), -EINVAL);
	assert_int_equal(evloop_op_start_fd(loop, &op, fd, EPOLLIN, -2, op_cb, &c), -EINVAL);
	evloop_destroy(loop);
	close(fd);
}

struct completer_arg {
	struct evloop_op *op;
	int result;
};

static void *complete_later(void *arg)
{
	struct completer_arg *a = arg;

	sleep_ms(10);
	assert_int_equal(evloop_op_complete(a->op, a->result), 0);
	return NULL;
}

static void test_op_manual_complete_cancel(void **state)
{
	struct evloop *loop;
	struct evloop_op op = EVLOOP_OP_INIT, never = EVLOOP_OP_INIT;
	struct op_ctx c = { 0 };
	struct completer_arg a = { &op, 42 };
	pthread_t t;

	(void)state;
	assert_int_equal(evloop_create(&loop), 0);
	c.loop = loop;
	assert_false(evloop_op_cancel(&never));          /* never started */
	assert_int_equal(evloop_op_complete(&never, 1), -EALREADY);

	/* Completed from another thread: callback runs on the loop thread. */
	assert_int_equal(evloop_op_start(loop, &op, op_cb, &c), 0);
	assert_int_equal(evloop_op_start(loop, &op, op_cb, &c), -EBUSY);
	assert_int_equal(pthread_create(&t, NULL, complete_later, &a), 0);
	assert_true(run_until(loop, op_called, &c));
	pthread_join(t, NULL);
	assert_int_equal(c.result, 42);
	assert_int_equal(evloop_op_complete(&op, 1), -EALREADY);

	/* Cancel before completion: never runs; late complete is refused. */
	atomic_store(&c.calls, 0);
	assert_int_equal(evloop_op_start(loop, &op, op_cb, &c), 0);
	assert_true(evloop_op_cancel(&op));
	assert_int_equal(evloop_op_complete(&op, 5), -EALREADY);
	assert_int_equal(evloop_run_once(loop, 10), 0);
	assert_int_equal(atomic_load(&c.calls), 0);

	/* Completed but not yet run: cancel still wins. */
	assert_int_equal(evloop_op_start(loop, &op, op_cb, &c), 0);
	assert_int_equal(evloop_op_complete(&op, 7), 0);
	assert_true(evloop_op_cancel(&op));
	assert_int_equal(evloop_run_once(loop, 10), 0);
	assert_int_equal(atomic_load(&c.calls), 0);

	/* Restart from inside the callback. */
	c.restart = true;
	assert_int_equal(evloop_op_start(loop, &op, op_cb, &c), 0);
	assert_int_equal(evloop_op_complete(&op, 1), 0);
	assert_int_equal(evloop_run_once(loop, 0), 1);
	assert_true(evloop_op_pending(&op));
	assert_int_equal(evloop_op_complete(&op, 2), 0);
	assert_int_equal(evloop_run_once(loop, 0), 1);
	assert_int_equal(c.result, 2);
	assert_int_equal(atomic_load(&c.calls), 2);

	/* Destroy drops pending ops without running them. */
	assert_int_equal(evloop_op_start(loop, &op, op_cb, &c), 0);
	evloop_destroy(loop);
	assert_int_equal(atomic_load(&c.calls), 2);
}

/* Every op evloop_destroy() drops -- manual, completed but not yet run, fd
 * with and without a deadline -- is idle afterwards: not pending, complete
 * and cancel refuse it, and it starts again on another loop. */
static void test_destroy_leaves_dropped_ops_idle(void **state)
{
	struct evloop *old, *loop;
	struct evloop_op ops[4] = { EVLOOP_OP_INIT, EVLOOP_OP_INIT, EVLOOP_OP_INIT, EVLOOP_OP_INIT };
	struct op_ctx c = { 0 };
	int fd = new_efd(0), fd2 = new_efd(0);

	(void)state;
	for (int round = 0; round < 2; round++) {
		assert_int_equal(evloop_create(&old), 0);
		assert_int_equal(evloop_op_start(old, &ops[0], op_cb, &c), 0);
		assert_int_equal(evloop_op_start(old, &ops[1], op_cb, &c), 0);
		assert_int_equal(evloop_op_complete(&ops[1], 3), 0);
		assert_int_equal(evloop_op_start_fd(old, &ops[2], fd, EPOLLIN, -1, op_cb, &c), 0);
		assert_int_equal(evloop_op_start_fd(old, &ops[3], fd2, EPOLLOUT, 10000, op_cb, &c), 0);
		evloop_destroy(old);
		assert_int_equal(atomic_load(&c.calls), 0);

		assert_int_equal(evloop_create(&loop), 0);
		for (int i = 0; i < 4; i++) {
			if (round == 0) {
				/* Restarted at once on a new loop. */
				assert_int_equal(evloop_op_start(loop, &ops[i], op_cb, &c), 0);
				assert_true(evloop_op_pending(&ops[i]));
				assert_int_equal(evloop_op_complete(&ops[i], 10 + i), 0);
				assert_int_equal(evloop_run_once(loop, 0), 1);
				assert_int_equal(c.result, 10 + i);
			} else {
				/* Asked about first: idle, refused, never run. */
				assert_false(evloop_op_pending(&ops[i]));
				assert_int_equal(evloop_op_complete(&ops[i], 1), -EALREADY);
				assert_false(evloop_op_cancel(&ops[i]));
				assert_int_equal(evloop_op_start_fd(loop, &ops[i], i % 2 ? fd2 : fd,
								    EPOLLOUT, -1, op_cb, &c), 0);
				assert_int_equal(evloop_run_once(loop, 1000), 1);
				assert_true(c.result & EPOLLOUT);
			}
		}
		assert_int_equal(atomic_load(&c.calls), 4);
		assert_int_equal(evloop_run_once(loop, 0), 0);
		atomic_store(&c.calls, 0);
		evloop_destroy(loop);
	}
	close(fd);
	close(fd2);
}

/* Pending means started and neither completed nor cancelled.  A completed op
 * whose callback has not run yet is no longer pending, but the loop still
 * holds it: start refuses it and cancel still stops its callback. */
static void *complete_now(void *arg)
{
	struct completer_arg *a = arg;

	assert_int_equal(evloop_op_complete(a->op, a->result), 0);
	return NULL;
}

static void test_op_not_pending_once_completed(void **state)
{
	struct evloop *loop;
	struct evloop_op op = EVLOOP_OP_INIT;
	struct op_ctx c = { 0 };
	struct completer_arg a = { &op, 9 };
	pthread_t t;

	(void)state;
	assert_int_equal(evloop_create(&loop), 0);
	assert_false(evloop_op_pending(&op));
	assert_int_equal(evloop_op_start(loop, &op, op_cb, &c), 0);
	assert_true(evloop_op_pending(&op));
	assert_int_equal(evloop_op_complete(&op, 7), 0);
	assert_false(evloop_op_pending(&op));
	assert_int_equal(evloop_op_complete(&op, 8), -EALREADY);
	assert_int_equal(evloop_op_start(loop, &op, op_cb, &c), -EBUSY);
	assert_true(evloop_op_cancel(&op));     /* its callback will not run */
	assert_false(evloop_op_pending(&op));
	assert_false(evloop_op_cancel(&op));
	assert_int_equal(evloop_run_once(loop, 0), 0);
	assert_int_equal(atomic_load(&c.calls), 0);

	/* Completed from another thread: not pending as soon as it returned;
	 * the callback then runs with the result. */
	assert_int_equal(evloop_op_start(loop, &op, op_cb, &c), 0);
	assert_int_equal(pthread_create(&t, NULL, complete_now, &a), 0);
	pthread_join(t, NULL);
	assert_false(evloop_op_pending(&op));
	assert_int_equal(evloop_run_once(loop, 0), 1);
	assert_int_equal(c.result, 9);
	assert_false(evloop_op_pending(&op));
	assert_false(evloop_op_cancel(&op));

	/* An fd op is pending until it completes; complete() is not for it. */
	{
		int fd = new_efd(0);

		assert_int_equal(evloop_op_start_fd(loop, &op, fd, EPOLLIN, -1, op_cb, &c), 0);
		assert_true(evloop_op_pending(&op));
		assert_int_equal(evloop_op_complete(&op, 1), -EINVAL);
		assert_true(evloop_op_pending(&op));
		efd_signal(fd);
		assert_int_equal(evloop_run_once(loop, 1000), 1);
		assert_false(evloop_op_pending(&op));
		assert_true(c.result & EPOLLIN);
		close(fd);
	}
	evloop_destroy(loop);
}

/* ---- stop / wake / exclusive runner ---------------------------------------- */

static void *run_expect_busy(void *arg)
{
	assert_int_equal(evloop_run(arg), -EBUSY);
	assert_int_equal(evloop_run_once(arg, 0), -EBUSY);
	return NULL;
}

static void mark_running(struct evloop_op *op, int result, void *opaque)
{
	(void)op;
	(void)result;
	atomic_store((atomic_bool *)opaque, true);
}

static void test_stop_and_wake(void **state)
{
	struct evloop *loop;
	struct evloop_op mark = EVLOOP_OP_INIT;
	atomic_bool running = false;
	pthread_t t, t2;

	(void)state;
	assert_int_equal(evloop_create(&loop), 0);
	/* A stop issued before run makes that run return at once. */
	evloop_stop(loop);
	assert_int_equal(evloop_run(loop), 0);
	/* Consumed: a wake-up alone does not end the run. */
	evloop_wake(loop);
	assert_int_equal(evloop_run_once(loop, 1000), 0);
	assert_false(evloop_in_loop_thread(loop));

	/* A callback that ran on the loop thread shows the thread holds the
	 * loop (a sleep does not, on a busy machine). */
	assert_int_equal(evloop_op_start(loop, &mark, mark_running, &running), 0);
	assert_int_equal(evloop_op_complete(&mark, 0), 0);
	assert_int_equal(pthread_create(&t, NULL, loop_thread, loop), 0);
	for (int i = 0; i < 100000 && !atomic_load(&running); i++)
		sleep_us(100);
	assert_true(atomic_load(&running));
	assert_int_equal(pthread_create(&t2, NULL, run_expect_busy, loop), 0);
	pthread_join(t2, NULL);
	evloop_wake(loop);
	evloop_stop(loop);
	pthread_join(t, NULL);
	evloop_destroy(loop);
	evloop_destroy(NULL);
}

/* ---- races under many threads ---------------------------------------------- */

#define RACE_THREADS 6
#define RACE_ITERS   400

struct race_rec {
	atomic_int ran;
	atomic_bool cancel_returned;
	bool cancelled;
	atomic_int late; /* callback ran after cancel returned */
};

struct race_op {
	struct evloop_op op;
	struct race_rec *rec;
};

static void race_cb(struct evloop_op *op, int result, void *opaque)
{
	struct race_rec *rec = opaque;

	(void)op;
	(void)result;
	if (atomic_load(&rec->cancel_returned))
		atomic_fetch_add(&rec->late, 1);
	atomic_fetch_add(&rec->ran, 1);
	if (rand() % 8 == 0)
		sleep_us(50); /* make cancellers wait for a running callback */
}

struct race_pair {
	struct evloop *loop;
	struct race_rec *recs;
	_Atomic(struct race_op *) handoff;
	atomic_int completed_iter;
	unsigned seed;
};

static void *race_completer(void *arg)
{
	struct race_pair *p = arg;

	for (int i = 0; i < RACE_ITERS; i++) {
		struct race_op *ro;

		while (!(ro = atomic_load(&p->handoff)))
			sched_yield();
		atomic_store(&p->handoff, NULL);
		(void)evloop_op_complete(&ro->op, i);
		atomic_store(&p->completed_iter, i + 1);
	}
	return NULL;
}

static void *race_canceller(void *arg)
{
	struct race_pair *p = arg;
	unsigned seed = p->seed;

	for (int i = 0; i < RACE_ITERS; i++) {
		struct race_op *ro = calloc(1, sizeof(*ro));

		assert_non_null(ro);
		ro->rec = &p->recs[i];
		assert_int_equal(evloop_op_start(p->loop, &ro->op, race_cb, ro->rec), 0);
		atomic_store(&p->handoff, ro);
		if (rand_r(&seed) % 2)
			sleep_us(rand_r(&seed) % 40);
		ro->rec->cancelled = evloop_op_cancel(&ro->op);
		atomic_store(&ro->rec->cancel_returned, true);
		/* The completer must be done with ro before we free it. */
		while (atomic_load(&p->completed_iter) < i + 1)
			sched_yield();
		memset(ro, 0xa5, sizeof(*ro));
		free(ro);
	}
	return NULL;
}

static void test_op_cancel_race(void **state)
{
	struct evloop *loop;
	struct race_pair pairs[RACE_THREADS / 2];
	pthread_t lt, th[RACE_THREADS];
	int cancelled = 0, ran = 0;

	(void)state;
	assert_int_equal(evloop_create(&loop), 0);
	assert_int_equal(pthread_create(&lt, NULL, loop_thread, loop), 0);
	for (int i = 0; i < RACE_THREADS / 2; i++) {
		pairs[i] = (struct race_pair){ .loop = loop, .seed = 1234u + (unsigned)i };
		pairs[i].recs = calloc(RACE_ITERS, sizeof(struct race_rec));
		assert_non_null(pairs[i].recs);
		assert_int_equal(pthread_create(&th[2 * i], NULL, race_canceller, &pairs[i]), 0);
		assert_int_equal(pthread_create(&th[2 * i + 1], NULL, race_completer, &pairs[i]), 0);
	}
	for (int i = 0; i < RACE_THREADS; i++)
		pthread_join(th[i], NULL);
	/* Let anything (wrongly) still queued run before checking. */
	sleep_ms(50);
	evloop_stop(loop);
	pthread_join(lt, NULL);
	for (int i = 0; i < RACE_THREADS / 2; i++) {
		for (int j = 0; j < RACE_ITERS; j++) {
			struct race_rec *r = &pairs[i].recs[j];

			/* Exactly one of: cancelled, or ran once. */
			assert_int_equal(atomic_load(&r->late), 0);
			assert_int_equal(atomic_load(&r->ran), r->cancelled ? 0 : 1);
			cancelled += r->cancelled;
			ran += atomic_load(&r->ran);
		}
		free(pairs[i].recs);
	}
	assert_int_equal(cancelled + ran, RACE_ITERS * (RACE_THREADS / 2));
	evloop_destroy(loop);
}

/* Many threads add and remove registrations on always-ready fds while the
 * loop dispatches them: no callback may run after its remove returned. */
struct reg_rec {
	atomic_bool removed;
	atomic_int violations;
	atomic_int calls;
};

static void reg_race_cb(void *opaque, int fd, uint32_t events)
{
	struct reg_rec *r = opaque;

	(void)fd;
	(void)events;
	if (atomic_load(&r->removed))
		atomic_fetch_add(&r->violations, 1);
	atomic_fetch_add(&r->calls, 1);
	if (atomic_load(&r->calls) % 16 == 0)
		sleep_us(20);
}

static void timer_race_cb(void *opaque, uint64_t n)
{
	(void)n;
	reg_race_cb(opaque, -1, EPOLLIN);
}

struct reg_race_arg {
	struct evloop *loop;
	int fd;
	struct reg_rec *recs;
	unsigned seed;
};

static void *reg_race_thread(void *arg)
{
	struct reg_race_arg *a = arg;

	for (int i = 0; i < RACE_ITERS; i++) {
		struct reg_rec *r = &a->recs[i];
		struct evloop_fd *reg;
		struct evloop_timer *timer;
		int d = rand_r(&a->seed) % 100;

		if (i % 4 == 3) {
			/* Timers too: removal from a foreign thread mid-fire. */
			assert_int_equal(evloop_timer_add(a->loop, timer_race_cb, r, &timer), 0);
			assert_int_equal(evloop_timer_arm(timer, 1000, 1000), 0);
			sleep_us(d);
			evloop_timer_remove(timer);
			atomic_store(&r->removed, true);
			continue;
		}
		assert_int_equal(evloop_fd_add(a->loop, a->fd, EPOLLIN, reg_race_cb, r, &reg), 0);
		sleep_us(d);
		evloop_fd_remove(reg);
		atomic_store(&r->removed, true);
	}
	return NULL;
}

static void test_fd_remove_race(void **state)
{
	struct evloop *loop;
	struct reg_race_arg args[RACE_THREADS];
	pthread_t lt, th[RACE_THREADS];
	long calls = 0;

	(void)state;
	assert_int_equal(evloop_create(&loop), 0);
	assert_int_equal(pthread_create(&lt, NULL, loop_thread, loop), 0);
	for (int i = 0; i < RACE_THREADS; i++) {
		args[i] = (struct reg_race_arg){ .loop = loop, .fd = new_efd(1),
						 .seed = 99u + (unsigned)i };
		args[i].recs = calloc(RACE_ITERS, sizeof(struct reg_rec));
		assert_non_null(args[i].recs);
		assert_int_equal(pthread_create(&th[i], NULL, reg_race_thread, &args[i]), 0);
	}
	for (int i = 0; i < RACE_THREADS; i++)
		pthread_join(th[i], NULL);
	sleep_ms(30);
	evloop_stop(loop);
	pthread_join(lt, NULL);
	for (int i = 0; i < RACE_THREADS; i++) {
		for (int j = 0; j < RACE_ITERS; j++) {
			assert_int_equal(atomic_load(&args[i].recs[j].violations), 0);
			calls += atomic_load(&args[i].recs[j].calls);
		}
		free(args[i].recs);
		close(args[i].fd);
	}
	assert_true(calls > 0); /* the race really dispatched callbacks */
	evloop_destroy(loop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fd_callback_basic),
		cmocka_unit_test(test_remove_inside_batch),
		cmocka_unit_test(test_remove_waits_for_callback),
		cmocka_unit_test(test_fd_add_sets_out_before_a_callback),
		cmocka_unit_test(test_timers),
		cmocka_unit_test(test_op_fd_and_timeout),
		cmocka_unit_test(test_op_manual_complete_cancel),
		cmocka_unit_test(test_destroy_leaves_dropped_ops_idle),
		cmocka_unit_test(test_op_not_pending_once_completed),
		cmocka_unit_test(test_stop_and_wake),
		cmocka_unit_test(test_op_cancel_race),
		cmocka_unit_test(test_fd_remove_race),
	};

	return cmocka_run_group_tests_name("channel_evloop", tests, NULL, NULL);
}
