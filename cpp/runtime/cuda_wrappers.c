/* nnforge's versions of three of MLIR's CUDA runtime wrappers.
 *
 * Linked into CUDA models (libNNForgeCudaRuntimeStatic.a) ahead of
 * libmlir_cuda_runtime.so, so that a model's calls bind to these:
 * - mgpuMemAlloc / mgpuMemFree take device memory from the driver's
 *   stream-ordered allocator (cuMemAllocAsync / cuMemFreeAsync) on the
 *   device's default pool, told to keep what is freed: a call's device
 *   buffers serve the next call, where MLIR's versions call cuMemAlloc and
 *   cuMemFree (which waits for the device) every time.
 * - mgpuModuleUnload stays quiet at process exit: a model unloads its
 *   kernels in a destructor of its library, which can run after the driver
 *   has shut down (and freed the module itself); MLIR's version prints a
 *   failure then, on every exit.
 * The CUDA driver API is declared here (no toolkit headers needed to build);
 * the driver itself comes with libmlir_cuda_runtime.so's libcuda.so.1. */
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define EXPORTED __attribute__((visibility("default")))

typedef int CUresult;
typedef int CUdevice;
typedef struct CUctx_st *CUcontext;
typedef struct CUstream_st *CUstream;
typedef struct CUmemPoolHandle_st *CUmemoryPool;
typedef unsigned long long CUdeviceptr;

enum { CUDA_SUCCESS = 0, CUDA_ERROR_DEINITIALIZED = 4 };
enum { CU_MEMPOOL_ATTR_RELEASE_THRESHOLD = 4 };

CUresult cuInit(unsigned int flags);
CUresult cuDeviceGet(CUdevice *device, int ordinal);
CUresult cuDevicePrimaryCtxRetain(CUcontext *context, CUdevice device);
CUresult cuCtxPushCurrent_v2(CUcontext context);
CUresult cuCtxPopCurrent_v2(CUcontext *context);
CUresult cuDeviceGetDefaultMemPool(CUmemoryPool *pool, CUdevice device);
CUresult cuMemPoolSetAttribute(CUmemoryPool pool, int attribute, void *value);
CUresult cuMemAllocAsync(CUdeviceptr *pointer, size_t size, CUstream stream);
CUresult cuMemFreeAsync(CUdeviceptr pointer, CUstream stream);
CUresult cuModuleUnload(void *module);

static void report(const char *what, CUresult result) {
  if (result != CUDA_SUCCESS)
    fprintf(stderr, "nnforge: %s failed (CUDA error %d)\n", what, result);
}

/* Device 0's primary context, as MLIR's wrappers use it. */
static CUcontext primary_context;
static pthread_once_t initialized = PTHREAD_ONCE_INIT;

static void initialize(void) {
  CUdevice device;
  report("cuInit", cuInit(0));
  report("cuDeviceGet", cuDeviceGet(&device, 0));
  report("cuDevicePrimaryCtxRetain", cuDevicePrimaryCtxRetain(&primary_context, device));
  CUmemoryPool pool;
  uint64_t keep_everything = UINT64_MAX;
  CUresult result = cuDeviceGetDefaultMemPool(&pool, device);
  if (result == CUDA_SUCCESS)
    result = cuMemPoolSetAttribute(pool, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &keep_everything);
  report("keeping freed device memory in the pool", result);
}

EXPORTED void *mgpuMemAlloc(uint64_t size, CUstream stream, bool host_shared) {
  if (host_shared) { /* nnforge's host code never asks for it */
    fprintf(stderr, "nnforge: host-shared device memory is not supported\n");
    return NULL;
  }
  if (size == 0)
    return NULL;
  pthread_once(&initialized, initialize);
  CUdeviceptr pointer = 0;
  report("cuCtxPushCurrent", cuCtxPushCurrent_v2(primary_context));
  report("cuMemAllocAsync", cuMemAllocAsync(&pointer, size, stream));
  report("cuCtxPopCurrent", cuCtxPopCurrent_v2(NULL));
  return (void *)(uintptr_t)pointer;
}

EXPORTED void mgpuMemFree(void *pointer, CUstream stream) {
  if (pointer == NULL)
    return;
  pthread_once(&initialized, initialize);
  report("cuCtxPushCurrent", cuCtxPushCurrent_v2(primary_context));
  report("cuMemFreeAsync", cuMemFreeAsync((CUdeviceptr)(uintptr_t)pointer, stream));
  report("cuCtxPopCurrent", cuCtxPopCurrent_v2(NULL));
}

EXPORTED void mgpuModuleUnload(void *module) {
  CUresult result = cuModuleUnload(module);
  if (result != CUDA_ERROR_DEINITIALIZED)
    report("unloading CUDA kernels", result);
}
