// SPDX-License-Identifier: MIT
/*
 * The event loop.  Every epoll registration carries a token (slot index and
 * generation) instead of a pointer, so a registration removed from another
 * thread can be freed at once: an event for it already fetched by epoll_wait
 * finds a stale generation and is dropped.  A callback runs with the loop
 * lock released; the loop records which slot (or op) is running so that a
 * remover on another thread can wait for it to return.
 */
#include "channel/evloop.h"
#include "channel/notifier.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define EVLOOP_BATCH      64
#define TOKEN_WAKE        UINT64_MAX
#define SLOT_NONE         UINT32_MAX
#define FD_EVENTS_ALLOWED (EPOLLIN | EPOLLOUT | EPOLLPRI | EPOLLRDHUP | EPOLLET | \
			   EPOLLERR | EPOLLHUP)

enum slot_kind { SLOT_FREE, SLOT_FD, SLOT_OP };

enum op_state {
	OP_IDLE = 0,
	OP_PENDING_FD,     /* waiting in epoll (maybe also on the deadline list) */
	OP_PENDING_MANUAL, /* waiting for evloop_op_complete() */
	OP_QUEUED,         /* on the completion queue, callback not yet run */
};

struct slot {
	enum slot_kind kind;
	uint32_t gen;
	uint32_t next_free;
	void *obj; /* struct evloop_fd * or struct evloop_op * */
};

struct evloop_fd {
	struct evloop *loop;
	int fd;
	uint32_t slot;
	uint32_t gen;
	evloop_fd_fn fn;
	void *opaque;
	struct evloop_timer *timer; /* set when this registration is a timer's */
};

struct evloop_timer {
	struct evloop_fd *reg;
	int tfd;
	evloop_timer_fn fn;
	void *opaque;
};

struct evloop {
	int epfd;
	struct notifier wake;
	pthread_mutex_t lock;
	pthread_cond_t idle; /* broadcast when a callback returns */

	struct slot *slots;
	uint32_t nslots, free_head;

	/* The callback running now, if any (protected by lock). */
	uint32_t cur_slot, cur_gen;
	struct evloop_op *cur_op;

	/* Completed ops waiting for their callback, FIFO (lock). */
	struct evloop_op *done_head, *done_tail;
	/* Fd ops with a deadline, unordered (lock). */
	struct evloop_op *timed;
	/* Manual ops waiting for evloop_op_complete() (lock): listed so that
	 * evloop_destroy() can find and detach them. */
	struct evloop_op *manual;

	atomic_bool stop;
	atomic_int runner_tid; /* 0 when nobody runs the loop */
};

static _Thread_local int self_tid;

static int current_tid(void)
{
	if (!self_tid)
		self_tid = (int)syscall(SYS_gettid);
	return self_tid;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t token_of(uint32_t slot, uint32_t gen)
{
	return ((uint64_t)gen << 32) | slot;
}

bool evloop_in_loop_thread(const struct evloop *loop)
{
	return atomic_load(&((struct evloop *)loop)->runner_tid) == current_tid();
}

int evloop_create(struct evloop **out)
{
	struct evloop *loop = calloc(1, sizeof(*loop));
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = TOKEN_WAKE };
	int ret;

	if (!loop)
		return -ENOMEM;
	loop->cur_slot = SLOT_NONE;
	loop->free_head = SLOT_NONE;
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epfd < 0) {
		ret = -errno;
		goto err_free;
	}
	ret = notifier_init(&loop->wake, NOTIFIER_COUNTER);
	if (ret)
		goto err_epoll;
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, notifier_fd(&loop->wake), &ev) < 0) {
		ret = -errno;
		goto err_wake;
	}
	pthread_mutex_init(&loop->lock, NULL);
	pthread_cond_init(&loop->idle, NULL);
	*out = loop;
	return 0;

err_wake:
	notifier_destroy(&loop->wake);
err_epoll:
	close(loop->epfd);
err_free:
	free(loop);
	return ret;
}

static void timer_free(struct evloop_timer *timer);

/* Leaves an op the loop drops as if never started: idle and detached, so
 * later calls on it never reach the freed loop. */
static void op_forget(struct evloop_op *op)
{
	op->loop = NULL;
	op->next = op->prev = NULL;
	op->deadline_ns = 0;
	op->state = OP_IDLE;
}

