/* Failed runtime checks as errors for the caller, not a process abort.
 *
 * Generated code checks some conditions only at run time (an index within
 * bounds, a dimension torch-mlir's lowering does not handle); upstream MLIR
 * lowers a failed `cf.assert` to abort(). nnforge's `nnf-assert-to-runtime-error`
 * pass makes it call nnforge_check_failed instead, and nnforge's runtime
 * calls models through nnforge_guarded_call, which returns the failed
 * check's message. A check failing on a thread of a parallel loop returns
 * to that thread's part of the loop (openmp.c), never across the OpenMP
 * runtime's frames; the loop's caller then fails in turn. Buffers the model
 * allocated before the check are not freed: a failed check costs a leak,
 * not the process. */
#include "checks.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>

#define EXPORTED __attribute__((visibility("default")))

/* The innermost guarded run on this thread, if any. */
static _Thread_local jmp_buf *active_guard;
static _Thread_local char failed_check[1024];

EXPORTED void nnforge_check_failed(const char *message) {
  if (!active_guard) {
    /* Not under a guarded run on this thread (a caller of the raw entry
     * point): nowhere to return to. */
    fprintf(stderr, "nnforge: a runtime check failed: %s\n", message);
    abort();
  }
  if (message != failed_check)
    snprintf(failed_check, sizeof failed_check, "%s", message);
  longjmp(*active_guard, 1);
}

const char *nnforge_run_guarded(void (*fn)(void *), void *context) {
  jmp_buf guard;
  jmp_buf *outer = active_guard;
  active_guard = &guard;
  if (setjmp(guard)) {
    active_guard = outer;
    return failed_check;
  }
  fn(context);
  active_guard = outer;
  return NULL;
}

typedef struct {
  void (*packed)(void **);
  void **arguments;
} PackedCall;

static void call_packed(void *context) {
  PackedCall *call = context;
  call->packed(call->arguments);
}

/* Calls `packed` (an ExecutionEngine-style packed entry point) on
 * `arguments`; returns NULL, or the message of the check that failed. */
EXPORTED const char *nnforge_guarded_call(void (*packed)(void **),
                                          void **arguments) {
  PackedCall call = {packed, arguments};
  return nnforge_run_guarded(call_packed, &call);
}
