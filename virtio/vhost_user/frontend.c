/* The front-end side of a vhost-user connection; see frontend.h. */
#include "virtio/vhost_user/frontend.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MSG_BUF (VHU_HDR_SIZE + VHU_MAX_PAYLOAD)

/* ---- socket I/O: whole messages, fds beside them, everything bounded in time -------- */

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

static int wait_fd(int fd, short events, uint64_t deadline_ns)
{
	for (;;) {
		uint64_t now = monotonic_ns();
		struct pollfd p = { .fd = fd, .events = events };
		int ms, r;

		if (now >= deadline_ns)
			return -ETIMEDOUT;
		ms = (int)MIN((deadline_ns - now + 999999) / 1000000, (uint64_t)60000);
		r = poll(&p, 1, ms);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r > 0)
			return 0;
	}
}

static void close_fds(int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

static int send_all(int sock, const uint8_t *buf, size_t len, const int *fds, unsigned nfds,
		    uint64_t deadline_ns)
{
	union {
		char b[CMSG_SPACE(sizeof(int) * VHU_MAX_FDS)];
		struct cmsghdr align;
	} ctl;
	size_t done = 0;

	if (nfds > VHU_MAX_FDS)
		return -EINVAL;
	while (done < len) {
		struct iovec iov = { .iov_base = (void *)(buf + done), .iov_len = len - done };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		ssize_t r;

		if (nfds && done == 0) {
			struct cmsghdr *c;

			memset(&ctl, 0, sizeof(ctl));
			mh.msg_control = ctl.b;
			mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
			c = CMSG_FIRSTHDR(&mh);
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
			memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
		}
		/* MSG_NOSIGNAL: a back-end that died is an error code, not a SIGPIPE. */
		r = sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (r < 0) {
			int ret;

			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return errno == EPIPE ? -ECONNRESET : -errno;
			ret = wait_fd(sock, POLLOUT, deadline_ns);
			if (ret)
				return ret;
			continue;
		}
		done += (size_t)r;
	}
	return 0;
}

/* Read exactly len bytes, collecting any fds that come with them into fds[*nfds..]. */
static int recv_exact(int sock, uint8_t *buf, size_t len, int *fds, unsigned *nfds,
		      bool *fd_overflow, uint64_t deadline_ns)
{
	size_t done = 0;

	while (done < len) {
		union {
			char b[CMSG_SPACE(sizeof(int) * VHU_MAX_FDS)];
			struct cmsghdr align;
		} ctl;
		struct iovec iov = { .iov_base = buf + done, .iov_len = len - done };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
				     .msg_controllen = sizeof(ctl.b) };
		ssize_t r = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);

		if (r < 0) {
			int ret;

			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return errno == EPIPE ? -ECONNRESET : -errno;
			ret = wait_fd(sock, POLLIN, deadline_ns);
			if (ret)
				return ret;
			continue;
		}
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			unsigned n;
			int got[VHU_MAX_FDS];

			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			n = (unsigned)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			if (n > VHU_MAX_FDS)
				n = VHU_MAX_FDS;
			memcpy(got, CMSG_DATA(c), n * sizeof(int));
			for (unsigned i = 0; i < n; i++) {
				if (*nfds < VHU_MAX_FDS) {
					fds[(*nfds)++] = got[i];
				} else {
					close(got[i]);
					*fd_overflow = true;
				}
			}
		}
		if (mh.msg_flags & MSG_CTRUNC)
			*fd_overflow = true;  /* the kernel dropped some: count it as wrong */
		if (r == 0)
			return -ECONNRESET;
		done += (size_t)r;
	}
	return 0;
}

/*
 * One whole message: the header, then exactly the payload it announces. A
 * header announcing more than VHU_MAX_PAYLOAD comes back alone, and the
 * decoder says "too large" (the stream is out of step then anyway).
 */
