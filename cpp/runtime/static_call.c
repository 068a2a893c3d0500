/* Static calls: a model called on data at given addresses, its results
 * handed over as DLPack tensors (the `torch.compile` backend's calls,
 * through runtime.StaticCall).
 *
 * The caller lays out the memref descriptors of a call once (a template of
 * words: results first, then inputs and weights) and vouches for the data: of
 * the shapes and element types the template says, C-contiguous. A call
 * copies the template, writes the inputs' addresses, runs the model guarded
 * (nnforge_guarded_call) and turns each result descriptor into a
 * DLManagedTensor (DLPack 0.8 ABI, as torch.from_dlpack takes it in a
 * "dltensor" capsule). A result buffer the code allocated becomes the
 * tensor's memory, without a copy, shared by the results over it and given
 * back to the buffer cache (buffer_cache.c) once the last of them is
 * deleted. A result that is not the caller's buffer (an input returned, a
 * constant global, a weight) is copied into a buffer of its own. All of it
 * in C, so that the per-result cost of a call is a capsule and a tensor on
 * the Python side (a tiny training step returns dozens of results). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define EXPORTED __attribute__((visibility("default")))

void *_mlir_memref_to_llvm_alloc(size_t size);
void _mlir_memref_to_llvm_free(void *pointer);
const char *nnforge_guarded_call(void (*packed)(void **), void **arguments);

typedef struct {
  int64_t rank;
  void *descriptor;
} UnrankedMemRef;
void memrefCopy(int64_t element_size, UnrankedMemRef *source,
                UnrankedMemRef *target);

/* dlpack.h (v0.8), the parts used here. */
typedef struct {
  int32_t device_type;
  int32_t device_id;
} DLDevice;
typedef struct {
  uint8_t code;
  uint8_t bits;
  uint16_t lanes;
} DLDataType;
typedef struct {
  void *data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t *shape;
  int64_t *strides;
  uint64_t byte_offset;
} DLTensor;
typedef struct DLManagedTensor {
  DLTensor dl_tensor;
  void *manager_ctx;
  void (*deleter)(struct DLManagedTensor *self);
} DLManagedTensor;
enum { DL_CPU = 1 };

/* memref.get_global lowers to a descriptor whose `allocated` is this marker. */
#define GLOBAL_MARKER ((int64_t)0xDEADBEEF)

/* One result of the plan: where its descriptor starts in the block of
 * words, its rank and its DLPack element type (code, bits). */
typedef struct {
  int64_t start;
  int64_t rank;
  int64_t code;
  int64_t bits;
} ResultLayout;

/* What runtime.StaticCall lays out once per compiled model and shapes. */
typedef struct {
  void (*entry)(void **);       /* the packed entry point */
  int64_t word_count;           /* words of the descriptor block */
  const int64_t *words;         /* the block's template */
  int64_t argument_count;       /* pointers the entry point takes */
  const int64_t *argument_starts; /* first word of each argument's descriptor */
  int64_t input_count;
  const int64_t *input_starts;  /* first word of each input's descriptor */
  int64_t result_count;
  const ResultLayout *results;
  int64_t foreign_count;        /* buffers that are not the caller's: weights */
  const int64_t *foreign;
} StaticCallPlan;

/* A result buffer and how many tensors still use it. */
typedef struct {
  void *buffer;
  int64_t users;
} Owner;

/* A DLManagedTensor with its shape and strides after it. */
typedef struct {
  DLManagedTensor managed;
  int64_t dims[];
} Result;

static void release(DLManagedTensor *managed) {
  Owner *owner = managed->manager_ctx;
  if (__atomic_sub_fetch(&owner->users, 1, __ATOMIC_ACQ_REL) == 0) {
    _mlir_memref_to_llvm_free(owner->buffer);
    free(owner);
  }
  free(managed);
}

static int is_foreign(const StaticCallPlan *plan, const int64_t *addresses,
                      int64_t allocated) {
  if (allocated == 0 || allocated == GLOBAL_MARKER)
    return 1;
  for (int64_t i = 0; i < plan->input_count; ++i)
    if (addresses[i] == allocated)
      return 1;
  for (int64_t i = 0; i < plan->foreign_count; ++i)
    if (plan->foreign[i] == allocated)
      return 1;
  return 0;
}

/* A C-contiguous copy of the view `descriptor` describes, in a buffer of
 * its own (NULL when out of memory). */
