/*
 * virtio-vsock (virtio 1.2, 5.10): the device ops on top of the mux, the
 * `--vsock cid=N[,socket=PATH[,type=stream|seqpacket]]` option, config space
 * and the snapshot hook.
 * Queues: rx (0), tx (1), event (2). Config: guest_cid. Feature offered:
 * VIRTIO_VSOCK_F_SEQPACKET.
 *
 * Snapshots (snap_save/snap_load): the guest CID only; connections are not
 * saved. A restored device forgets them all and sends
 * VIRTIO_VSOCK_EVENT_TRANSPORT_RESET, after which the guest's sockets see a
 * reset and its listeners stay (as Firecracker does).
 */
#include "devices/vsock/vsock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/vsock/bridge.h"
#include "devices/vsock/mux.h"
#include "devices/vsock/packet.h"
#include "vmm/snapshot/format.h"
#include "vmm/vm.h"

#define VSOCK_QUEUE_SIZE 256u
struct vsock_state {
	struct vsock_dev *mux;
	struct vsock_bridge *bridge;
	uint64_t guest_cid;
};

/* What the guest knows of this device beyond its queues: its CID. Connections are not saved. */
struct vsock_snap {
	uint64_t guest_cid;
};

#define S struct vsock_snap
static const struct snap_field vsock_snap_fields[] = {
	SNAP_UINT_R(S, guest_cid, VSOCK_MIN_GUEST_CID, VSOCK_MAX_GUEST_CID),
};
#undef S
const struct snap_desc virtio_vsock_snap_desc =
	SNAP_DESC(struct vsock_snap, "virtio-vsock", 1, vsock_snap_fields, NULL);

static struct vsock_state *to_vs(const struct virtio_dev *vdev)
{
	return vdev->priv;
}

static void vs_reset(struct virtio_dev *vdev)
{
	vsock_mux_reset(to_vs(vdev)->mux);
}

static int vs_activate(struct virtio_dev *vdev)
{
	return vsock_mux_activate(to_vs(vdev)->mux);
}

static void vs_queue_notify(struct virtio_dev *vdev, unsigned q)
{
	vsock_mux_queue_notify(to_vs(vdev)->mux, q);
}

static void vs_cfg_read(struct virtio_dev *vdev, uint32_t off, void *data, uint32_t len)
{
	struct vsock_config cfg = { .guest_cid = cpu_to_le64(to_vs(vdev)->guest_cid) };

	virtio_dev_cfg_copy(&cfg, sizeof(cfg), off, data, len);
}

static void vs_cfg_write(struct virtio_dev *vdev, uint32_t off, const void *data, uint32_t len)
{
	(void)data;
	pr_guest_err("%s: ignored a %u-byte write to read-only config at %u", vdev->id, len, off);
}

static int vs_pause(struct virtio_dev *vdev)
{
	return vsock_mux_pause(to_vs(vdev)->mux);
}

static int vs_resume(struct virtio_dev *vdev)
{
	return vsock_mux_resume(to_vs(vdev)->mux);
}

static int vs_save(struct virtio_dev *vdev, struct snap_writer *w)
{
	struct vsock_snap st = { .guest_cid = to_vs(vdev)->guest_cid };

	return snap_write(w, &virtio_vsock_snap_desc, &st);
}

/*
 * The restored guest must keep its CID. Host ends of connections made before
 * the snapshot cannot follow: the device forgets them all and, once the
 * queues run (activate), tells the guest with TRANSPORT_RESET.
 */
static int vs_load(struct virtio_dev *vdev, struct snap_reader *r, int node)
{
	struct vsock_state *vs = to_vs(vdev);
	struct vsock_snap st = { 0 };
	int ret = snap_read(r, node, &virtio_vsock_snap_desc, &st);

	if (ret)
		return ret;
	if (st.guest_cid != vs->guest_cid)
		return snap_fail(r, node, "guest_cid: the snapshot's guest has CID %llu, this device %llu",
				 (unsigned long long)st.guest_cid, (unsigned long long)vs->guest_cid);
	vsock_mux_transport_reset(vs->mux);
	return 0;
}

static void vs_destroy(struct virtio_dev *vdev)
{
	struct vsock_state *vs = to_vs(vdev);

	if (!vs)
		return;
	vsock_mux_destroy(vs->mux);
	vsock_bridge_destroy(vs->bridge);
	free(vs);
	vdev->priv = NULL;
}

/* vm.counters: packets to and from the guest, payload bytes (headers not counted). */
static const struct virtio_dev_counter_names vsock_counter_names = {
	"rx_packets", "rx_bytes", "tx_packets", "tx_bytes",
};

static const struct virtio_dev_ops vsock_ops = {
	.name = "virtio-vsock",
	.device_id = VIRTIO_ID_VSOCK,
	.reset = vs_reset,
	.activate = vs_activate,
	.queue_notify = vs_queue_notify,
	.cfg_read = vs_cfg_read,
	.cfg_write = vs_cfg_write,
	.pause = vs_pause,
	.resume = vs_resume,
	.snap_save = vs_save,
	.snap_load = vs_load,
	.destroy = vs_destroy,
	.counter_names = &vsock_counter_names,
};

struct vsock_dev *vsock_of(struct virtio_dev *vdev)
{
	return vdev && vdev->ops == &vsock_ops ? to_vs(vdev)->mux : NULL;
}

#define VSOCK_USAGE "cid=N[,socket=PATH[,type=stream|seqpacket]]"

