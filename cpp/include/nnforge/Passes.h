//===- Passes.h - nnforge passes --------------------------------*- C++ -*-===//

#ifndef NNFORGE_PASSES_H
#define NNFORGE_PASSES_H

#include "mlir/Dialect/Affine/IR/AffineOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Pass/Pass.h"

namespace nnforge {

#define GEN_PASS_DECL
#include "nnforge/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "nnforge/Passes.h.inc"

} // namespace nnforge

#endif // NNFORGE_PASSES_H
