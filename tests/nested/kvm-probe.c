/* kvm-probe: is /dev/kvm good enough to boot Linux guests?
 *
 * Opening /dev/kvm and making a VM proves little: some hosts offer the KVM
 * API without hardware virtualization and emulate every guest kernel
 * instruction in software (about a million a second, so a Linux boot takes
 * hours). The probe runs a 64-bit guest loop of 20 million instructions,
 * which hardware runs in milliseconds, and times it.
 *
 *   kvm-probe [--budget-ms MS]
 *
 * Exit status: 0 fast enough (within MS, default 1000), 1 too slow or not
 * usable, 2 bad arguments. One line on stdout says which, with the figures.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MEM_SIZE	(2u << 20)
#define PML4		0x1000
#define PDPT		0x2000
#define PD		0x3000
#define CODE		0x8000
#define LOOPS		10000000u	/* two instructions each */
#define CPUID_MAX	256

static int fail(const char *what)
{
	printf("kvm-probe: /dev/kvm is not usable: %s: %s\n", what, strerror(errno));
	return 1;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void on_alarm(int sig)
{
	(void)sig;	/* only there to interrupt KVM_RUN */
}

static void write_guest(uint8_t *mem)
{
	static const uint8_t code[] = {
		0xb9, LOOPS & 0xff, (LOOPS >> 8) & 0xff,	/* mov ecx, LOOPS */
		(LOOPS >> 16) & 0xff, LOOPS >> 24,
		0xff, 0xc9,					/* 1: dec ecx */
		0x75, 0xfc,					/* jnz 1b */
		0xf4,						/* hlt */
	};
	uint64_t *pml4 = (uint64_t *)(mem + PML4);
	uint64_t *pdpt = (uint64_t *)(mem + PDPT);
	uint64_t *pd = (uint64_t *)(mem + PD);

	pml4[0] = PDPT | 0x3;		/* present, writable */
	pdpt[0] = PD | 0x3;
	pd[0] = 0x83;			/* a 2 MiB page at 0 */
	memcpy(mem + CODE, code, sizeof(code));
}

static int setup_vcpu(int kvm, int vcpu)
{
	struct kvm_segment code = {
		.base = 0, .limit = 0xffffffff, .selector = 0x8, .type = 0xb,
		.present = 1, .s = 1, .l = 1, .g = 1,
	};
	struct kvm_segment data = {
		.base = 0, .limit = 0xffffffff, .selector = 0x10, .type = 0x3,
		.present = 1, .s = 1, .db = 1, .g = 1,
	};
	struct kvm_regs regs = { .rip = CODE, .rsp = CODE, .rflags = 0x2 };
	struct kvm_cpuid2 *cpuid;
	struct kvm_sregs sregs;
	int ret;

	/* Long mode needs the LM bit in the vCPU's CPUID. */
	cpuid = calloc(1, sizeof(*cpuid) + CPUID_MAX * sizeof(cpuid->entries[0]));
	if (!cpuid)
		return -1;
	cpuid->nent = CPUID_MAX;
	ret = ioctl(kvm, KVM_GET_SUPPORTED_CPUID, cpuid);
	if (ret == 0)
		ret = ioctl(vcpu, KVM_SET_CPUID2, cpuid);
	free(cpuid);
	if (ret < 0)
		return -1;

	if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0)
		return -1;
	sregs.cs = code;
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
	sregs.cr3 = PML4;
	sregs.cr4 = 0x20;			/* PAE */
	sregs.cr0 = 0x80000011;			/* PG, ET, PE */
	sregs.efer = 0x500;			/* LMA, LME */
	if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0)
		return -1;
	return ioctl(vcpu, KVM_SET_REGS, &regs);
}

int main(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_alarm };
	struct itimerval budget = { 0 };
	struct kvm_userspace_memory_region region;
	struct kvm_run *run;
	struct kvm_regs regs;
	long budget_ms = 1000, run_size;
	double start, ms;
	uint64_t done;
	uint8_t *mem;
	int kvm, vm, vcpu;
	char *end;

	if (argc == 3 && strcmp(argv[1], "--budget-ms") == 0) {
		errno = 0;
		budget_ms = strtol(argv[2], &end, 10);
		if (errno || *end || budget_ms < 1 || budget_ms > 600000) {
			fprintf(stderr, "kvm-probe: bad --budget-ms '%s' (1 to 600000)\n", argv[2]);
			return 2;
		}
	} else if (argc != 1) {
		fprintf(stderr, "usage: kvm-probe [--budget-ms MS]\n");
		return 2;
	}

	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		return fail("open");
	if (ioctl(kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		printf("kvm-probe: /dev/kvm is not usable: API version is not %d\n", KVM_API_VERSION);
		return 1;
	}
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		return fail("KVM_CREATE_VM");
	mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return fail("mmap guest memory");
	write_guest(mem);
	region = (struct kvm_userspace_memory_region){
		.slot = 0, .guest_phys_addr = 0, .memory_size = MEM_SIZE,
		.userspace_addr = (uintptr_t)mem,
	};
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		return fail("KVM_SET_USER_MEMORY_REGION");
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0)
		return fail("KVM_CREATE_VCPU");
	run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size < (long)sizeof(*run))
		return fail("KVM_GET_VCPU_MMAP_SIZE");
	run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED)
		return fail("mmap kvm_run");
	if (setup_vcpu(kvm, vcpu) < 0)
		return fail("setting up a 64-bit vCPU");

	/* No SA_RESTART: the alarm ends KVM_RUN with EINTR. */
	if (sigaction(SIGALRM, &sa, NULL) < 0)
		return fail("sigaction");
	budget.it_value.tv_sec = budget_ms / 1000;
	budget.it_value.tv_usec = budget_ms % 1000 * 1000;
	start = now_ms();
	if (setitimer(ITIMER_REAL, &budget, NULL) < 0)
		return fail("setitimer");
	for (;;) {
		if (ioctl(vcpu, KVM_RUN, 0) == 0) {
			if (run->exit_reason == KVM_EXIT_HLT)
				break;
			printf("kvm-probe: /dev/kvm is not usable: the probe guest exited with reason %u\n",
			       run->exit_reason);
			return 1;
		}
		if (errno != EINTR)
			return fail("KVM_RUN");
		if (now_ms() - start >= budget_ms)
			break;
	}
	ms = now_ms() - start;
	if (ioctl(vcpu, KVM_GET_REGS, &regs) < 0)
		return fail("KVM_GET_REGS");
	done = LOOPS - (uint32_t)regs.rcx;
	/*
	 * Finishing is not enough: the alarm can come late (a loaded or
	 * emulated host delivers it after the guest already halted), so the
	 * loop must also have finished within the budget.
	 */
	if (run->exit_reason == KVM_EXIT_HLT && done == LOOPS && ms <= budget_ms) {
		printf("kvm-probe: /dev/kvm runs guest code at full speed (%u M instructions in %.0f ms)\n",
		       2 * LOOPS / 1000000, ms);
		return 0;
	}
	printf("kvm-probe: /dev/kvm is too slow to boot Linux: it ran %.1f M guest instructions/s, "
	       "under the %.0f M/s needed (no hardware virtualization: the host emulates guest code)\n",
	       2 * done / (ms * 1e3), 2 * LOOPS / (budget_ms * 1e3));
	return 1;
}
