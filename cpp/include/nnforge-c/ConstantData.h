//===- ConstantData.h - the bytes of constants, for Python ------*- C -*-===//
//
// What the Python package calls (through ctypes) to read the bytes behind a
// constant's attribute without copying them: the weights a compilation
// moves out of the module into a weights file.
//
//===----------------------------------------------------------------------===//

#ifndef NNFORGE_C_CONSTANTDATA_H
#define NNFORGE_C_CONSTANTDATA_H

#include "mlir-c/IR.h"

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Sets `*data` and `*size` to the raw bytes of `attribute` (inline dense
/// elements, not a splat, or a loaded `dense_resource` blob) and returns
/// true; returns false for any other attribute. The bytes live as long as
/// the attribute's context.
MLIR_CAPI_EXPORTED bool nnforgeConstantBytes(MlirAttribute attribute,
                                             const void **data,
                                             intptr_t *size);

/// Frees the data of the `count` constants in `values` that nnforge's
/// passes made (see nnforge/Transforms/ConstantData.h) and no op nested in
/// `module` (a top-level op) refers to any more.
MLIR_CAPI_EXPORTED void nnforgeReleaseUnusedConstants(MlirOperation module,
                                                      const MlirAttribute *values,
                                                      intptr_t count);

#ifdef __cplusplus
}
#endif

#endif // NNFORGE_C_CONSTANTDATA_H
