/* Timers of a profiled model (`nnforge profile`, `compiled.profile(...)`).
 *
 * nnforge's `nnf-profile-dispatch-regions` pass brackets each dispatch
 * region (and each op computed outside one, and the whole entry function)
 * with a call to nnforge_profile_start before it and nnforge_profile_stop
 * after it. The counters live in the model itself (a zeroed global array of
 * two int64 per region: nanoseconds, then calls), so that two profiled
 * models in one process count apart; the model's own
 * `nnf_profile_counters()` returns their address to whoever reads them. The
 * calls come from the thread calling the model (never from inside a
 * parallel loop); the additions are atomic all the same, so that a model
 * called from several threads at once counts every call. */
#include <stdint.h>
#include <time.h>

#define EXPORTED __attribute__((visibility("default")))

/* Now, in nanoseconds of the monotonic clock. */
EXPORTED int64_t nnforge_profile_start(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

/* Adds the time since `start` (from nnforge_profile_start) and one call to
 * region `region` of `counters`. */
EXPORTED void nnforge_profile_stop(int64_t *counters, int64_t region, int64_t start) {
  int64_t elapsed = nnforge_profile_start() - start;
  __atomic_fetch_add(&counters[2 * region], elapsed, __ATOMIC_RELAXED);
  __atomic_fetch_add(&counters[2 * region + 1], 1, __ATOMIC_RELAXED);
}
