//===- NNFOps.h - nnf operations --------------------------------*- C++ -*-===//

#ifndef NNFORGE_DIALECT_NNF_NNFOPS_H
#define NNFORGE_DIALECT_NNF_NNFOPS_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/Interfaces/ControlFlowInterfaces.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "nnforge/Dialect/NNF/NNFDialect.h"

#include "nnforge/Dialect/NNF/NNFEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "nnforge/Dialect/NNF/NNFAttrs.h.inc"

namespace nnforge::nnf {
/// Whether result types `actual` are `inferred` or refine dynamic dimensions
/// it leaves open (an nnf op's result types may say more than its operands).
bool areRefinementsOf(mlir::TypeRange inferred, mlir::TypeRange actual);
} // namespace nnforge::nnf

#define GET_OP_CLASSES
#include "nnforge/Dialect/NNF/NNFOps.h.inc"

#endif // NNFORGE_DIALECT_NNF_NNFOPS_H
