// SPDX-License-Identifier: MIT
#include "channel/notifier.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define NOTIFIER_MAX UINT64_C(0xfffffffffffffffe)

int notifier_init(struct notifier *n, enum notifier_mode mode)
{
	int flags = EFD_NONBLOCK | EFD_CLOEXEC;

	n->fd = -1;
	n->counter = mode == NOTIFIER_COUNTER;
	if (mode == NOTIFIER_SEMAPHORE)
		flags |= EFD_SEMAPHORE;
	else if (mode != NOTIFIER_COUNTER)
		return -EINVAL;
	n->fd = eventfd(0, flags);
	if (n->fd < 0)
		return -errno;
	return 0;
}

/* An eventfd's /proc/self/fd link reads "anon_inode:[eventfd]". */
static bool fd_is_eventfd(int fd)
{
	char path[64], target[64];
	ssize_t len;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	len = readlink(path, target, sizeof(target) - 1);
	if (len < 0)
		return false;
	target[len] = '\0';
	return strcmp(target, "anon_inode:[eventfd]") == 0;
}

int notifier_adopt(struct notifier *n, int fd)
{
	int fl;

	n->fd = -1;
	n->counter = false;   /* its mode is not known: reset drains it read by read */
	if (fd < 0 || !fd_is_eventfd(fd))
		return -EINVAL;
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	n->fd = fd;
	return 0;
}

void notifier_destroy(struct notifier *n)
{
	if (n->fd >= 0)
		close(n->fd);
	n->fd = -1;
}

int notifier_add(struct notifier *n, uint64_t value)
{
	if (value == 0 || value > NOTIFIER_MAX)
		return -EINVAL;
	for (;;) {
		ssize_t r = write(n->fd, &value, sizeof(value));

		if (r == sizeof(value))
			return 0;
		if (r < 0 && errno == EINTR)
			continue;
		/* A non-blocking eventfd refuses a write that would overflow. */
		return (r < 0 && errno != EAGAIN) ? -errno : -EOVERFLOW;
	}
}

int notifier_signal(struct notifier *n)
{
	return notifier_add(n, 1);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int notifier_wait(struct notifier *n, int timeout_ms, uint64_t *value)
{
	int64_t deadline = timeout_ms > 0 ? now_ms() + timeout_ms : 0;
	struct pollfd pfd = { .fd = n->fd, .events = POLLIN };
	uint64_t v;

	for (;;) {
		ssize_t r = read(n->fd, &v, sizeof(v));
		int left, p;

		if (r == sizeof(v)) {
			if (value)
				*value = v;
			return 0;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r >= 0 || errno != EAGAIN)
			return r < 0 ? -errno : -EIO;
		if (timeout_ms == 0)
			return -EAGAIN;
		left = -1;
		if (timeout_ms > 0) {
			int64_t rem = deadline - now_ms();

			if (rem <= 0)
				return -ETIMEDOUT;
			left = (int)rem;
		}
		/* Another waiter may take the count first: then loop and wait again. */
		p = poll(&pfd, 1, left);
		if (p < 0 && errno != EINTR)
			return -errno;
	}
}

int64_t notifier_reset(struct notifier *n)
{
	int64_t total = 0;
	uint64_t v;

	for (;;) {
		ssize_t r = read(n->fd, &v, sizeof(v));

		if (r == sizeof(v)) {
			/* Saturate: the count only matters as "how many, roughly". */
			if (v > (uint64_t)(INT64_MAX - total))
				total = INT64_MAX;
			else
				total += (int64_t)v;
			/* A counter read took it all: no second read to learn EAGAIN. A
			 * signal racing in after it leaves the fd readable, as it should. */
			if (n->counter)
				return total;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN)
			return total;
		return r < 0 ? -errno : -EIO;
	}
}

bool notifier_is_set(const struct notifier *n)
{
	struct pollfd pfd = { .fd = n->fd, .events = POLLIN };

	return poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLIN);
}
