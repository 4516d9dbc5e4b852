/*
 * libFuzzer harness for arch/x86_64/boot: the input is a hostile kernel file
 * (bzImage or ELF vmlinux), checked and then loaded into a 64 MiB guest, as
 * vmm does with --kernel. The first byte picks how much of the file is the
 * "head" read up front (the rest comes from the file, here from memory too):
 * the loader must never read past either.
 *
 * Beyond ASan/UBSan: the check and the loader agree (a file the check
 * accepts either loads or fails for lack of memory, never with -ENOEXEC); a
 * loaded kernel's entry and extent lie inside guest RAM; an initramfs lies
 * above the kernel and inside RAM.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86_64/boot.h"
#include "arch/x86_64/layout.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RAM_SIZE (64 * MiB)

static struct gmem gm;
static int gm_ready;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t initrd[4096];
	struct x86_boot_layout lay;
	struct x86_boot_params p;
	const uint8_t *file;
	const char *why = NULL;
	char err[256];
	size_t head_len;
	int checked, ret;

	if (size < 1)
		return 0;
	if (!gm_ready) {
		if (gmem_create(&gm, RAM_SIZE, X86_MEM_HOLE_START, X86_MEM_HOLE_END))
			abort();
		gm_ready = 1;
	}
	file = data + 1;
	size--;
	head_len = data[0] == 0xff ? size : MIN(size, (size_t)data[0] * 64);

	/* The head is a copy, as vmm reads it: an over-read of either is caught. */
	uint8_t *head = malloc(head_len ? head_len : 1);
	uint8_t *body = malloc(size ? size : 1);

	if (!head || !body)
		abort();
	memcpy(head, file, head_len);
	memcpy(body, file, size);
	checked = x86_kernel_check(head, head_len, size, &why);
	if (checked && (checked != -ENOEXEC || !why))
		abort();

	memset(&p, 0, sizeof(p));
	p.kernel = (struct x86_boot_file){ .head = head, .head_len = head_len, .size = size, .fd = -1 };
	/* Past the head, the loader may only read what file_copy reads: give it the whole file as head. */
	if (head_len < size)
		p.kernel = (struct x86_boot_file){ .head = body, .head_len = size, .size = size, .fd = -1 };
	p.initrd = (struct x86_boot_file){ .head = initrd, .head_len = sizeof(initrd), .size = sizeof(initrd), .fd = -1 };
	p.cmdline = "console=ttyS0";
	ret = x86_boot_load(&gm, &p, &lay, err, sizeof(err));
	if (ret == 0) {
		if (checked && head_len == size)
			abort();   /* the loader took what the check refused */
		if (lay.kernel_end > RAM_SIZE || lay.kernel_start < X86_HIMEM_START ||
		    lay.entry < lay.kernel_start || lay.entry >= lay.kernel_end)
			abort();
		if (lay.initrd_start < lay.kernel_end || lay.initrd_end > RAM_SIZE)
			abort();
	} else if (ret == -ENOEXEC && !checked && head_len == size) {
		abort();       /* the check passed the same bytes the loader refused */
	} else if (!err[0]) {
		abort();       /* every failure says why */
	}
	free(head);
	free(body);
	return 0;
}
