/* Failed runtime checks as errors for the caller, not a process abort.
 *
 * Generated code checks some conditions only at run time (an index within
 * bounds, a dimension torch-mlir's lowering does not handle); upstream MLIR
 * lowers a failed `cf.assert` to abort(). nnforge's `nnf-assert-to-runtime-error`
 * pass makes it call nnforge_check_failed instead, and nnforge's runtime
 * calls models through nnforge_guarded_call, which returns the failed
 * check's message. Buffers the model allocated before the check are not
 * freed: a failed check costs a leak, not the process. */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>

#define EXPORTED __attribute__((visibility("default")))

/* The innermost nnforge_guarded_call on this thread, if any. */
static _Thread_local jmp_buf *active_guard;
static _Thread_local char failed_check[1024];

EXPORTED void nnforge_check_failed(const char *message) {
  if (!active_guard) {
    /* Not under nnforge_guarded_call on this thread (an OpenMP worker, or a
     * caller of the raw entry point): nowhere to return to. */
    fprintf(stderr, "nnforge: a runtime check failed: %s\n", message);
    abort();
  }
  snprintf(failed_check, sizeof failed_check, "%s", message);
  longjmp(*active_guard, 1);
}

/* Calls `packed` (an ExecutionEngine-style packed entry point) on
 * `arguments`; returns NULL, or the message of the check that failed. */
EXPORTED const char *nnforge_guarded_call(void (*packed)(void **),
                                          void **arguments) {
  jmp_buf guard;
  jmp_buf *outer = active_guard;
  active_guard = &guard;
  if (setjmp(guard)) {
    active_guard = outer;
    return failed_check;
  }
  packed(arguments);
  active_guard = outer;
  return NULL;
}
