//===- Registration.h - C entry points for Python ---------------*- C -*-===//
//
// What the Python package calls (through ctypes) to add nnforge to an
// `mlir.ir.Context` of the `mlir` package and to its pass registry.
//
//===----------------------------------------------------------------------===//

#ifndef NNFORGE_C_REGISTRATION_H
#define NNFORGE_C_REGISTRATION_H

#include "mlir-c/IR.h"

#ifdef __cplusplus
extern "C" {
#endif

/// Registers the nnforge dialects in `context` and loads them.
MLIR_CAPI_EXPORTED void nnforgeRegisterDialects(MlirContext context);

/// Registers the nnforge passes with the global pass registry (idempotent).
MLIR_CAPI_EXPORTED void nnforgeRegisterPasses(void);

#ifdef __cplusplus
}
#endif

#endif // NNFORGE_C_REGISTRATION_H
