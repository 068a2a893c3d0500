/* The parallel loops of generated CPU code, run by the OpenMP runtime the
 * process already has.
 *
 * MLIR lowers scf.parallel to the omp dialect, which LLVM's OpenMPIRBuilder
 * translates into calls of six entry points of LLVM's and Intel's OpenMP
 * runtimes (libomp, libiomp5):
 *
 *   __kmpc_global_thread_num(loc)
 *   __kmpc_push_num_threads(loc, gtid, n)      before a region with threads=n
 *   __kmpc_fork_call(loc, argc, region, ...)   the region: region(&gtid, &btid, args...)
 *   __kmpc_for_static_init_8u(loc, gtid, 34, &last, &lower, &upper, &stride, 1, chunk)
 *   __kmpc_for_static_fini(loc, gtid)
 *   __kmpc_barrier(loc, gtid)                  after a worksharing loop
 *
 * PyTorch's CPU builds run their intra-op parallelism on GNU libgomp, which
 * has none of them: code calling libiomp5 beside PyTorch kept two pools of
 * workers on the same cores, each spinning while the other worked. This file
 * implements the six on the GOMP ABI (GOMP_parallel, omp_get_thread_num,
 * omp_get_num_threads), which libgomp, libomp and libiomp5 all export, of a
 * runtime its caller binds (nnforge_openmp_bind; nnforge/openmp.py picks
 * PyTorch's runtime where torch is loaded, libiomp5 otherwise). The region
 * then runs on that runtime's workers, with its thread count: PyTorch's,
 * where nothing else is asked for. Until a runtime is bound, regions run on
 * the calling thread alone.
 *
 * A check failing inside a region (checks.c) returns to the failing
 * thread's part of the region (run_member); the team's barriers stop
 * waiting for that thread, the region ends normally in the OpenMP runtime,
 * and then __kmpc_fork_call fails on its caller's thread with the message.
 *
 * Built under the names nnforge_kmpc_*, which nnforge's object compiler
 * points the generated calls at (so that no other library loaded later
 * finds __kmpc_* entry points of ours, nor ours theirs), into
 * libNNForgeRuntime.so, which models run in the compiling process share,
 * and into libNNForgeOpenMPStatic.a, which saved models link from; there
 * with hidden __kmpc_* aliases too, for code compiled by LLVM's tools. */
#include "checks.h"

#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

#define EXPORTED __attribute__((visibility("default")))

/* OpenMPIRBuilder passes a region's captured values as one aggregate. */
#define MAX_REGION_ARGUMENTS 1
/* kmp_sch_static: iterations split into one contiguous block per thread. */
#define SCHEDULE_STATIC 34
/* Spins before a waiting barrier member sleeps. */
#define BARRIER_SPINS 4000

typedef void (*Region)(int32_t *gtid, int32_t *btid, ...);

/* What a bound runtime provides (its GOMP ABI). */
typedef struct {
  void (*parallel)(void (*fn)(void *), void *data, unsigned num_threads,
                   unsigned flags);
  int (*thread_num)(void);
  int (*num_threads)(void);
} Runtime;

/* One call of __kmpc_fork_call, on its caller's stack. */
typedef struct {
  Region region;
  int32_t argc;
  void *arguments[MAX_REGION_ARGUMENTS];
  const Runtime *runtime;
  /* The barrier: members arrived (low half) and members gone after a failed
   * check (high half), in one word so that one atomic update sees both. */
  _Atomic uint64_t barrier;
  _Atomic uint32_t generation;
  atomic_flag failed;
  char message[1024];
} Team;

/* The calling thread's part of a team. */
typedef struct Member {
  Team *team;
  int thread;
  int threads;
  struct Member *outer; /* this thread's part of an enclosing team */
} Member;

static _Thread_local Member *current_member;
static _Thread_local unsigned pushed_threads;

/* Distinct runtimes bound so far (a process binds one or two); a region
 * reads one pointer, so a rebinding never mixes two runtimes' functions. */
#define MAX_RUNTIMES 8
static Runtime runtimes[MAX_RUNTIMES];
static int runtime_count;
static pthread_mutex_t bind_lock = PTHREAD_MUTEX_INITIALIZER;
static const Runtime *_Atomic bound_runtime;

