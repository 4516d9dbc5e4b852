/* Tap interfaces with a vnet header: open, attach, offloads (see tap.h). */
#include "devices/tap.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/if_tun.h>

_Static_assert(TAP_OFFLOAD_CSUM == TUN_F_CSUM, "TUN_F_CSUM");
_Static_assert(TAP_OFFLOAD_TSO4 == TUN_F_TSO4, "TUN_F_TSO4");
_Static_assert(TAP_OFFLOAD_TSO6 == TUN_F_TSO6, "TUN_F_TSO6");
_Static_assert(TAP_OFFLOAD_ECN == TUN_F_TSO_ECN, "TUN_F_TSO_ECN");
_Static_assert(TAP_OFFLOAD_UFO == TUN_F_UFO, "TUN_F_UFO");

#define TUN_DEV "/dev/net/tun"

static int fail(char *err, size_t errlen, int ret, const char *fmt, const char *name, int e)
{
	char why[128];

	snprintf(why, sizeof(why), fmt, name);
	if (e)
		snprintf(err, errlen, "%s: %s", why, strerror(e));
	else
		snprintf(err, errlen, "%s", why);
	return ret;
}

/* Only for an interface we created: an existing one keeps the state its owner gave it. */
static void tap_link_up(const char *name)
{
	struct ifreq ifr;
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (s < 0)
		return;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0 && !(ifr.ifr_flags & IFF_UP)) {
		ifr.ifr_flags |= IFF_UP;
		if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
			pr_info("tap %s: cannot bring the link up: %s", name, strerror(errno));
	}
	close(s);
}

/*
 * Whether an interface called `name` exists. Only for error messages: a
 * lookup of a missing name makes a privileged caller's kernel run modprobe
 * for "netdev-NAME" (milliseconds on every start), so the normal path never
 * asks.
 */
static bool link_exists(const char *name)
{
	return if_nametoindex(name) != 0;
}

int tap_open(const char *name, int vnet_hdr_size, bool *created, char *err, size_t errlen)
{
	unsigned int features = 0;
	struct ifreq ifr;
	int fd, e;

	*created = false;
	if (!name[0])
		return fail(err, errlen, -EINVAL, "empty tap name", name, 0);
	if (strlen(name) >= IFNAMSIZ)
		return fail(err, errlen, -EINVAL, "tap name '%s' is longer than 15 characters", name, 0);
	/* '%' would make the kernel pick a new numbered name; '/' and spaces are never valid. */
	if (strpbrk(name, "%/: \t\n"))
		return fail(err, errlen, -EINVAL, "'%s' is not a valid interface name", name, 0);

	fd = open(TUN_DEV, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		e = errno;
		return fail(err, errlen, -e, "tap '%s': cannot open " TUN_DEV, name, e);
	}
	if (ioctl(fd, TUNGETFEATURES, &features) < 0 || !(features & IFF_VNET_HDR)) {
		e = -EOPNOTSUPP;
		fail(err, errlen, e, "tap '%s': the kernel's tun driver has no IFF_VNET_HDR", name, 0);
		goto err_close;
	}

	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		e = -errno;
		if (e == -EPERM && !link_exists(name))
			fail(err, errlen, e, "tap '%s' does not exist and creating it is not permitted", name, 0);
		else if (e == -EPERM)
			fail(err, errlen, e, "tap '%s': not permitted (not its owner, no CAP_NET_ADMIN)", name, 0);
		else if (e == -EINVAL)
			fail(err, errlen, e, "'%s' is not a single-queue tap interface", name, 0);
		else if (e == -EBUSY)
			fail(err, errlen, e, "tap '%s' is busy (attached elsewhere)", name, 0);
		else
			fail(err, errlen, e, "tap '%s': cannot attach", name, -e);
		goto err_close;
	}
	/*
	 * Did we just create it? A tap that outlives its last fd is persistent;
	 * one that existed without being persistent was attached to another fd,
	 * and TUNSETIFF failed above with EBUSY. So: created unless IFF_PERSIST.
	 */
	if (ioctl(fd, TUNGETIFF, &ifr) < 0) {
		e = -errno;
		fail(err, errlen, e, "tap '%s': TUNGETIFF failed", name, -e);
		goto err_close;
	}
	if (ioctl(fd, TUNSETVNETHDRSZ, &vnet_hdr_size) < 0) {
		e = -errno;
		fail(err, errlen, e, "tap '%s': cannot set the vnet header size", name, -e);
		goto err_close;
	}
	/* Offloads stay off until the guest says which it can take. */
	e = tap_set_offload(fd, 0);
	if (e < 0) {
		fail(err, errlen, e, "tap '%s': cannot switch offloads off", name, -e);
		goto err_close;
	}
	if (!(ifr.ifr_flags & IFF_PERSIST)) {
		tap_link_up(name);
		*created = true;
	}
	return fd;

err_close:
	close(fd);
	return e;
}

int tap_set_offload(int fd, unsigned offloads)
{
	if (ioctl(fd, TUNSETOFFLOAD, (unsigned long)offloads) < 0)
		return -errno;
	return 0;
}

unsigned tap_probe_offloads(int fd, unsigned wanted)
{
	unsigned got = 0;

	if (tap_set_offload(fd, wanted) == 0)
		got = wanted;
	else if (tap_set_offload(fd, wanted & ~TAP_OFFLOAD_UFO) == 0)
		got = wanted & ~TAP_OFFLOAD_UFO;
	else if (tap_set_offload(fd, wanted & TAP_OFFLOAD_CSUM) == 0)
		got = wanted & TAP_OFFLOAD_CSUM;
	if (tap_set_offload(fd, 0) < 0)
		pr_info("tap: cannot switch offloads off after probing: %s", strerror(errno));
	return got;
}
