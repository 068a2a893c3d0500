/* memrefCopy: the one MLIR runtime function generated CPU code calls (for a
 * memref.copy between non-contiguous layouts), in place of MLIR's
 * libmlir_c_runner_utils.so, which loads the compiler's libMLIR.so and
 * libLLVM.so (a third MLIR in the process), a dependency saved models must
 * not have. Built as libNNForgeRuntime.so (shared by the models run in the
 * compiling process) and libNNForgeRuntimeStatic.a (linked into each saved
 * model). */
#include <stdint.h>
#include <string.h>

/* MLIR's C interface for an unranked memref: its rank and a pointer to the
 * ranked descriptor {allocated, aligned, offset, sizes[rank], strides[rank]}. */
typedef struct {
  int64_t rank;
  void *descriptor;
} UnrankedMemRef;

typedef struct {
  char *allocated;
  char *aligned;
  int64_t offset;
  int64_t sizes_and_strides[];
} RankedMemRef;

/* Exported despite the build's -fvisibility=hidden: generated code calls it. */
__attribute__((visibility("default"))) void
memrefCopy(int64_t element_size, UnrankedMemRef *source,
                UnrankedMemRef *target) {
  const RankedMemRef *src = source->descriptor;
  const RankedMemRef *dst = target->descriptor;
  int64_t rank = source->rank;
  const int64_t *sizes = src->sizes_and_strides;
  const int64_t *src_strides = src->sizes_and_strides + rank;
  const int64_t *dst_strides = dst->sizes_and_strides + rank;
  char *from = src->aligned + src->offset * element_size;
  char *to = dst->aligned + dst->offset * element_size;

  for (int64_t axis = 0; axis < rank; ++axis)
    if (sizes[axis] == 0)
      return;
  /* An odometer over all indices but the last, which is a strided run. */
  int64_t index[rank > 0 ? rank : 1];
  memset(index, 0, sizeof(index));
  int64_t inner = rank > 0 ? sizes[rank - 1] : 1;
  int64_t src_inner = rank > 0 ? src_strides[rank - 1] : 1;
  int64_t dst_inner = rank > 0 ? dst_strides[rank - 1] : 1;
  for (;;) {
    int64_t src_at = 0, dst_at = 0;
    for (int64_t axis = 0; axis + 1 < rank; ++axis) {
      src_at += index[axis] * src_strides[axis];
      dst_at += index[axis] * dst_strides[axis];
    }
    if (src_inner == 1 && dst_inner == 1) {
      memcpy(to + dst_at * element_size, from + src_at * element_size,
             inner * element_size);
    } else {
      for (int64_t i = 0; i < inner; ++i)
        memcpy(to + (dst_at + i * dst_inner) * element_size,
               from + (src_at + i * src_inner) * element_size, element_size);
    }
    int64_t axis = rank - 2;
    while (axis >= 0 && ++index[axis] == sizes[axis])
      index[axis--] = 0;
    if (axis < 0)
      return;
  }
}
