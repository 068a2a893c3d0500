//===- ObjectFiles.h - CPU object files, for Python -------------*- C -*-===//
//
// What the Python package calls (through ctypes) to compile an LLVM-dialect
// module into object files (see nnforge/Target/CPU/ObjectFiles.h).
//
//===----------------------------------------------------------------------===//

#ifndef NNFORGE_C_OBJECTFILES_H
#define NNFORGE_C_OBJECTFILES_H

#include "mlir-c/IR.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Compiles `module` (LLVM dialect) for the CPU `cpu` with the LLVM features
/// `features` (both empty: this machine's) into object files
/// `<prefix>0.o`, `<prefix>1.o`, ..., on `threads` threads. Returns how many
/// it wrote; 0 after writing what went wrong into `message` (`capacity`
/// bytes, NUL-terminated).
MLIR_CAPI_EXPORTED int nnforgeCompileObjectFiles(MlirOperation module,
                                                 const char *cpu,
                                                 const char *features,
                                                 int threads,
                                                 const char *prefix,
                                                 char *message,
                                                 size_t capacity);

#ifdef __cplusplus
}
#endif

#endif // NNFORGE_C_OBJECTFILES_H
