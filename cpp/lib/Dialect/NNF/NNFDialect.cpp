//===- NNFDialect.cpp - nnf dialect ---------------------------------------===//

#include "nnforge/Dialect/NNF/NNFDialect.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "nnforge/Dialect/NNF/NNFOps.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace nnforge::nnf;

#include "nnforge/Dialect/NNF/NNFDialect.cpp.inc"
#include "nnforge/Dialect/NNF/NNFEnums.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "nnforge/Dialect/NNF/NNFAttrs.cpp.inc"

void NNFDialect::initialize() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "nnforge/Dialect/NNF/NNFAttrs.cpp.inc"
      >();
  addOperations<
#define GET_OP_LIST
#include "nnforge/Dialect/NNF/NNFOps.cpp.inc"
      >();
}
