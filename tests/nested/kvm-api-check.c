/* kvm-api-check: proves /dev/kvm works: API version, a VM and a vCPU.
 * Prints "kvm_api=N create_vm=ok create_vcpu=ok" and exits 0, or says what failed. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

int main(void)
{
	int kvm, vm, vcpu, version;

	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) {
		printf("kvm-api-check: open /dev/kvm: %s\n", strerror(errno));
		return 1;
	}
	version = ioctl(kvm, KVM_GET_API_VERSION, 0);
	if (version != KVM_API_VERSION) {
		printf("kvm-api-check: KVM_GET_API_VERSION returned %d, want %d\n",
		       version, KVM_API_VERSION);
		return 1;
	}
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0) {
		printf("kvm-api-check: KVM_CREATE_VM: %s\n", strerror(errno));
		return 1;
	}
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0) {
		printf("kvm-api-check: KVM_CREATE_VCPU: %s\n", strerror(errno));
		return 1;
	}
	printf("kvm_api=%d create_vm=ok create_vcpu=ok\n", version);
	close(vcpu);
	close(vm);
	close(kvm);
	return 0;
}