static int recv_msg(int sock, uint8_t *buf, size_t *len, int *fds, unsigned *nfds,
		    unsigned *nfds_seen, int timeout_ms)
{
	uint64_t deadline = monotonic_ns() + (uint64_t)timeout_ms * 1000000ULL;
	bool overflow = false;
	uint32_t size;
	int ret;

	*nfds = 0;
	*len = 0;
	ret = recv_exact(sock, buf, VHU_HDR_SIZE, fds, nfds, &overflow, deadline);
	if (ret)
		goto err;
	*len = VHU_HDR_SIZE;
	memcpy(&size, buf + 8, sizeof(size));
	if (size <= VHU_MAX_PAYLOAD && size) {
		ret = recv_exact(sock, buf + VHU_HDR_SIZE, size, fds, nfds, &overflow, deadline);
		if (ret)
			goto err;
		*len += size;
	}
	/* More than any message may carry: the decoder refuses it. */
	*nfds_seen = overflow ? VHU_MAX_FDS + 1 : *nfds;
	return 0;
err:
	close_fds(fds, *nfds);
	*nfds = 0;
	return ret;
}

/* ---- the connection ---------------------------------------------------------------- */

void vhu_fe_init(struct vhu_fe *fe, const char *name, int sock, int timeout_ms)
{
	memset(fe, 0, sizeof(*fe));
	snprintf(fe->name, sizeof(fe->name), "%s", name);
	fe->sock = sock;
	fe->backend_req_fd = -1;
	fe->timeout_ms = timeout_ms > 0 ? timeout_ms : VHU_DEFAULT_TIMEOUT_MS;
	if (sock >= 0 && set_nonblock(sock))
		fe->failed = true;
}

void vhu_fe_close(struct vhu_fe *fe)
{
	if (fe->sock >= 0)
		close(fe->sock);
	if (fe->backend_req_fd >= 0)
		close(fe->backend_req_fd);
	fe->sock = -1;
	fe->backend_req_fd = -1;
}

int vhu_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, ret;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	do {
		ret = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	} while (ret < 0 && errno == EINTR);
	if (ret < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	return fd;
}

/* The connection broke or the back-end misbehaved: one line, then the failed state. */
static int fail(struct vhu_fe *fe, uint32_t request, int err, const char *why)
{
	if (!fe->failed) {
		if (err == -ETIMEDOUT)
			pr_err("%s: vhost-user back-end did not answer %s within %d ms; device stopped",
			       fe->name, vhu_request_name(request), fe->timeout_ms);
		else if (err == -ECONNRESET)
			;   /* the device layer says what happens next, in one line */
		else
			pr_err("%s: vhost-user back-end's reply to %s: %s; device stopped", fe->name,
			       vhu_request_name(request), why ? why : strerror(-err));
	}
	fe->failed = true;
	return err == -ETIMEDOUT || err == -ECONNRESET ? err : -EIO;
}

/* A well-formed reply saying the request failed: the connection itself is fine. */
static int refused(struct vhu_fe *fe, uint32_t request)
{
	if (!fe->quiet_refusals)
		pr_err("%s: vhost-user back-end refused %s", fe->name, vhu_request_name(request));
	return -EREMOTEIO;
}

static int usable(struct vhu_fe *fe)
{
	if (fe->sock < 0)
		return -ENOTCONN;
	return fe->failed ? -EIO : 0;
}

static bool want_ack(const struct vhu_fe *fe)
{
	return vhu_fe_has_protocol(fe, VHU_PROTOCOL_F_REPLY_ACK);
}

static uint32_t request_of(const uint8_t *msg)
{
	uint32_t r;

	memcpy(&r, msg, sizeof(r));
	return r;
}

/*
 * Send msg with fds; then wait for its reply when it has one (`has_reply`)
 * or when it asked for a REPLY_ACK. *out gets the u64 (or base); *out_fd an fd
 * the reply carried (SET_DEVICE_STATE_FD only), else received fds are closed.
 */
