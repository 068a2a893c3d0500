/* The failed-check machinery of checks.c, as the rest of the runtime uses it. */
#ifndef NNFORGE_RUNTIME_CHECKS_H
#define NNFORGE_RUNTIME_CHECKS_H

/* Returns from the innermost guarded run on this thread with `message`
 * (aborts the process where there is none). */
void nnforge_check_failed(const char *message);

/* Runs fn(context) so that a check failing in it returns here: NULL, or the
 * failed check's message (valid until this thread's next failed check). */
const char *nnforge_run_guarded(void (*fn)(void *), void *context)
    __attribute__((visibility("hidden")));

#endif
