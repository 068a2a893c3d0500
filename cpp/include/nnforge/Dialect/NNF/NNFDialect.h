//===- NNFDialect.h - nnf dialect -------------------------------*- C++ -*-===//

#ifndef NNFORGE_DIALECT_NNF_NNFDIALECT_H
#define NNFORGE_DIALECT_NNF_NNFDIALECT_H

#include "mlir/IR/Dialect.h"

#include "nnforge/Dialect/NNF/NNFDialect.h.inc"

#endif // NNFORGE_DIALECT_NNF_NNFDIALECT_H
