/* The command line: one table of options, each with its parser and its help line. */
#ifndef VMM_CLI_H
#define VMM_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/vm.h"

#define VMM_VERSION "0.1.0"
#define VMM_DEFAULT_CMDLINE "console=ttyS0 reboot=k panic=1"
#define VMM_DEFAULT_MEMORY (512 * MiB)
#define VMM_MIN_MEMORY (16 * MiB)
#define VMM_MAX_MEMORY (1024 * GiB)
#define VMM_MAX_CPUS 254

enum cli_result {
	CLI_RUN,      /* parsed: boot the VM */
	CLI_EXIT_OK,  /* --help or --version printed */
	CLI_ERROR,    /* message in err; exit status 2 */
};

/*
 * Parse argv into cfg (filled with defaults first). On CLI_ERROR, err holds
 * one line naming the option at fault and the fix.
 */
enum cli_result cli_parse(int argc, char **argv, struct vm_config *cfg, char *err, size_t errlen);

/* SIZE: a number with an optional K, M, G or T suffix (a plain number means MiB, as in QEMU). */
int cli_parse_size(const char *s, uint64_t *out) WUR;

void cli_usage(FILE *f);

#endif
