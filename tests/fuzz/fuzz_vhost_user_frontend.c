/*
 * libFuzzer harness for virtio/vhost_user/frontend: the input is the whole
 * byte stream a hostile back-end sends on the socket (then it hangs up),
 * with up to one fd attached to its first byte. The front-end walks the
 * set-up (negotiation, features, memory table, one ring started and
 * stopped, config space, device state).
 *
 *   [0] low 4 bits: 1 attaches an eventfd to the stream's first byte
 *   [1..] the stream
 *
 * Checks: no crash, no fd left open, and no call waits (the hang-up ends
 * every read at once).
 */
#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "virtio/vhost_user/frontend.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	unsigned n = 0;

	if (!d)
		abort();
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static void send_stream(int s, const uint8_t *p, size_t len, bool with_fd)
{
	char ctl[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { (void *)p, len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	int efd = -1;

	if (!len)
		return;
	if (with_fd) {
		struct cmsghdr *c;

		efd = eventfd(0, EFD_CLOEXEC);
		memset(ctl, 0, sizeof(ctl));
		mh.msg_control = ctl;
		mh.msg_controllen = sizeof(ctl);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &efd, sizeof(int));
	}
	(void)sendmsg(s, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (efd >= 0)
		close(efd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned baseline;
	struct vhu_fe fe;
	struct vhu_fe_region r;
	struct vhu_ring_cfg c;
	uint8_t cfg[64];
	uint16_t base;
	int sv[2], ev, state_fd;

	if (size < 1 || size > 60000)
		return 0;
	baseline = open_fds();
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return 0;
	ev = eventfd(0, EFD_CLOEXEC);
	send_stream(sv[1], data + 1, size - 1, (data[0] & 0xf) == 1);
	shutdown(sv[1], SHUT_WR);   /* the stream ends: every read past it sees the hang-up */
	vhu_fe_init(&fe, "fuzz", sv[0], 1000);
	if (vhu_fe_negotiate(&fe, ~0ULL) == 0) {
		r = (struct vhu_fe_region){ .size = 4096, .hva = 0x10000, .fd = ev };
		c = (struct vhu_ring_cfg){ .size = 16, .desc = 0x10000, .avail = 0x10100,
					   .used = 0x10200, .kick_fd = ev, .call_fd = ev, .err_fd = ev };
		(void)vhu_fe_set_features(&fe, 1ULL << 32);
		(void)vhu_fe_set_mem_table(&fe, &r, 1);
		(void)vhu_fe_ring_start(&fe, 0, &c);
		(void)vhu_fe_get_config(&fe, 0, cfg, sizeof(cfg));
		(void)vhu_fe_ring_stop(&fe, 0, &base);
		if (vhu_fe_set_device_state_fd(&fe, 0, ev, &state_fd) == 0 && state_fd >= 0)
			close(state_fd);
		(void)vhu_fe_check_device_state(&fe);
	}
	shutdown(sv[1], SHUT_RDWR);
	vhu_fe_close(&fe);
	close(sv[1]);
	close(ev);
	if (open_fds() != baseline)
		abort();
	return 0;
}
