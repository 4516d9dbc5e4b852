// SPDX-License-Identifier: MIT
/* Unit tests for channel/notifier: counter and semaphore modes, timeouts,
 * pollability, adopting an fd, cross-thread and cross-process wake-ups. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "channel/notifier.h"

static void test_counter_mode(void **state)
{
	struct notifier n;
	uint64_t v = 0;

	(void)state;
	assert_int_equal(notifier_init(&n, NOTIFIER_COUNTER), 0);
	assert_false(notifier_is_set(&n));
	assert_int_equal(notifier_signal(&n), 0);
	assert_int_equal(notifier_add(&n, 4), 0);
	assert_true(notifier_is_set(&n));
	assert_int_equal(notifier_wait(&n, 0, &v), 0);
	assert_int_equal(v, 5);
	assert_false(notifier_is_set(&n));
	assert_int_equal(notifier_wait(&n, 0, &v), -EAGAIN);
	notifier_destroy(&n);
	notifier_destroy(&n); /* twice is harmless */
}

static void test_semaphore_mode(void **state)
{
	struct notifier n;
	uint64_t v = 0;

	(void)state;
	assert_int_equal(notifier_init(&n, NOTIFIER_SEMAPHORE), 0);
	assert_int_equal(notifier_add(&n, 3), 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(notifier_wait(&n, 0, &v), 0);
		assert_int_equal(v, 1);
	}
	assert_false(notifier_is_set(&n));
	assert_int_equal(notifier_add(&n, 2), 0);
	assert_int_equal(notifier_reset(&n), 2);
	assert_false(notifier_is_set(&n));
	notifier_destroy(&n);
}

static void test_bad_arguments(void **state)
{
	struct notifier n;
	int p[2];

	(void)state;
	assert_int_equal(notifier_init(&n, (enum notifier_mode)7), -EINVAL);
	assert_int_equal(notifier_init(&n, NOTIFIER_COUNTER), 0);
	assert_int_equal(notifier_add(&n, 0), -EINVAL);
	assert_int_equal(notifier_add(&n, UINT64_MAX), -EINVAL);
	assert_int_equal(notifier_add(&n, UINT64_C(0xfffffffffffffffe)), 0);
	assert_int_equal(notifier_signal(&n), -EOVERFLOW);
	assert_int_equal(notifier_reset(&n), INT64_MAX); /* saturated */
	notifier_destroy(&n);
	/* Only an eventfd may be adopted. */
	assert_int_equal(pipe(p), 0);
	assert_int_equal(notifier_adopt(&n, p[0]), -EINVAL);
	assert_int_equal(notifier_adopt(&n, -1), -EINVAL);
	close(p[0]);
	close(p[1]);
}

static void test_wait_timeout(void **state)
{
	struct notifier n;
	struct timespec a, b;
	long ms;

	(void)state;
	assert_int_equal(notifier_init(&n, NOTIFIER_COUNTER), 0);
	clock_gettime(CLOCK_MONOTONIC, &a);
	assert_int_equal(notifier_wait(&n, 50, NULL), -ETIMEDOUT);
	clock_gettime(CLOCK_MONOTONIC, &b);
	ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
	assert_true(ms >= 49); /* never returns early */
	notifier_destroy(&n);
}

static void *signal_later(void *arg)
{
	struct timespec ts = { 0, 20 * 1000 * 1000 };

	nanosleep(&ts, NULL);
	assert_int_equal(notifier_signal(arg), 0);
	return NULL;
}

static void test_wake_from_thread(void **state)
{
	struct notifier n;
	pthread_t t;
	uint64_t v = 0;
	struct pollfd pfd;

	(void)state;
	assert_int_equal(notifier_init(&n, NOTIFIER_COUNTER), 0);
	assert_int_equal(pthread_create(&t, NULL, signal_later, &n), 0);
	assert_int_equal(notifier_wait(&n, 10000, &v), 0);
	assert_int_equal(v, 1);
	pthread_join(t, NULL);
	/* The fd polls readable exactly while the counter is non-zero. */
	pfd = (struct pollfd){ .fd = notifier_fd(&n), .events = POLLIN };
	assert_int_equal(poll(&pfd, 1, 0), 0);
	assert_int_equal(notifier_signal(&n), 0);
	assert_int_equal(poll(&pfd, 1, 0), 1);
	notifier_destroy(&n);
}

static void test_adopt_across_fork(void **state)
{
	struct notifier n, child_view;
	pid_t pid;
	int status;
	uint64_t v = 0;

	(void)state;
	assert_int_equal(notifier_init(&n, NOTIFIER_SEMAPHORE), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = dup(notifier_fd(&n));

		if (notifier_adopt(&child_view, fd) || notifier_add(&child_view, 2))
			_exit(1);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* Semaphore mode travelled with the fd: two separate takes. */
	assert_int_equal(notifier_wait(&n, 1000, &v), 0);
	assert_int_equal(v, 1);
	assert_int_equal(notifier_wait(&n, 1000, &v), 0);
	assert_int_equal(notifier_wait(&n, 0, &v), -EAGAIN);
	notifier_destroy(&n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counter_mode),
		cmocka_unit_test(test_semaphore_mode),
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_wait_timeout),
		cmocka_unit_test(test_wake_from_thread),
		cmocka_unit_test(test_adopt_across_fork),
	};

	return cmocka_run_group_tests_name("channel_notifier", tests, NULL, NULL);
}