void evloop_destroy(struct evloop *loop)
{
	struct evloop_op *op, *nx;

	if (!loop)
		return;
	/* Every op the loop holds is in exactly one place: a slot (fd ops,
	 * perhaps also on the deadline list), the manual list or the done list. */
	for (uint32_t i = 0; i < loop->nslots; i++) {
		struct slot *s = &loop->slots[i];

		if (s->kind == SLOT_FD) {
			struct evloop_fd *reg = s->obj;

			if (reg->timer)
				timer_free(reg->timer);
			free(reg);
		} else if (s->kind == SLOT_OP) {
			op_forget(s->obj);
		}
	}
	for (op = loop->manual; op; op = nx) {
		nx = op->next;
		op_forget(op);
	}
	for (op = loop->done_head; op; op = nx) {
		nx = op->next;
		op_forget(op);
	}
	free(loop->slots);
	pthread_cond_destroy(&loop->idle);
	pthread_mutex_destroy(&loop->lock);
	notifier_destroy(&loop->wake);
	close(loop->epfd);
	free(loop);
}

void evloop_wake(struct evloop *loop)
{
	(void)notifier_signal(&loop->wake);
}

void evloop_stop(struct evloop *loop)
{
	atomic_store(&loop->stop, true);
	evloop_wake(loop);
}

/* ---- slots (called with lock held) --------------------------------------- */

static int slot_alloc(struct evloop *loop, enum slot_kind kind, void *obj, uint32_t *idx)
{
	struct slot *s;

	if (loop->free_head == SLOT_NONE) {
		uint32_t n = loop->nslots ? loop->nslots * 2 : 16;
		struct slot *grown;

		if (n >= SLOT_NONE / 2)
			return -ENOSPC;
		grown = realloc(loop->slots, n * sizeof(*grown));
		if (!grown)
			return -ENOMEM;
		for (uint32_t i = loop->nslots; i < n; i++) {
			grown[i] = (struct slot){ .kind = SLOT_FREE, .gen = 1,
						  .next_free = i + 1 < n ? i + 1 : SLOT_NONE };
		}
		loop->free_head = loop->nslots;
		loop->slots = grown;
		loop->nslots = n;
	}
	*idx = loop->free_head;
	s = &loop->slots[*idx];
	loop->free_head = s->next_free;
	s->kind = kind;
	s->obj = obj;
	return 0;
}

static void slot_release(struct evloop *loop, uint32_t idx)
{
	struct slot *s = &loop->slots[idx];

	s->kind = SLOT_FREE;
	s->obj = NULL;
	s->gen++;
	if (s->gen == 0)
		s->gen = 1;
	s->next_free = loop->free_head;
	loop->free_head = idx;
}

/* Waits (lock held) until the callback of (slot, gen) is not running, unless
 * we are the loop thread: there only our own callback can be running. */
static void wait_slot_idle(struct evloop *loop, uint32_t slot, uint32_t gen)
{
	if (evloop_in_loop_thread(loop))
		return;
	while (loop->cur_slot == slot && loop->cur_gen == gen)
		pthread_cond_wait(&loop->idle, &loop->lock);
}

/* ---- fd registrations ---------------------------------------------------- */

int evloop_fd_add(struct evloop *loop, int fd, uint32_t events, evloop_fd_fn fn,
		  void *opaque, struct evloop_fd **out)
{
	struct evloop_fd *reg;
	struct epoll_event ev;
	int ret;

	if (!loop || !fn || fd < 0 || (events & ~FD_EVENTS_ALLOWED))
		return -EINVAL;
	reg = calloc(1, sizeof(*reg));
	if (!reg)
		return -ENOMEM;
	reg->loop = loop;
	reg->fd = fd;
	reg->fn = fn;
	reg->opaque = opaque;

	pthread_mutex_lock(&loop->lock);
	ret = slot_alloc(loop, SLOT_FD, reg, &reg->slot);
	if (ret)
		goto err_unlock;
	reg->gen = loop->slots[reg->slot].gen;
	ev.events = events;
	ev.data.u64 = token_of(reg->slot, reg->gen);
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		ret = -errno;
		slot_release(loop, reg->slot);
		goto err_unlock;
	}
	/* Before the lock goes: dispatch takes it, so no callback can run
	 * before the caller holds its registration. */
	*out = reg;
	pthread_mutex_unlock(&loop->lock);
	return 0;

err_unlock:
	pthread_mutex_unlock(&loop->lock);
	free(reg);
	return ret;
}

int evloop_fd_modify(struct evloop_fd *reg, uint32_t events)
{
	struct epoll_event ev = { .events = events,
				  .data.u64 = token_of(reg->slot, reg->gen) };

	if (events & ~FD_EVENTS_ALLOWED)
		return -EINVAL;
	if (epoll_ctl(reg->loop->epfd, EPOLL_CTL_MOD, reg->fd, &ev) < 0)
		return -errno;
	return 0;
}

