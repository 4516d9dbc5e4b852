/* The API's operations on a real VM (vmm/vm.h): what routes.c calls, for main. */
#ifndef VMM_API_VM_API_H
#define VMM_API_VM_API_H

#include "vmm/api/routes.h"

/* opaque: the struct vm. */
extern const struct api_ops vm_api_ops;

#endif