static int rpc(struct vhu_fe *fe, const uint8_t *msg, size_t n, const int *fds, unsigned nfds,
	       bool has_reply, uint32_t index, uint64_t *out, int *out_fd)
{
	uint8_t buf[MSG_BUF];
	int rfds[VHU_MAX_FDS];
	uint32_t request = request_of(msg), flags;
	unsigned rnfds = 0, seen = 0;
	size_t len;
	uint64_t v = 0;
	bool ack;
	int ret = usable(fe);

	if (ret)
		return ret;
	if (!n)
		return -EINVAL;
	memcpy(&flags, msg + 4, sizeof(flags));
	ack = !has_reply && (flags & VHU_FLAG_NEED_REPLY);
	fe->nr_requests++;
	ret = send_all(fe->sock, msg, n, fds, nfds,
		       monotonic_ns() + (uint64_t)fe->timeout_ms * 1000000ULL);
	if (ret)
		return fail(fe, request, ret, NULL);
	if (!has_reply && !ack)
		return 0;
	ret = recv_msg(fe->sock, buf, &len, rfds, &rnfds, &seen, fe->timeout_ms);
	if (ret)
		return fail(fe, request, ret, NULL);
	ret = vhu_decode_reply_u64(buf, len, seen, request, ack, index, &v);
	if (!ret && out_fd && rnfds == 1) {
		*out_fd = rfds[0];
		rnfds = 0;
	}
	close_fds(rfds, rnfds);
	if (ret == -VHU_E_NACK)
		return refused(fe, request);
	if (ret)
		return fail(fe, request, -EIO, vhu_strerror(ret));
	if (out)
		*out = v;
	return 0;
}

static int send_u64(struct vhu_fe *fe, uint32_t request, uint64_t v, const int *fds,
		    unsigned nfds)
{
	uint8_t m[MSG_BUF];
	size_t n = vhu_encode_u64(m, sizeof(m), request, want_ack(fe), v);

	return rpc(fe, m, n, fds, nfds, false, 0, NULL, NULL);
}

static int get_u64(struct vhu_fe *fe, uint32_t request, uint64_t *v)
{
	uint8_t m[MSG_BUF];
	size_t n = vhu_encode_none(m, sizeof(m), request, false);

	return rpc(fe, m, n, NULL, 0, true, 0, v, NULL);
}

static int send_state(struct vhu_fe *fe, uint32_t request, unsigned q, uint32_t num)
{
	uint8_t m[MSG_BUF];
	size_t n = vhu_encode_vring_state(m, sizeof(m), request, want_ack(fe), q, num);

	return rpc(fe, m, n, NULL, 0, false, 0, NULL, NULL);
}

/* KICK, CALL, ERR: ring index in the u64, the fd beside it (or the no-fd bit). */
static int send_ring_fd(struct vhu_fe *fe, uint32_t request, unsigned q, int fd)
{
	uint64_t v = q & VHU_VRING_IDX_MASK;

	if (fd < 0)
		v |= VHU_VRING_NOFD;
	return send_u64(fe, request, v, &fd, fd >= 0 ? 1 : 0);
}

int vhu_fe_negotiate(struct vhu_fe *fe, uint64_t want_protocol)
{
	uint64_t v;
	int ret, sv[2];

	ret = get_u64(fe, VHU_GET_FEATURES, &fe->backend_features);
	if (ret)
		return ret;
	fe->protocol_features = 0;
	if (fe->backend_features & (1ULL << VHU_F_PROTOCOL_FEATURES)) {
		uint8_t m[MSG_BUF];
		size_t n;

		ret = get_u64(fe, VHU_GET_PROTOCOL_FEATURES, &v);
		if (ret)
			return ret;
		v &= want_protocol & vhu_protocol_features_supported();
		/* REPLY_ACK applies from the next message on: this one is sent without it. */
		n = vhu_encode_u64(m, sizeof(m), VHU_SET_PROTOCOL_FEATURES, false, v);
		ret = rpc(fe, m, n, NULL, 0, false, 0, NULL, NULL);
		if (ret)
			return ret;
		fe->protocol_features = v;
	}
	{
		uint8_t m[MSG_BUF];
		size_t n = vhu_encode_none(m, sizeof(m), VHU_SET_OWNER, want_ack(fe));

		ret = rpc(fe, m, n, NULL, 0, false, 0, NULL, NULL);
		if (ret)
			return ret;
	}
	fe->queue_num = 0;
	if (vhu_fe_has_protocol(fe, VHU_PROTOCOL_F_MQ)) {
		ret = get_u64(fe, VHU_GET_QUEUE_NUM, &v);
		if (ret)
			return ret;
		fe->queue_num = (unsigned)v;
	}
	fe->max_mem_slots = 0;
	if (vhu_fe_has_protocol(fe, VHU_PROTOCOL_F_CONFIGURE_MEM_SLOTS)) {
		ret = get_u64(fe, VHU_GET_MAX_MEM_SLOTS, &v);
		if (ret)
			return ret;
		fe->max_mem_slots = (unsigned)v;
	}
	if (vhu_fe_has_protocol(fe, VHU_PROTOCOL_F_BACKEND_REQ)) {
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
			return -errno;
		ret = send_u64(fe, VHU_SET_BACKEND_REQ_FD, 0, &sv[1], 1);
		close(sv[1]);
		if (ret) {
			close(sv[0]);
			return ret;
		}
		if (set_nonblock(sv[0])) {
			close(sv[0]);
			return -EIO;
		}
		fe->backend_req_fd = sv[0];
	}
	fe->features_sent = false;
	fe->mem_sent = false;
	fe->nr_sent_regions = 0;
	return 0;
}

