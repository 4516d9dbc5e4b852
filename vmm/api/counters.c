#include "vmm/api/counters.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include <json-c/json.h>

#include "devices/virtio_net.h"
#include "virtio/virtio_pci.h"
#include "vmm/vm.h"

static void add_u64(struct json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, json_object_new_uint64(v));
}

/* A counter this process cannot see (vhost-user's kicks and calls): null, never a made-up 0. */
static void add_u64_or_null(struct json_object *o, const char *key, bool known, uint64_t v)
{
	json_object_object_add(o, key, known ? json_object_new_uint64(v) : NULL);
}

static void add_named(struct json_object *o, const char *name, uint64_t v)
{
	if (name)
		add_u64(o, name, v);
}

int api_counters_device(struct virtio_pci *vp, struct json_object *d)
{
	const struct virtio_dev_counter_names *names = vp->vdev->ops->counter_names;
	struct json_object *queues = json_object_new_array(), *vectors = NULL;
	struct virtio_pci_counters *c = malloc(sizeof(*c));  /* ~1.6 KiB: not on the API thread's stack */

	if (!c || !queues)
		goto err;
	virtio_pci_get_counters(vp, c);
	add_u64_or_null(d, "requests", names, c->dev.requests);
	add_u64(d, "errors", c->dev.errors);
	if (names) {
		add_named(d, names->in_ops, c->dev.in_ops);
		add_named(d, names->in_bytes, c->dev.in_bytes);
		add_named(d, names->out_ops, c->dev.out_ops);
		add_named(d, names->out_bytes, c->dev.out_bytes);
	}
	if (vp->vdev->ops->device_id == VIRTIO_ID_NET && !vp->vdev->external_queues) {
		struct virtio_net_stats st;

		virtio_net_get_stats(vp->vdev, &st);
		add_u64(d, "rx_dropped", st.rx_dropped);
		add_u64(d, "tx_dropped", st.tx_dropped);
	}
	add_u64(d, "trapped_kicks", c->trapped_kicks);
	add_u64(d, "dropped_interrupts", c->dropped_interrupts);
	add_u64(d, "config_interrupts", c->config_interrupts);
	json_object_object_add(d, "needs_reset", json_object_new_boolean(c->needs_reset));
	for (unsigned q = 0; q < c->nqueues; q++) {
		struct json_object *jq = json_object_new_object();

		if (!jq)
			goto err;
		add_u64_or_null(jq, "kicks", c->counted, c->queue[q].kicks);
		add_u64_or_null(jq, "interrupts", c->counted, c->queue[q].interrupts);
		add_u64_or_null(jq, "vector", c->queue[q].vector != VIRTIO_MSI_NO_VECTOR,
				c->queue[q].vector);
		json_object_array_add(queues, jq);
	}
	json_object_object_add(d, "queues", queues);
	queues = NULL;
	if (c->counted) {
		vectors = json_object_new_array();
		if (!vectors)
			goto err;
		for (unsigned v = 0; v < c->nvec; v++)
			json_object_array_add(vectors, json_object_new_uint64(c->vector_interrupts[v]));
	}
	json_object_object_add(d, "interrupts", vectors);
	free(c);
	return 0;

err:
	json_object_put(queues);
	free(c);
	return -ENOMEM;
}

int api_counters_vm(struct vm *vm, struct json_object *out)
{
	for (unsigned i = 0; i < PCI_NR_SLOTS; i++) {
		struct virtio_pci *vp = vm_virtio_device(vm, i);
		struct json_object *d;

		if (!vp)
			continue;
		d = json_object_new_object();
		if (!d)
			return -ENOMEM;
		add_u64(d, "pci_slot", i);
		if (api_counters_device(vp, d)) {
			json_object_put(d);
			return -ENOMEM;
		}
		json_object_object_add(out, vp->vdev->id, d);
	}
	return 0;
}