/* Binds the runtime whose GOMP_parallel, omp_get_thread_num and
 * omp_get_num_threads these are (all NULL: none, regions run on the calling
 * thread). Returns 0, or -1 when MAX_RUNTIMES distinct ones were bound. */
EXPORTED int nnforge_openmp_bind(void *parallel, void *thread_num,
                                 void *num_threads) {
  if (!parallel || !thread_num || !num_threads) {
    atomic_store_explicit(&bound_runtime, NULL, memory_order_release);
    return 0;
  }
  Runtime wanted = {(void (*)(void (*)(void *), void *, unsigned, unsigned))parallel,
                    (int (*)(void))thread_num, (int (*)(void))num_threads};
  int result = 0;
  pthread_mutex_lock(&bind_lock);
  int index = 0;
  while (index < runtime_count && (runtimes[index].parallel != wanted.parallel ||
                                   runtimes[index].thread_num != wanted.thread_num ||
                                   runtimes[index].num_threads != wanted.num_threads))
    ++index;
  if (index == runtime_count) {
    if (runtime_count == MAX_RUNTIMES)
      result = -1;
    else
      runtimes[runtime_count++] = wanted;
  }
  if (result == 0)
    atomic_store_explicit(&bound_runtime, &runtimes[index], memory_order_release);
  pthread_mutex_unlock(&bind_lock);
  return result;
}

/* The GOMP_parallel of the bound runtime, or NULL (for tests and tools). */
EXPORTED void *nnforge_openmp_bound(void) {
  const Runtime *runtime = atomic_load_explicit(&bound_runtime, memory_order_acquire);
  return runtime ? (void *)runtime->parallel : NULL;
}

static void fail_team(Team *team, const char *message) {
  if (!atomic_flag_test_and_set(&team->failed))
    snprintf(team->message, sizeof team->message, "%s", message);
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ volatile("yield");
#endif
}

static void futex(_Atomic uint32_t *word, int operation, uint32_t value) {
  syscall(SYS_futex, word, operation, value, NULL, NULL, 0);
}

/* Moves the barrier from `state` to `next`; when that completes it (every
 * member still there arrived), opens it instead. False if `state` was stale. */
static int barrier_step(Team *team, uint64_t *state, uint64_t next, int threads) {
  uint64_t arrived = next & UINT32_MAX, gone = next >> 32;
  int completes = arrived > 0 && arrived + gone == (uint64_t)threads;
  if (completes)
    next = gone << 32;
  if (!atomic_compare_exchange_weak(&team->barrier, state, next))
    return 0;
  if (completes) {
    atomic_fetch_add_explicit(&team->generation, 1, memory_order_release);
    futex(&team->generation, FUTEX_WAKE_PRIVATE, INT_MAX);
  }
  return 1;
}

static void barrier_wait(Member *member) {
  Team *team = member->team;
  uint32_t generation = atomic_load_explicit(&team->generation, memory_order_acquire);
  uint64_t state = atomic_load(&team->barrier);
  while (!barrier_step(team, &state, state + 1, member->threads))
    ;
  for (int spin = 0; atomic_load_explicit(&team->generation, memory_order_acquire) == generation;
       ++spin) {
    if (spin < BARRIER_SPINS)
      cpu_relax();
    else
      futex(&team->generation, FUTEX_WAIT_PRIVATE, generation);
  }
}

/* A member leaves the team for good (its check failed): the barriers it
 * will not reach stop counting it. */
static void barrier_leave(Member *member) {
  Team *team = member->team;
  uint64_t state = atomic_load(&team->barrier);
  while (!barrier_step(team, &state, state + ((uint64_t)1 << 32), member->threads))
    ;
}

static void call_region(void *context) {
  Member *member = context;
  Team *team = member->team;
  int32_t gtid = member->thread, btid = 0;
  if (team->argc == 0)
    ((void (*)(int32_t *, int32_t *))team->region)(&gtid, &btid);
  else
    ((void (*)(int32_t *, int32_t *, void *))team->region)(&gtid, &btid,
                                                          team->arguments[0]);
}

/* One thread's part of a region (what GOMP_parallel runs on each thread). */
static void run_member(void *data) {
  Team *team = data;
  Member member = {team, 0, 1, current_member};
  if (team->runtime) {
    member.thread = team->runtime->thread_num();
    member.threads = team->runtime->num_threads();
  }
  current_member = &member;
  const char *failed = nnforge_run_guarded(call_region, &member);
  current_member = member.outer;
  if (failed) {
    fail_team(team, failed);
    barrier_leave(&member);
  }
}

