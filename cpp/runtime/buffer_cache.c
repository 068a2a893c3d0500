/* The allocator of generated CPU code: buffers freed by one call of a model
 * are reused by the next, so that a model's steady state allocates nothing.
 *
 * nnforge lowers memrefs to LLVM with `use-generic-functions`, so generated
 * code allocates through _mlir_memref_to_llvm_alloc/_free instead of
 * malloc/free. Each call of a model allocates the same sizes in the same
 * order; glibc serves them from the heap's top and trims it again when they
 * are freed (or maps and unmaps the large ones), so every call paid for
 * fresh pages: page faults and zeroing took half of ResNet-18's run time in
 * a process that had not grown its heap before. Here a freed buffer is kept
 * in a list per size and handed out again for a request that fits it.
 *
 * Buffers come from malloc and keep its bookkeeping: a model's results,
 * allocated here and owned by the caller, are released with libc's free
 * (checked calls) or given back here (static calls: static_call.c). At
 * most CACHE_LIMIT bytes are kept; beyond that buffers go back to libc. */
#include <malloc.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>

#define EXPORTED __attribute__((visibility("default")))

/* Buffers smaller than this are not kept in the shared lists: libc's
 * per-thread caches serve them without touching the heap's top (the
 * per-thread slots below still take them). */
#define MIN_CACHED_SIZE 4096
#define CACHE_LIMIT ((size_t)1 << 30)
#define MAX_SIZES 512

/* A cached buffer: its first bytes link it to the next of the same size. */
typedef struct FreeBuffer {
  struct FreeBuffer *next;
} FreeBuffer;

/* The cached buffers of one usable size (malloc_usable_size). */
typedef struct {
  size_t size;
  FreeBuffer *buffers;
} SizeList;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static SizeList lists[MAX_SIZES];
static int list_count;
static size_t cached_bytes;

/* A request may take a buffer up to 1/8 larger than it asks for. */
static int fits(size_t usable, size_t requested) {
  return usable >= requested && usable - requested <= requested / 8 + 64;
}

/* Each thread also keeps the last few buffers of up to LOCAL_MAX_SIZE bytes
 * it freed: the scratch of one tile, which every iteration of a tile loop
 * allocates and frees (a MobileNetV2 block's depthwise stage: a padded tile
 * and an accumulator of 1-2 KiB for each channel of each band of rows, 2,700
 * a call, which libc's malloc and free served at 5 % of the block's time).
 * Those are taken again without the lock, for which the threads sharing a
 * parallel loop would otherwise contend once per tile. With every slot taken, the slots take turns making room (the buffer
 * goes to the shared lists), so that they follow the model being run. A
 * thread's slots go back to libc when it exits. */
#define LOCAL_SLOTS 4
#define LOCAL_MAX_SIZE ((size_t)64 << 10)

typedef struct {
  void *buffer;
  size_t size;
} LocalSlot;

static __thread LocalSlot local_slots[LOCAL_SLOTS];
static __thread int next_to_make_room;
static __thread int exit_handler_registered;
static pthread_key_t local_key;
static pthread_once_t local_key_once = PTHREAD_ONCE_INIT;

static int is_tile_scratch(size_t size) {
  return size <= LOCAL_MAX_SIZE;
}

static void release_local_slots(void *slots) {
  for (LocalSlot *slot = slots; slot < (LocalSlot *)slots + LOCAL_SLOTS; ++slot)
    free(slot->buffer);
}

static void create_local_key(void) {
  pthread_key_create(&local_key, release_local_slots);
}

static void *take_local(size_t size) {
  for (int i = 0; i < LOCAL_SLOTS; ++i) {
    void *buffer = local_slots[i].buffer;
    if (buffer && fits(local_slots[i].size, size)) {
      local_slots[i].buffer = NULL;
      return buffer;
    }
  }
  return NULL;
}

/* Keeps `*pointer` (of usable `*size`) in a slot. Returns 0, or 1 with the
 * buffer that made room for it in `*pointer` and `*size`. */
static int keep_local(void **pointer, size_t *size) {
  if (!exit_handler_registered) {
    /* The key's value makes the exit handler run for this thread. */
    pthread_once(&local_key_once, create_local_key);
    pthread_setspecific(local_key, local_slots);
    exit_handler_registered = 1;
  }
  for (int i = 0; i < LOCAL_SLOTS; ++i) {
    if (!local_slots[i].buffer) {
      local_slots[i] = (LocalSlot){*pointer, *size};
      return 0;
    }
  }
  LocalSlot evicted = local_slots[next_to_make_room];
  local_slots[next_to_make_room] = (LocalSlot){*pointer, *size};
  next_to_make_room = (next_to_make_room + 1) % LOCAL_SLOTS;
  *pointer = evicted.buffer;
  *size = evicted.size;
  return 1;
}

EXPORTED void *_mlir_memref_to_llvm_alloc(size_t size) {
  if (is_tile_scratch(size)) {
    void *buffer = take_local(size);
    if (buffer)
      return buffer;
  }
  if (size >= MIN_CACHED_SIZE) {
    pthread_mutex_lock(&lock);
    for (int i = 0; i < list_count; ++i) {
      FreeBuffer *buffer = lists[i].buffers;
      if (buffer && fits(lists[i].size, size)) {
        lists[i].buffers = buffer->next;
        cached_bytes -= lists[i].size;
        pthread_mutex_unlock(&lock);
        return buffer;
      }
    }
    pthread_mutex_unlock(&lock);
  }
  return malloc(size);
}

EXPORTED void _mlir_memref_to_llvm_free(void *pointer) {
  if (!pointer)
    return;
  size_t size = malloc_usable_size(pointer);
  if (is_tile_scratch(size) && !keep_local(&pointer, &size))
    return;
  if (size >= MIN_CACHED_SIZE) {
    pthread_mutex_lock(&lock);
    SizeList *list = NULL;
    for (int i = 0; i < list_count && !list; ++i)
      if (lists[i].size == size)
        list = &lists[i];
    if (!list && list_count < MAX_SIZES) {
      list = &lists[list_count++];
      list->size = size;
    }
    if (list && cached_bytes + size <= CACHE_LIMIT) {
      FreeBuffer *buffer = pointer;
      buffer->next = list->buffers;
      list->buffers = buffer;
      cached_bytes += size;
      pthread_mutex_unlock(&lock);
      return;
    }
    pthread_mutex_unlock(&lock);
  }
  free(pointer);
}
