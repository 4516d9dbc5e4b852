#include "vmm/api/vm_api.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "devices/platform.h"
#include "devices/virtio_net.h"
#include "virtio/virtio_pci.h"
#include "vmm/api/counters.h"
#include "vmm/snapshot/snapshot.h"
#include "vmm/vm.h"

static int op_pause(void *opaque)
{
	return vm_sleep(opaque);
}

static int op_resume(void *opaque)
{
	return vm_wake(opaque);
}

static int op_power_button(void *opaque)
{
	return vm_power_button(opaque);
}

static int op_shutdown(void *opaque)
{
	return vm_shutdown(opaque, "shut down through the API");
}

static int op_snapshot(void *opaque, const char *dir, char *msg, size_t msglen)
{
	struct vm *vm = opaque;
	uint64_t t0 = monotonic_ns();
	int ret = vm_snapshot_save(vm, dir, msg, msglen);

	if (!ret)
		pr_info("snapshot written to %s in %llu ms", dir,
			(unsigned long long)((monotonic_ns() - t0) / 1000000));
	else if (ret == -EAGAIN || ret == -EBUSY || ret == -ESHUTDOWN)
		pr_info("snapshot to %s refused: %s", dir, msg);
	else
		pr_err("snapshot to %s: %s", dir, msg);
	return ret;
}

static const char *serial_name(const struct vm_config *cfg)
{
	switch (cfg->serial) {
	case SERIAL_STDIO: return "stdio";
	case SERIAL_OFF: return "off";
	case SERIAL_FILE: return "file";
	}
	return "?";
}

static struct json_object *str_or_null(const char *s)
{
	return s ? json_object_new_string(s) : NULL;
}

static int op_info(void *opaque, struct json_object *out)
{
	struct vm *vm = opaque;
	const struct vm_config *cfg = vm->cfg;
	struct json_object *config = json_object_new_object();
	struct json_object *cpus = json_object_new_object();
	struct json_object *mem = json_object_new_object();
	struct json_object *payload = json_object_new_object();
	struct json_object *devices = json_object_new_array();
	struct json_object *serial = json_object_new_object();

	if (!config || !cpus || !mem || !payload || !devices || !serial) {
		json_object_put(config);
		json_object_put(cpus);
		json_object_put(mem);
		json_object_put(payload);
		json_object_put(devices);
		json_object_put(serial);
		return -ENOMEM;
	}
	json_object_object_add(out, "state", json_object_new_string(vm_run_state_name(vm_run_state(vm))));

	json_object_object_add(cpus, "boot_vcpus", json_object_new_int64(vm->ncpus));
	json_object_object_add(cpus, "max_vcpus", json_object_new_int64(vm->ncpus));
	json_object_object_add(config, "cpus", cpus);

	json_object_object_add(mem, "size", json_object_new_int64((int64_t)cfg->mem_size));
	json_object_object_add(mem, "backing", json_object_new_string(gmem_backing_name(vm->mem.backing)));
	json_object_object_add(mem, "huge_page_bytes", json_object_new_int64(gmem_huge_bytes(&vm->mem)));
	json_object_object_add(config, "memory", mem);

	json_object_object_add(payload, "kernel", str_or_null(cfg->kernel));
	json_object_object_add(payload, "initramfs", str_or_null(cfg->initramfs));
	json_object_object_add(payload, "cmdline", str_or_null(cfg->cmdline));
	json_object_object_add(config, "payload", payload);

	json_object_object_add(serial, "mode", json_object_new_string(serial_name(cfg)));
	if (cfg->serial == SERIAL_FILE)
		json_object_object_add(serial, "file", str_or_null(cfg->serial_path));
	json_object_object_add(config, "serial", serial);

	/* Device ids as the transport names them: the option and its index among its kind. */
	for (unsigned i = 0; i < cfg->ndevices; i++) {
		const struct vm_device_arg *a = &cfg->devices[i];
		struct json_object *d = json_object_new_object();
		unsigned nth = 0;
		char id[48];

		if (!d)
			return -ENOMEM;
		for (unsigned j = 0; j < i; j++)
			nth += cfg->devices[j].kind == a->kind;
		snprintf(id, sizeof(id), "%s%u", a->kind->option, nth);
		json_object_object_add(d, "id", json_object_new_string(id));
		json_object_object_add(d, "kind", json_object_new_string(a->kind->option));
		json_object_object_add(d, "options", json_object_new_string(a->args));
		json_object_array_add(devices, d);
	}
	json_object_object_add(config, "devices", devices);
	json_object_object_add(out, "config", config);
	json_object_object_add(out, "memory_actual_size", json_object_new_int64((int64_t)cfg->mem_size));
	return 0;
}

static int op_counters(void *opaque, struct json_object *out)
{
	return api_counters_vm(opaque, out);
}

const struct api_ops vm_api_ops = {
	.pause = op_pause,
	.resume = op_resume,
	.power_button = op_power_button,
	.shutdown = op_shutdown,
	.snapshot = op_snapshot,
	.info = op_info,
	.counters = op_counters,
};