EXPORTED int32_t nnforge_kmpc_global_thread_num(void *loc) {
  (void)loc;
  return current_member ? current_member->thread : 0;
}

EXPORTED void nnforge_kmpc_push_num_threads(void *loc, int32_t gtid, int32_t threads) {
  (void)loc, (void)gtid;
  pushed_threads = threads > 0 ? (unsigned)threads : 0;
}

EXPORTED void nnforge_kmpc_fork_call(void *loc, int32_t argc, Region region, ...) {
  (void)loc;
  Team team = {.region = region, .argc = argc, .failed = ATOMIC_FLAG_INIT};
  if (argc < 0 || argc > MAX_REGION_ARGUMENTS) {
    char message[160];
    snprintf(message, sizeof message,
             "a parallel region takes %d arguments; nnforge's OpenMP support takes at "
             "most %d (OpenMPIRBuilder's aggregate)",
             (int)argc, MAX_REGION_ARGUMENTS);
    nnforge_check_failed(message);
  }
  va_list arguments;
  va_start(arguments, region);
  for (int32_t i = 0; i < argc; ++i)
    team.arguments[i] = va_arg(arguments, void *);
  va_end(arguments);
  unsigned threads = pushed_threads;
  pushed_threads = 0;
  team.runtime = atomic_load_explicit(&bound_runtime, memory_order_acquire);
  if (team.runtime)
    team.runtime->parallel(run_member, &team, threads, 0);
  else
    run_member(&team);
  if (atomic_flag_test_and_set(&team.failed))
    nnforge_check_failed(team.message);
}

EXPORTED void nnforge_kmpc_for_static_init_8u(void *loc, int32_t gtid, int32_t schedule,
                                              int32_t *last, uint64_t *lower, uint64_t *upper,
                                              int64_t *stride, int64_t increment,
                                              int64_t chunk) {
  (void)loc, (void)gtid, (void)chunk;
  if (schedule != SCHEDULE_STATIC || increment < 1) {
    char message[160];
    snprintf(message, sizeof message,
             "a parallel loop has OpenMP schedule %d and step %lld; nnforge's OpenMP "
             "support takes static schedules (%d) of positive steps",
             (int)schedule, (long long)increment, SCHEDULE_STATIC);
    nnforge_check_failed(message);
  }
  uint64_t step = (uint64_t)increment;
  if (*upper < *lower) { /* no iterations */
    *last = 0;
    *stride = increment;
    return;
  }
  uint64_t threads = current_member ? (uint64_t)current_member->threads : 1;
  uint64_t thread = current_member ? (uint64_t)current_member->thread : 0;
  uint64_t trips = (*upper - *lower) / step + 1;
  /* As libiomp5's balanced static schedule: the first trips % threads
   * threads take one iteration more. */
  uint64_t size = trips / threads, extra = trips % threads;
  uint64_t first = thread * size + (thread < extra ? thread : extra);
  uint64_t count = size + (thread < extra ? 1 : 0);
  *last = count > 0 && first + count == trips;
  *stride = (int64_t)(trips * step);
  if (count == 0) { /* an empty block: upper = lower - 1 */
    *lower = *upper + step;
    return;
  }
  *lower += first * step;
  *upper = *lower + (count - 1) * step;
}

EXPORTED void nnforge_kmpc_for_static_fini(void *loc, int32_t gtid) {
  (void)loc, (void)gtid;
}

EXPORTED void nnforge_kmpc_barrier(void *loc, int32_t gtid) {
  (void)loc, (void)gtid;
  if (current_member && current_member->threads > 1)
    barrier_wait(current_member);
}

#ifdef NNFORGE_KMPC_ALIASES
#define ALIAS(name)                                                                    \
  extern __typeof(nnforge_##name) __##name                                             \
      __attribute__((alias("nnforge_" #name), visibility("hidden")));
ALIAS(kmpc_global_thread_num)
ALIAS(kmpc_push_num_threads)
ALIAS(kmpc_fork_call)
ALIAS(kmpc_for_static_init_8u)
ALIAS(kmpc_for_static_fini)
ALIAS(kmpc_barrier)
#endif