int vhu_fe_set_features(struct vhu_fe *fe, uint64_t features)
{
	int ret;

	if (fe->backend_features & (1ULL << VHU_F_PROTOCOL_FEATURES))
		features |= 1ULL << VHU_F_PROTOCOL_FEATURES;
	ret = send_u64(fe, VHU_SET_FEATURES, features, NULL, 0);
	if (!ret) {
		fe->acked_features = features;
		fe->features_sent = true;
	}
	return ret;
}

static bool same_regions(const struct vhu_fe_region *a, const struct vhu_fe_region *b,
			 unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (a[i].gpa != b[i].gpa || a[i].size != b[i].size || a[i].hva != b[i].hva ||
		    a[i].fd != b[i].fd || a[i].fd_offset != b[i].fd_offset)
			return false;
	return true;
}

static struct vhu_mem_region wire_region(const struct vhu_fe_region *r)
{
	return (struct vhu_mem_region){ .gpa = r->gpa, .size = r->size, .uaddr = r->hva,
					 .mmap_offset = r->fd_offset };
}

int vhu_fe_set_mem_table(struct vhu_fe *fe, const struct vhu_fe_region *r, unsigned n)
{
	uint8_t m[MSG_BUF];
	size_t len;
	int ret;

	if (n == 0 || n > VHU_MAX_MEM_REGIONS)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++)
		if (r[i].fd < 0)
			return -EINVAL;   /* memory the back-end cannot map */
	if (fe->mem_sent && fe->nr_sent_regions == n && same_regions(fe->sent_regions, r, n))
		return 0;
	if (vhu_fe_has_protocol(fe, VHU_PROTOCOL_F_CONFIGURE_MEM_SLOTS)) {
		if (n > fe->max_mem_slots)
			return -ENOSPC;
		for (unsigned i = 0; fe->mem_sent && i < fe->nr_sent_regions; i++) {
			struct vhu_mem_region w = wire_region(&fe->sent_regions[i]);

			len = vhu_encode_mem_reg(m, sizeof(m), VHU_REM_MEM_REG, want_ack(fe), &w);
			ret = rpc(fe, m, len, NULL, 0, false, 0, NULL, NULL);
			if (ret)
				return ret;
		}
		fe->mem_sent = false;
		for (unsigned i = 0; i < n; i++) {
			struct vhu_mem_region w = wire_region(&r[i]);

			len = vhu_encode_mem_reg(m, sizeof(m), VHU_ADD_MEM_REG, want_ack(fe), &w);
			ret = rpc(fe, m, len, &r[i].fd, 1, false, 0, NULL, NULL);
			if (ret)
				return ret;
		}
	} else {
		struct vhu_mem_region w[VHU_MAX_MEM_REGIONS];
		int fds[VHU_MAX_MEM_REGIONS];

		for (unsigned i = 0; i < n; i++) {
			w[i] = wire_region(&r[i]);
			fds[i] = r[i].fd;
		}
		len = vhu_encode_mem_table(m, sizeof(m), want_ack(fe), w, n);
		ret = rpc(fe, m, len, fds, n, false, 0, NULL, NULL);
		if (ret)
			return ret;
	}
	memcpy(fe->sent_regions, r, n * sizeof(*r));
	fe->nr_sent_regions = n;
	fe->mem_sent = true;
	return 0;
}