void evloop_fd_remove(struct evloop_fd *reg)
{
	struct evloop *loop;

	if (!reg)
		return;
	loop = reg->loop;
	pthread_mutex_lock(&loop->lock);
	(void)epoll_ctl(loop->epfd, EPOLL_CTL_DEL, reg->fd, NULL);
	slot_release(loop, reg->slot);
	wait_slot_idle(loop, reg->slot, reg->gen);
	pthread_mutex_unlock(&loop->lock);
	free(reg);
}

/* ---- timers -------------------------------------------------------------- */

static void timer_fire(void *opaque, int fd, uint32_t events)
{
	struct evloop_timer *timer = opaque;
	uint64_t n;

	(void)events;
	/* EAGAIN: disarmed or re-armed after the event was fetched. */
	if (read(fd, &n, sizeof(n)) == sizeof(n) && n > 0)
		timer->fn(timer->opaque, n);
}

int evloop_timer_add(struct evloop *loop, evloop_timer_fn fn, void *opaque,
		     struct evloop_timer **out)
{
	struct evloop_timer *timer;
	int ret;

	if (!loop || !fn)
		return -EINVAL;
	timer = calloc(1, sizeof(*timer));
	if (!timer)
		return -ENOMEM;
	timer->fn = fn;
	timer->opaque = opaque;
	timer->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (timer->tfd < 0) {
		ret = -errno;
		goto err_free;
	}
	ret = evloop_fd_add(loop, timer->tfd, EPOLLIN, timer_fire, timer, &timer->reg);
	if (ret)
		goto err_close;
	timer->reg->timer = timer;
	*out = timer;
	return 0;

err_close:
	close(timer->tfd);
err_free:
	free(timer);
	return ret;
}

int evloop_timer_arm(struct evloop_timer *timer, uint64_t first_ns, uint64_t period_ns)
{
	struct itimerspec its = {
		.it_value = { .tv_sec = (time_t)(first_ns / 1000000000u),
			      .tv_nsec = (long)(first_ns % 1000000000u) },
		.it_interval = { .tv_sec = (time_t)(period_ns / 1000000000u),
				 .tv_nsec = (long)(period_ns % 1000000000u) },
	};

	if (first_ns == 0)
		its.it_interval = (struct timespec){ 0 };
	if (timerfd_settime(timer->tfd, 0, &its, NULL) < 0)
		return -errno;
	return 0;
}

static void timer_free(struct evloop_timer *timer)
{
	close(timer->tfd);
	free(timer);
}

void evloop_timer_remove(struct evloop_timer *timer)
{
	if (!timer)
		return;
	evloop_fd_remove(timer->reg);
	timer_free(timer);
}

/* ---- operations ---------------------------------------------------------- */

static void list_remove(struct evloop_op **head, struct evloop_op *op)
{
	if (op->prev)
		op->prev->next = op->next;
	else
		*head = op->next;
	if (op->next)
		op->next->prev = op->prev;
	op->next = op->prev = NULL;
}

static void done_push(struct evloop *loop, struct evloop_op *op, int result)
{
	op->state = OP_QUEUED;
	op->result = result;
	op->next = NULL;
	op->prev = loop->done_tail;
	if (loop->done_tail)
		loop->done_tail->next = op;
	else
		loop->done_head = op;
	loop->done_tail = op;
}

static void done_remove(struct evloop *loop, struct evloop_op *op)
{
	if (op == loop->done_tail)
		loop->done_tail = op->prev;
	list_remove(&loop->done_head, op);
}

static void list_push(struct evloop_op **head, struct evloop_op *op)
{
	op->prev = NULL;
	op->next = *head;
	if (*head)
		(*head)->prev = op;
	*head = op;
}

/* Detaches a pending fd op from epoll, its slot and the deadline list. */
static void op_detach_fd(struct evloop *loop, struct evloop_op *op)
{
	(void)epoll_ctl(loop->epfd, EPOLL_CTL_DEL, op->fd, NULL);
	slot_release(loop, op->slot);
	if (op->deadline_ns)
		list_remove(&loop->timed, op);
	op->deadline_ns = 0;
}

