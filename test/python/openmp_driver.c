/* Drives nnforge's OpenMP entry points (cpp/runtime/openmp.c) the way code
 * translated by LLVM's OpenMPIRBuilder calls them, on the OpenMP runtime
 * named by argv[1] (bound through its GOMP ABI). Prints one line per
 * failure and "ok" when all hold. Built and run by test_openmp.py. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int nnforge_openmp_bind(void *parallel, void *thread_num, void *num_threads);
const char *nnforge_guarded_call(void (*packed)(void **), void **arguments);
void nnforge_check_failed(const char *message);
int32_t __kmpc_global_thread_num(void *loc);
void __kmpc_push_num_threads(void *loc, int32_t gtid, int32_t threads);
void __kmpc_fork_call(void *loc, int32_t argc, void *region, ...);
void __kmpc_for_static_init_8u(void *loc, int32_t gtid, int32_t schedule, int32_t *last,
                               uint64_t *lower, uint64_t *upper, int64_t *stride,
                               int64_t increment, int64_t chunk);
void __kmpc_for_static_fini(void *loc, int32_t gtid);
void __kmpc_barrier(void *loc, int32_t gtid);

static int failures;
#define EXPECT(condition, ...)                                                           \
  do {                                                                                   \
    if (!(condition)) {                                                                  \
      printf(__VA_ARGS__);                                                               \
      printf("\n");                                                                      \
      ++failures;                                                                        \
    }                                                                                    \
  } while (0)

enum { MAX_TRIPS = 64 };

/* A region's captured values (OpenMPIRBuilder passes one aggregate). */
typedef struct {
  uint64_t trips;
  int fail_at;            /* iteration whose check fails, or -1 */
  int schedule;           /* passed to __kmpc_for_static_init_8u */
  int seen[MAX_TRIPS];    /* times each iteration ran */
  int doubled[MAX_TRIPS]; /* after the barrier: twice the other half's seen */
  int last_count;         /* threads told they ran the last iteration */
  int nested_threads;     /* team size seen inside a nested region */
} Work;

/* One worksharing loop over [0, trips) as OpenMPIRBuilder lowers it;
 * returns this thread's [first, end). */
static void static_block(Work *work, uint64_t *first, uint64_t *end) {
  int32_t gtid = __kmpc_global_thread_num(NULL), last = 0;
  uint64_t lower = 0, upper = work->trips - 1;
  int64_t stride = 1;
  if (work->trips == 0) {
    *first = *end = 0;
    return;
  }
  __kmpc_for_static_init_8u(NULL, gtid, work->schedule, &last, &lower, &upper, &stride, 1, 0);
  *first = lower;
  *end = upper - lower + 1 == 0 ? lower : upper + 1;
  if (last)
    __atomic_fetch_add(&work->last_count, 1, __ATOMIC_RELAXED);
  __kmpc_for_static_fini(NULL, gtid);
}

static void nested_region(int32_t *gtid, int32_t *btid, Work *work) {
  (void)gtid, (void)btid;
  uint64_t first, end;
  static_block(work, &first, &end);
  if (first == 0 && end > 0)
    __atomic_store_n(&work->nested_threads, end == work->trips ? 1 : 2, __ATOMIC_RELAXED);
}

static void region(int32_t *gtid, int32_t *btid, Work *work) {
  (void)btid;
  uint64_t first, end;
  static_block(work, &first, &end);
  if (*gtid == 1)
    usleep(1000); /* late: the others must wait for it at the barrier */
  for (uint64_t i = first; i < end; ++i) {
    __atomic_fetch_add(&work->seen[i], 1, __ATOMIC_RELAXED);
    if ((int)i == work->fail_at)
      nnforge_check_failed("check failed in the region");
  }
  __kmpc_barrier(NULL, *gtid);
  /* Every thread's part is done: read the other half's. */
  for (uint64_t i = first; i < end; ++i)
    work->doubled[i] = 2 * work->seen[(i + work->trips / 2) % work->trips];
  __kmpc_barrier(NULL, *gtid);
}

static void region_with_nested(int32_t *gtid, int32_t *btid, Work *work) {
  (void)btid;
  if (*gtid == 0) {
    Work inner = {.trips = 8, .fail_at = -1, .schedule = 34};
    __kmpc_fork_call(NULL, 1, (void *)nested_region, &inner);
    work->nested_threads = inner.nested_threads;
  }
}