int vhu_fe_ring_start(struct vhu_fe *fe, unsigned q, const struct vhu_ring_cfg *cfg)
{
	struct vhu_vring_addr a = { .index = q, .desc = cfg->desc, .used = cfg->used,
				    .avail = cfg->avail };
	uint8_t m[MSG_BUF];
	size_t n;
	int ret;

	if (q > VHU_VRING_IDX_MASK)
		return -EINVAL;
	ret = send_state(fe, VHU_SET_VRING_NUM, q, cfg->size);
	if (ret)
		return ret;
	n = vhu_encode_vring_addr(m, sizeof(m), want_ack(fe), &a);
	ret = rpc(fe, m, n, NULL, 0, false, 0, NULL, NULL);
	if (!ret)
		ret = send_state(fe, VHU_SET_VRING_BASE, q, cfg->base);
	/* CALL before KICK: the ring can complete work as soon as it has its kick. */
	if (!ret)
		ret = send_ring_fd(fe, VHU_SET_VRING_CALL, q, cfg->call_fd);
	if (!ret && cfg->err_fd >= 0)
		ret = send_ring_fd(fe, VHU_SET_VRING_ERR, q, cfg->err_fd);
	if (!ret)
		ret = send_ring_fd(fe, VHU_SET_VRING_KICK, q, cfg->kick_fd);
	if (!ret && (fe->acked_features & (1ULL << VHU_F_PROTOCOL_FEATURES)))
		ret = send_state(fe, VHU_SET_VRING_ENABLE, q, 1);
	return ret;
}

int vhu_fe_ring_set_call(struct vhu_fe *fe, unsigned q, int call_fd)
{
	return send_ring_fd(fe, VHU_SET_VRING_CALL, q, call_fd);
}

int vhu_fe_ring_stop(struct vhu_fe *fe, unsigned q, uint16_t *base)
{
	uint8_t m[MSG_BUF];
	uint64_t v = 0;
	size_t n;
	int ret;

	if (fe->acked_features & (1ULL << VHU_F_PROTOCOL_FEATURES)) {
		ret = send_state(fe, VHU_SET_VRING_ENABLE, q, 0);
		if (ret)
			return ret;
	}
	n = vhu_encode_vring_state(m, sizeof(m), VHU_GET_VRING_BASE, false, q, 0);
	ret = rpc(fe, m, n, NULL, 0, true, q, &v, NULL);
	if (!ret)
		*base = (uint16_t)v;
	return ret;
}

int vhu_fe_reset_device(struct vhu_fe *fe)
{
	uint8_t m[MSG_BUF];
	size_t n;

	if (!vhu_fe_has_protocol(fe, VHU_PROTOCOL_F_RESET_DEVICE))
		return -EOPNOTSUPP;
	n = vhu_encode_none(m, sizeof(m), VHU_RESET_DEVICE, want_ack(fe));
	return rpc(fe, m, n, NULL, 0, false, 0, NULL, NULL);
}