static void *copy_of(int64_t *descriptor, int64_t rank, int64_t element_size) {
  int64_t count = 1;
  for (int64_t axis = 0; axis < rank; ++axis)
    count *= descriptor[3 + axis];
  void *buffer = _mlir_memref_to_llvm_alloc(count > 0 ? count * element_size : 1);
  if (!buffer || count == 0)
    return buffer;
  int64_t target[3 + 2 * (rank > 0 ? rank : 1)];
  target[0] = target[1] = (int64_t)(intptr_t)buffer;
  target[2] = 0;
  int64_t step = 1;
  for (int64_t axis = rank - 1; axis >= 0; --axis) {
    target[3 + axis] = descriptor[3 + axis];
    target[3 + rank + axis] = step;
    step *= descriptor[3 + axis];
  }
  UnrankedMemRef source = {rank, descriptor}, destination = {rank, target};
  memrefCopy(element_size, &source, &destination);
  return buffer;
}

/* Runs the model of `plan` on the inputs at `addresses`; fills `managed`
 * (result_count pointers) with a DLManagedTensor per result. Returns NULL,
 * or why the call failed (a failed run-time check; out of memory), with
 * nothing in `managed` then (the buffers the code allocated are lost, as
 * for any failed check). */
EXPORTED const char *nnforge_static_call(const StaticCallPlan *plan,
                                         const int64_t *addresses,
                                         DLManagedTensor **managed) {
  int64_t block[plan->word_count > 0 ? plan->word_count : 1];
  void *values[plan->argument_count > 0 ? plan->argument_count : 1];
  void *packed[plan->argument_count > 0 ? plan->argument_count : 1];
  memcpy(block, plan->words, plan->word_count * sizeof(int64_t));
  for (int64_t i = 0; i < plan->input_count; ++i)
    block[plan->input_starts[i]] = block[plan->input_starts[i] + 1] = addresses[i];
  for (int64_t i = 0; i < plan->argument_count; ++i) {
    values[i] = &block[plan->argument_starts[i]];
    packed[i] = &values[i];
  }
  const char *failed = nnforge_guarded_call(plan->entry, packed);
  if (failed)
    return failed;

  Owner *owners[plan->result_count > 0 ? plan->result_count : 1];
  for (int64_t r = 0; r < plan->result_count; ++r) {
    const ResultLayout *layout = &plan->results[r];
    int64_t *descriptor = &block[layout->start];
    int64_t rank = layout->rank, element_size = layout->bits / 8;
    Result *result = malloc(sizeof(Result) + 2 * rank * sizeof(int64_t));
    Owner *owner = NULL;
    void *data = NULL;
    int copied = is_foreign(plan, addresses, descriptor[0]);
    if (copied) {
      data = copy_of(descriptor, rank, element_size);
      owner = data ? malloc(sizeof(Owner)) : NULL;
      if (owner)
        *owner = (Owner){data, 0};
      else
        _mlir_memref_to_llvm_free(data);
    } else {
      data = (char *)(intptr_t)descriptor[1] + descriptor[2] * element_size;
      for (int64_t earlier = 0; earlier < r && !owner; ++earlier)
        if (owners[earlier] && owners[earlier]->buffer == (void *)(intptr_t)descriptor[0])
          owner = owners[earlier];
      if (!owner && (owner = malloc(sizeof(Owner))))
        *owner = (Owner){(void *)(intptr_t)descriptor[0], 0};
    }
    if (!result || !owner) {
      free(result);
      if (owner && owner->users == 0) {
        if (copied)
          _mlir_memref_to_llvm_free(owner->buffer);
        free(owner);
      }
      for (int64_t done = 0; done < r; ++done)
        managed[done]->deleter(managed[done]);
      return "out of memory for the results' descriptors";
    }
    owner->users += 1;
    owners[r] = copied ? NULL : owner;
    for (int64_t axis = 0; axis < rank; ++axis) {
      result->dims[axis] = descriptor[3 + axis];
      result->dims[rank + axis] = copied ? 0 : descriptor[3 + rank + axis];
    }
    if (copied)
      for (int64_t axis = rank - 1, step = 1; axis >= 0; --axis) {
        result->dims[rank + axis] = step;
        step *= result->dims[axis];
      }
    result->managed = (DLManagedTensor){
        .dl_tensor = {.data = data,
                      .device = {DL_CPU, 0},
                      .ndim = (int32_t)rank,
                      .dtype = {(uint8_t)layout->code, (uint8_t)layout->bits, 1},
                      .shape = result->dims,
                      .strides = result->dims + rank,
                      .byte_offset = 0},
        .manager_ctx = owner,
        .deleter = release,
    };
    managed[r] = &result->managed;
  }
  return NULL;
}
