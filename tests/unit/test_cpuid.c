#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "arch/x86_64/cpuid.h"
#include "vmm/util.h"

/* A plausible KVM_GET_SUPPORTED_CPUID answer, trimmed to the leaves we rewrite. */
static unsigned fake_supported(struct kvm_cpuid_entry2 *e)
{
	unsigned n = 0;

	memset(e, 0, 16 * sizeof(*e));
	e[n++] = (struct kvm_cpuid_entry2){ .function = 0x1, .ebx = 0xff010800, .edx = 0x178bfbff };
	e[n++] = (struct kvm_cpuid_entry2){ .function = 0x4, .index = 0, .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX, .eax = 0x121 };
	e[n++] = (struct kvm_cpuid_entry2){ .function = 0x4, .index = 3, .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX, .eax = 0x163 };
	for (uint32_t i = 0; i < 3; i++)
		e[n++] = (struct kvm_cpuid_entry2){ .function = 0xb, .index = i, .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX };
	e[n++] = (struct kvm_cpuid_entry2){ .function = 0x40000000, .ebx = 0x4b4d564b, .ecx = 0x564b4d56, .edx = 0x4d };
	e[n++] = (struct kvm_cpuid_entry2){ .function = 0x40000001, .eax = 0x01007afb };
	e[n++] = (struct kvm_cpuid_entry2){ .function = 0x80000001, .ecx = 0x1 };
	e[n++] = (struct kvm_cpuid_entry2){ .function = 0x80000008, .eax = 0x3030, .ecx = 0x7007 };
	e[n++] = (struct kvm_cpuid_entry2){ .function = 0x8000001e, .eax = 0xdead };
	return n;
}

static void test_core_shift(void **state)
{
	(void)state;
	assert_int_equal(cpuid_core_shift(1), 0);
	assert_int_equal(cpuid_core_shift(2), 1);
	assert_int_equal(cpuid_core_shift(3), 2);
	assert_int_equal(cpuid_core_shift(4), 2);
	assert_int_equal(cpuid_core_shift(5), 3);
	assert_int_equal(cpuid_core_shift(254), 8);
}

static void test_topology_for_each_vcpu(void **state)
{
	static const unsigned counts[] = { 1, 2, 3, 4, 8, 254 };
	struct kvm_cpuid_entry2 e[16];

	(void)state;
	for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
		unsigned ncpus = counts[c];

		for (unsigned idx = 0; idx < ncpus; idx += (ncpus > 8 ? 37 : 1)) {
			unsigned n = fake_supported(e);
			struct kvm_cpuid_entry2 *l;

			cpuid_set_topology(e, n, idx, ncpus);
			l = cpuid_find(e, n, 0x1, 0);
			assert_int_equal(l->ebx >> 24, idx);                        /* initial APIC id */
			assert_true(((l->ebx >> 16) & 0xff) >= MIN(ncpus, 255));
			assert_int_equal(l->ebx & 0xffff, 0x0800);                  /* untouched */
			assert_true(l->ecx & (1u << 31));                           /* hypervisor */
			assert_int_equal(!!(l->edx & (1u << 28)), ncpus > 1);       /* HTT */

			l = cpuid_find(e, n, 0xb, 0);
			assert_int_equal(l->edx, idx);
			assert_int_equal(l->ebx, 1);
			assert_int_equal((l->ecx >> 8) & 0xff, 1);                  /* SMT level */
			l = cpuid_find(e, n, 0xb, 1);
			assert_int_equal(l->edx, idx);
			assert_int_equal(l->ebx, ncpus);
			assert_int_equal(l->eax, cpuid_core_shift(ncpus));
			assert_int_equal((l->ecx >> 8) & 0xff, 2);                  /* core level */
			l = cpuid_find(e, n, 0xb, 2);
			assert_int_equal((l->ecx >> 8) & 0xff, 0);                  /* end of levels */

			l = cpuid_find(e, n, 0x80000008, 0);
			assert_int_equal((l->ecx & 0xff) + 1, ncpus);
			assert_int_equal((l->ecx >> 12) & 0xf, cpuid_core_shift(ncpus));
			l = cpuid_find(e, n, 0x8000001e, 0);
			assert_int_equal(l->eax, idx);

			/* The KVM paravirtual leaves pass through: the guest finds kvmclock. */
			l = cpuid_find(e, n, 0x40000000, 0);
			assert_int_equal(l->ebx, 0x4b4d564b);
			assert_int_equal(cpuid_find(e, n, 0x40000001, 0)->eax, 0x01007afb);
		}
	}
}

static void test_find_honours_index(void **state)
{
	struct kvm_cpuid_entry2 e[16];
	unsigned n = fake_supported(e);

	(void)state;
	assert_int_equal(cpuid_find(e, n, 0x4, 3)->eax, 0x163);
	assert_null(cpuid_find(e, n, 0x4, 1));
	assert_null(cpuid_find(e, n, 0x7, 0));
	/* A leaf without a significant index matches any index. */
	assert_non_null(cpuid_find(e, n, 0x1, 5));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_core_shift),
		cmocka_unit_test(test_topology_for_each_vcpu),
		cmocka_unit_test(test_find_honours_index),
	};
	return cmocka_run_group_tests_name("cpuid", tests, NULL, NULL);
}