int vhu_fe_get_config(struct vhu_fe *fe, uint32_t off, void *buf, uint32_t len)
{
	uint8_t m[MSG_BUF], r[MSG_BUF];
	int rfds[VHU_MAX_FDS];
	unsigned rnfds = 0, seen = 0;
	size_t n, rlen;
	int ret = usable(fe);

	if (ret)
		return ret;
	if (!vhu_fe_has_protocol(fe, VHU_PROTOCOL_F_CONFIG))
		return -EOPNOTSUPP;
	if (len == 0 || len > VHU_MAX_CONFIG)
		return -EINVAL;
	n = vhu_encode_config(m, sizeof(m), VHU_GET_CONFIG, false, off, len, 0, NULL);
	fe->nr_requests++;
	ret = send_all(fe->sock, m, n, NULL, 0,
		       monotonic_ns() + (uint64_t)fe->timeout_ms * 1000000ULL);
	if (ret)
		return fail(fe, VHU_GET_CONFIG, ret, NULL);
	ret = recv_msg(fe->sock, r, &rlen, rfds, &rnfds, &seen, fe->timeout_ms);
	if (ret)
		return fail(fe, VHU_GET_CONFIG, ret, NULL);
	ret = vhu_decode_reply_config(r, rlen, seen, off, len, buf);
	close_fds(rfds, rnfds);
	if (ret == -VHU_E_NACK)
		return refused(fe, VHU_GET_CONFIG);
	if (ret)
		return fail(fe, VHU_GET_CONFIG, -EIO, vhu_strerror(ret));
	return 0;
}

int vhu_fe_set_config(struct vhu_fe *fe, uint32_t off, const void *buf, uint32_t len)
{
	uint8_t m[MSG_BUF];
	size_t n;

	if (!vhu_fe_has_protocol(fe, VHU_PROTOCOL_F_CONFIG))
		return -EOPNOTSUPP;
	if (len == 0 || len > VHU_MAX_CONFIG)
		return -EINVAL;
	n = vhu_encode_config(m, sizeof(m), VHU_SET_CONFIG, want_ack(fe), off, len, 0, buf);
	return rpc(fe, m, n, NULL, 0, false, 0, NULL, NULL);
}

int vhu_fe_set_device_state_fd(struct vhu_fe *fe, uint32_t direction, int fd, int *reply_fd)
{
	uint8_t m[MSG_BUF];
	size_t n;

	*reply_fd = -1;
	if (!vhu_fe_has_protocol(fe, VHU_PROTOCOL_F_DEVICE_STATE))
		return -EOPNOTSUPP;
	if (direction > 1 || fd < 0)
		return -EINVAL;
	n = vhu_encode_state_xfer(m, sizeof(m), false, direction, 0);
	return rpc(fe, m, n, &fd, 1, true, 0, NULL, reply_fd);
}

int vhu_fe_check_device_state(struct vhu_fe *fe)
{
	uint8_t m[MSG_BUF];
	size_t n;

	if (!vhu_fe_has_protocol(fe, VHU_PROTOCOL_F_DEVICE_STATE))
		return -EOPNOTSUPP;
	n = vhu_encode_none(m, sizeof(m), VHU_CHECK_DEVICE_STATE, false);
	return rpc(fe, m, n, NULL, 0, true, 0, NULL, NULL);
}

int vhu_fe_backend_req(struct vhu_fe *fe, uint32_t *request)
{
	uint8_t buf[MSG_BUF], r[MSG_BUF];
	int rfds[VHU_MAX_FDS];
	unsigned rnfds = 0, seen = 0;
	bool need_reply = false;
	size_t len, n;
	int ret, dec;

	*request = 0;
	if (fe->backend_req_fd < 0)
		return -ENOTCONN;
	ret = recv_msg(fe->backend_req_fd, buf, &len, rfds, &rnfds, &seen, fe->timeout_ms);
	if (ret)
		goto err_close;
	dec = vhu_decode_backend_req(buf, len, seen, request, &need_reply);
	close_fds(rfds, rnfds);
	if (dec && dec != -VHU_E_UNKNOWN) {
		pr_err("%s: vhost-user back-end request: %s; channel closed", fe->name,
		       vhu_strerror(dec));
		ret = -EIO;
		goto err_close;
	}
	if (dec)
		pr_err("%s: vhost-user back-end request %u not supported; refused", fe->name,
		       *request);
	if (need_reply) {
		n = vhu_encode_backend_reply(r, sizeof(r), *request, dec ? 1 : 0);
		ret = send_all(fe->backend_req_fd, r, n, NULL, 0,
			       monotonic_ns() + (uint64_t)fe->timeout_ms * 1000000ULL);
		if (ret)
			goto err_close;
	}
	return dec ? -EOPNOTSUPP : 0;

err_close:
	close(fe->backend_req_fd);
	fe->backend_req_fd = -1;
	return ret;
}