int evloop_op_start_fd(struct evloop *loop, struct evloop_op *op, int fd, uint32_t events,
		       int timeout_ms, evloop_op_fn fn, void *opaque)
{
	struct epoll_event ev;
	int ret;

	if (!loop || !op || !fn || fd < 0 || !events ||
	    (events & ~(FD_EVENTS_ALLOWED & ~EPOLLET)) || timeout_ms < -1)
		return -EINVAL;
	pthread_mutex_lock(&loop->lock);
	if (op->state != OP_IDLE) {
		ret = -EBUSY;
		goto out;
	}
	ret = slot_alloc(loop, SLOT_OP, op, &op->slot);
	if (ret)
		goto out;
	op->loop = loop;
	op->fn = fn;
	op->opaque = opaque;
	op->fd = fd;
	op->events = events;
	op->next = op->prev = NULL;
	op->deadline_ns = 0;
	ev.events = events | EPOLLONESHOT;
	ev.data.u64 = token_of(op->slot, loop->slots[op->slot].gen);
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		ret = -errno;
		slot_release(loop, op->slot);
		goto out;
	}
	op->state = OP_PENDING_FD;
	if (timeout_ms >= 0) {
		op->deadline_ns = mono_ns() + (uint64_t)timeout_ms * 1000000u;
		list_push(&loop->timed, op);
		/* The loop may be sleeping with a longer timeout. */
		if (!evloop_in_loop_thread(loop))
			evloop_wake(loop);
	}
out:
	pthread_mutex_unlock(&loop->lock);
	return ret;
}

int evloop_op_start(struct evloop *loop, struct evloop_op *op, evloop_op_fn fn, void *opaque)
{
	int ret = 0;

	if (!loop || !op || !fn)
		return -EINVAL;
	pthread_mutex_lock(&loop->lock);
	if (op->state != OP_IDLE) {
		ret = -EBUSY;
	} else {
		op->loop = loop;
		op->fn = fn;
		op->opaque = opaque;
		op->fd = -1;
		op->deadline_ns = 0;
		op->state = OP_PENDING_MANUAL;
		list_push(&loop->manual, op);
	}
	pthread_mutex_unlock(&loop->lock);
	return ret;
}

int evloop_op_complete(struct evloop_op *op, int result)
{
	struct evloop *loop = op->loop;
	bool was_empty;

	if (!loop)
		return -EALREADY;
	pthread_mutex_lock(&loop->lock);
	if (op->state != OP_PENDING_MANUAL) {
		int ret = op->state == OP_PENDING_FD ? -EINVAL : -EALREADY;

		pthread_mutex_unlock(&loop->lock);
		return ret;
	}
	list_remove(&loop->manual, op);
	was_empty = !loop->done_head;
	done_push(loop, op, result);
	pthread_mutex_unlock(&loop->lock);
	if (was_empty && !evloop_in_loop_thread(loop))
		evloop_wake(loop);
	return 0;
}

bool evloop_op_cancel(struct evloop_op *op)
{
	struct evloop *loop = op->loop;
	bool cancelled = true;

	if (!loop)
		return false;
	pthread_mutex_lock(&loop->lock);
	if (!evloop_in_loop_thread(loop)) {
		while (loop->cur_op == op)
			pthread_cond_wait(&loop->idle, &loop->lock);
	}
	switch ((enum op_state)op->state) {
	case OP_PENDING_FD:
		op_detach_fd(loop, op);
		break;
	case OP_PENDING_MANUAL:
		list_remove(&loop->manual, op);
		break;
	case OP_QUEUED:
		done_remove(loop, op);
		break;
	case OP_IDLE:
	default:
		cancelled = false;
		break;
	}
	op->state = OP_IDLE;
	pthread_mutex_unlock(&loop->lock);
	return cancelled;
}

bool evloop_op_pending(const struct evloop_op *op)
{
	struct evloop *loop = op->loop;
	bool pending;

	if (!loop)
		return false;
	pthread_mutex_lock(&loop->lock);
	/* A completed op waiting for its callback (OP_QUEUED) is not pending,
	 * though the loop still holds it until the callback runs. */
	pending = op->state == OP_PENDING_FD || op->state == OP_PENDING_MANUAL;
	pthread_mutex_unlock(&loop->lock);
	return pending;
}

/* ---- dispatch ------------------------------------------------------------ */

/* Runs one op callback; lock held on entry and exit. */
static void run_op(struct evloop *loop, struct evloop_op *op, int result)
{
	evloop_op_fn fn = op->fn;
	void *opaque = op->opaque;

	op->state = OP_IDLE;
	loop->cur_op = op;
	pthread_mutex_unlock(&loop->lock);
	fn(op, result, opaque);
	pthread_mutex_lock(&loop->lock);
	loop->cur_op = NULL;
	pthread_cond_broadcast(&loop->idle);
}