static int parse_cid(const char *s, size_t len, uint64_t *cid)
{
	uint64_t v = 0;

	if (!len || len > 10)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v < VSOCK_MIN_GUEST_CID || v > VSOCK_MAX_GUEST_CID)
		return -ERANGE;
	*cid = v;
	return 0;
}

static int vs_create(struct vm *vm, const char *args, struct virtio_dev *vdev, char *err,
		     size_t errlen)
{
	char path[128] = "";
	bool have_cid = false, have_path = false, have_type = false;
	enum vsock_type type = VSOCK_STREAM;
	uint64_t cid = 0;
	const char *p = args;
	struct vsock_state *vs;
	int r;

	while (*p) {
		const char *end = strchr(p, ','), *eq;
		size_t len = end ? (size_t)(end - p) : strlen(p), klen, vlen;

		eq = memchr(p, '=', len);
		if (!eq) {
			snprintf(err, errlen, "'%.*s' is not key=value (expected %s)", (int)MIN(len, 40),
				 p, VSOCK_USAGE);
			return -EINVAL;
		}
		klen = (size_t)(eq - p);
		vlen = len - klen - 1;
		if (klen == 3 && !strncmp(p, "cid", 3)) {
			if (have_cid) {
				snprintf(err, errlen, "cid= given twice");
				return -EINVAL;
			}
			r = parse_cid(eq + 1, vlen, &cid);
			if (r < 0) {
				snprintf(err, errlen, "cid=%.*s: a guest CID is a number from 3 to %llu",
					 (int)MIN(vlen, 40), eq + 1,
					 (unsigned long long)VSOCK_MAX_GUEST_CID);
				return -EINVAL;
			}
			have_cid = true;
		} else if (klen == 6 && !strncmp(p, "socket", 6)) {
			if (have_path) {
				snprintf(err, errlen, "socket= given twice");
				return -EINVAL;
			}
			if (!vlen || vlen >= sizeof(path)) {
				snprintf(err, errlen, "socket=%.*s: a path of 1 to %zu characters",
					 (int)MIN(vlen, 40), eq + 1, sizeof(path) - 1);
				return -EINVAL;
			}
			memcpy(path, eq + 1, vlen);
			path[vlen] = '\0';
			have_path = true;
		} else if (klen == 4 && !strncmp(p, "type", 4)) {
			if (have_type) {
				snprintf(err, errlen, "type= given twice");
				return -EINVAL;
			}
			if (vlen == 6 && !strncmp(eq + 1, "stream", 6)) {
				type = VSOCK_STREAM;
			} else if (vlen == 9 && !strncmp(eq + 1, "seqpacket", 9)) {
				type = VSOCK_SEQPACKET;
			} else {
				snprintf(err, errlen, "type=%.*s: the bridge's socket type is stream or seqpacket",
					 (int)MIN(vlen, 40), eq + 1);
				return -EINVAL;
			}
			have_type = true;
		} else {
			snprintf(err, errlen, "unknown key '%.*s' (expected %s)", (int)MIN(klen, 40), p,
				 VSOCK_USAGE);
			return -EINVAL;
		}
		if (!end)
			break;
		p = end + 1;
		if (!*p) {
			snprintf(err, errlen, "trailing ',' in '%s'", args);
			return -EINVAL;
		}
	}
	if (!have_cid) {
		snprintf(err, errlen, "cid=N is required (expected %s)", VSOCK_USAGE);
		return -EINVAL;
	}
	if (have_type && !have_path) {
		snprintf(err, errlen, "type= is the bridge's socket type: it needs socket=PATH");
		return -EINVAL;
	}
	vs = calloc(1, sizeof(*vs));
	if (!vs)
		return -ENOMEM;
	vs->guest_cid = cid;
	r = vsock_mux_create(vdev, vm->loop, cid, &vs->mux);
	if (r < 0)
		goto err_free;
	if (have_path) {
		r = vsock_bridge_create(vs->mux, path, type, &vs->bridge, err, errlen);
		if (r < 0) {
			vsock_mux_destroy(vs->mux);
			r = -EINVAL;  /* an unusable path is a usage error: exit 2 */
			goto err_free;
		}
	}
	if (!vdev->id[0])
		snprintf(vdev->id, sizeof(vdev->id), "vsock0");
	vdev->ops = &vsock_ops;
	vdev->priv = vs;
	vdev->vm = vm;
	vdev->num_queues = 3;
	/*
	 * One interrupt for all three queues, as vhost-vsock-pci gives: with one
	 * each, Linux put rx on vCPU 0 and tx on vCPU 1, so every echo woke both
	 * vCPUs (docs/vsock.md, "Interrupts").
	 */
	vdev->msix_vectors = 2;
	vdev->queue_max_size = VSOCK_QUEUE_SIZE;
	vdev->config_size = sizeof(struct vsock_config);
	vdev->device_features = 1ull << VIRTIO_VSOCK_F_SEQPACKET;
	return 0;
err_free:
	free(vs);
	return r;
}

const struct virtio_dev_kind virtio_vsock_kind = {
	.option = "vsock",
	.metavar = VSOCK_USAGE,
	.help = "a virtio-vsock device for guest CID N (3 or above), in process; socket=PATH adds a "
		"Firecracker-compatible Unix socket bridge (type=seqpacket: PATH is SOCK_SEQPACKET, "
		"for SEQPACKET connections from the host)",
	.repeatable = false,
	.create = vs_create,
};
