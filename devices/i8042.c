/* i8042 keyboard controller: probing answers and the CPU reset line (reboot=k). */
#include <string.h>

#include "arch/x86_64/layout.h"
#include "devices/platform.h"
#include "vmm/vm.h"

#define I8042_STATUS_OBF     0x01
#define I8042_STATUS_SYS     0x04
#define I8042_STATUS_CMD     0x08
#define I8042_CMD_READ_CTR   0x20
#define I8042_CMD_WRITE_CTR  0x60
#define I8042_CMD_SELF_TEST  0xaa
#define I8042_CMD_KBD_TEST   0xab
#define I8042_CMD_AUX_TEST   0xa9
#define I8042_CMD_WRITE_OUT  0xd1
#define I8042_CMD_RESET      0xfe
#define I8042_SELF_TEST_OK   0x55

static void i8042_reply(struct i8042 *k, uint8_t v)
{
	k->out = v;
	k->out_full = true;
}

static void i8042_command(struct i8042 *k, uint8_t cmd)
{
	switch (cmd) {
	case I8042_CMD_READ_CTR:
		i8042_reply(k, k->ctr);
		break;
	case I8042_CMD_WRITE_CTR:
	case I8042_CMD_WRITE_OUT:
		k->pending_cmd = cmd;
		break;
	case I8042_CMD_SELF_TEST:
		i8042_reply(k, I8042_SELF_TEST_OK);
		break;
	case I8042_CMD_KBD_TEST:
	case I8042_CMD_AUX_TEST:
		i8042_reply(k, 0); /* no error */
		break;
	case I8042_CMD_RESET:
		/* Pulse the CPU reset line: the guest asked to reboot. */
		if (k->vm)
			platform_guest_reset(k->vm);
		break;
	default:
		break; /* port enables/disables and the rest change nothing we model */
	}
}

void i8042_io(void *opaque, uint64_t offset, uint8_t *data, unsigned len, bool is_write)
{
	struct i8042 *k = opaque;
	bool cmd_port = offset == X86_I8042_PORT_CMD - X86_I8042_PORT_DATA;

	if (!is_write) {
		memset(data, 0, len);
		if (cmd_port) {
			data[0] = I8042_STATUS_SYS | (k->out_full ? I8042_STATUS_OBF : 0);
		} else if (offset == 0) {
			data[0] = k->out;
			k->out_full = false;
		}
		return;
	}
	if (cmd_port) {
		k->pending_cmd = 0;
		i8042_command(k, data[0]);
	} else if (offset == 0) {
		if (k->pending_cmd == I8042_CMD_WRITE_CTR)
			k->ctr = data[0];
		else if (k->pending_cmd == I8042_CMD_WRITE_OUT && !(data[0] & 1) && k->vm)
			platform_guest_reset(k->vm); /* bit 0 low: reset */
		k->pending_cmd = 0;
	}
}