static void region_without_arguments(int32_t *gtid, int32_t *btid) {
  (void)gtid, (void)btid;
}

typedef struct {
  Work *work;
  int threads;
  void *region;
  int32_t argc;
} Call;

static void entry(void **arguments) {
  Call *call = arguments[0];
  if (call->threads)
    __kmpc_push_num_threads(NULL, __kmpc_global_thread_num(NULL), call->threads);
  __kmpc_fork_call(NULL, call->argc, call->region, call->work, call->work);
}

static const char *run(Work *work, int threads, void *region_function, int32_t argc) {
  Call call = {work, threads, region_function, argc};
  void *arguments[] = {&call};
  return nnforge_guarded_call(entry, arguments);
}

int main(int argc, char **argv) {
  void *library = argc > 1 ? dlopen(argv[1], RTLD_NOW | RTLD_LOCAL) : NULL;
  if (argc > 1 && !library) {
    printf("cannot load %s: %s\n", argv[1], dlerror());
    return 1;
  }
  if (library)
    EXPECT(nnforge_openmp_bind(dlsym(library, "GOMP_parallel"), dlsym(library, "omp_get_thread_num"),
                               dlsym(library, "omp_get_num_threads")) == 0,
           "binding failed");
  int bound = library != NULL;

  for (int threads = 1; threads <= 5; ++threads)
    for (uint64_t trips = 0; trips <= 13; ++trips) {
      Work work = {.trips = trips, .fail_at = -1, .schedule = 34};
      const char *failed = run(&work, threads, (void *)region, 1);
      EXPECT(!failed, "threads %d, trips %llu: failed: %s", threads, (unsigned long long)trips, failed);
      for (uint64_t i = 0; i < trips; ++i) {
        EXPECT(work.seen[i] == 1, "threads %d, trips %llu: iteration %llu ran %d times", threads,
               (unsigned long long)trips, (unsigned long long)i, work.seen[i]);
        EXPECT(work.doubled[i] == 2, "threads %d, trips %llu: the barrier let iteration %llu through early",
               threads, (unsigned long long)trips, (unsigned long long)i);
      }
      EXPECT(work.last_count == (trips > 0), "threads %d, trips %llu: %d threads ran the last iteration",
             threads, (unsigned long long)trips, work.last_count);
    }

  /* A check failing on any thread of a team: the caller gets the message,
   * the other threads are not left waiting at the barriers, and the runtime
   * goes on working. */
  for (int fail_at = 0; fail_at < 9; ++fail_at) {
    Work work = {.trips = 9, .fail_at = fail_at, .schedule = 34};
    const char *failed = run(&work, 3, (void *)region, 1);
    EXPECT(failed && strcmp(failed, "check failed in the region") == 0,
           "a check failing at iteration %d returned %s", fail_at, failed ? failed : "nothing");
  }
  Work after = {.trips = 7, .fail_at = -1, .schedule = 34};
  EXPECT(!run(&after, 3, (void *)region, 1) && after.doubled[6] == 2, "a region after failed ones");

  /* A region inside a region runs (on a team of one, the runtimes' default). */
  Work outer = {.trips = 2, .fail_at = -1, .schedule = 34};
  EXPECT(!run(&outer, 2, (void *)region_with_nested, 1) && outer.nested_threads == 1,
         "nested region: team of %d", outer.nested_threads);

  EXPECT(!run(NULL, 2, (void *)region_without_arguments, 0), "a region without arguments");
  const char *rejected = run(NULL, 2, (void *)region_without_arguments, 2);
  EXPECT(rejected && strstr(rejected, "takes 2 arguments"), "two region arguments: %s",
         rejected ? rejected : "accepted");
  Work dynamic = {.trips = 4, .fail_at = -1, .schedule = 35};
  rejected = run(&dynamic, 2, (void *)region, 1);
  EXPECT(rejected && strstr(rejected, "schedule 35"), "schedule 35: %s", rejected ? rejected : "accepted");

  if (failures)
    printf("%d failures (%s)\n", failures, bound ? argv[1] : "unbound");
  else
    printf("ok (%s)\n", bound ? argv[1] : "unbound");
  return failures != 0;
}
