/* Unloading a CUDA model's kernels at process exit, quietly.
 *
 * A model compiled for CUDA unloads its kernels (mgpuModuleUnload) in a
 * destructor of its library. At process exit that destructor can run after
 * the CUDA driver has shut down; the driver has then freed the module
 * itself, and MLIR's wrappers would print a failure on every exit. This
 * definition (libNNForgeCudaRuntimeStatic.a) is linked into CUDA models
 * ahead of libmlir_cuda_runtime.so and reports other errors only. */
#include <stdio.h>

#define EXPORTED __attribute__((visibility("default")))

enum { CUDA_SUCCESS = 0, CUDA_ERROR_DEINITIALIZED = 4 };

int cuModuleUnload(void *module); /* the driver's, through libmlir_cuda_runtime.so */

EXPORTED void mgpuModuleUnload(void *module) {
  int result = cuModuleUnload(module);
  if (result != CUDA_SUCCESS && result != CUDA_ERROR_DEINITIALIZED)
    fprintf(stderr, "nnforge: unloading CUDA kernels failed (CUDA error %d)\n", result);
}