/* Dispatches one epoll event; returns 1 if a callback ran. */
static int dispatch(struct evloop *loop, uint64_t token, uint32_t events)
{
	uint32_t idx = (uint32_t)token, gen = (uint32_t)(token >> 32);
	struct slot *s;
	int ran = 0;

	pthread_mutex_lock(&loop->lock);
	if (idx >= loop->nslots)
		goto out;
	s = &loop->slots[idx];
	if (s->gen != gen)
		goto out; /* removed after epoll_wait fetched it */
	if (s->kind == SLOT_FD) {
		struct evloop_fd *reg = s->obj;
		evloop_fd_fn fn = reg->fn;
		void *opaque = reg->opaque;
		int fd = reg->fd;

		loop->cur_slot = idx;
		loop->cur_gen = gen;
		pthread_mutex_unlock(&loop->lock);
		fn(opaque, fd, events);
		pthread_mutex_lock(&loop->lock);
		loop->cur_slot = SLOT_NONE;
		pthread_cond_broadcast(&loop->idle);
		ran = 1;
	} else if (s->kind == SLOT_OP) {
		struct evloop_op *op = s->obj;

		if (op->state == OP_PENDING_FD) {
			op_detach_fd(loop, op);
			run_op(loop, op, (int)events);
			ran = 1;
		}
	}
out:
	pthread_mutex_unlock(&loop->lock);
	return ran;
}

/* Moves fd ops whose deadline passed to the completion queue (lock held) and
 * returns the epoll timeout to use until the next deadline. */
static int expire_ops(struct evloop *loop, int timeout_ms)
{
	uint64_t now, next = UINT64_MAX;
	struct evloop_op *op = loop->timed, *nx;

	if (!op)   /* nothing timed: no clock read (a system call where the vDSO cannot serve) */
		return loop->done_head ? 0 : timeout_ms;
	now = mono_ns();
	for (; op; op = nx) {
		nx = op->next;
		if (op->deadline_ns <= now) {
			op_detach_fd(loop, op);
			done_push(loop, op, -ETIMEDOUT);
		} else if (op->deadline_ns < next) {
			next = op->deadline_ns;
		}
	}
	if (loop->done_head)
		return 0;
	if (next != UINT64_MAX) {
		uint64_t ms = (next - now + 999999u) / 1000000u;

		if (timeout_ms < 0 || ms < (uint64_t)timeout_ms)
			timeout_ms = (int)(ms > INT32_MAX ? INT32_MAX : ms);
	}
	return timeout_ms;
}

/* Runs the ops completed so far (not those completed by these callbacks, so a
 * callback that completes its own op again cannot starve the fds). */
static int run_done(struct evloop *loop)
{
	struct evloop_op *tail;
	int ran = 0;

	pthread_mutex_lock(&loop->lock);
	expire_ops(loop, -1);
	tail = loop->done_tail;
	while (loop->done_head) {
		struct evloop_op *op = loop->done_head;
		bool last = op == tail;

		done_remove(loop, op);
		run_op(loop, op, op->result);
		ran++;
		if (last)
			break;
	}
	pthread_mutex_unlock(&loop->lock);
	return ran;
}

static int run_batch(struct evloop *loop, int timeout_ms)
{
	struct epoll_event evs[EVLOOP_BATCH];
	int n, ran = 0;

	pthread_mutex_lock(&loop->lock);
	timeout_ms = expire_ops(loop, timeout_ms);
	pthread_mutex_unlock(&loop->lock);

	n = epoll_wait(loop->epfd, evs, EVLOOP_BATCH, timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	for (int i = 0; i < n; i++) {
		if (evs[i].data.u64 == TOKEN_WAKE) {
			(void)notifier_reset(&loop->wake);
			continue;
		}
		ran += dispatch(loop, evs[i].data.u64, evs[i].events);
	}
	return ran + run_done(loop);
}

static int claim_runner(struct evloop *loop)
{
	int expected = 0;

	if (!atomic_compare_exchange_strong(&loop->runner_tid, &expected, current_tid()))
		return -EBUSY;
	return 0;
}

int evloop_run_once(struct evloop *loop, int timeout_ms)
{
	int ret = claim_runner(loop);

	if (ret)
		return ret;
	ret = run_batch(loop, timeout_ms);
	atomic_store(&loop->runner_tid, 0);
	return ret;
}

int evloop_run(struct evloop *loop)
{
	int ret = claim_runner(loop);

	if (ret)
		return ret;
	while (!atomic_exchange(&loop->stop, false)) {
		ret = run_batch(loop, -1);
		if (ret < 0)
			break;
		ret = 0;
	}
	atomic_store(&loop->runner_tid, 0);
	return ret;
}
