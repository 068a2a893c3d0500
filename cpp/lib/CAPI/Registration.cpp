//===- Registration.cpp - C entry points for Python -----------------------===//

#include "nnforge-c/Registration.h"

#include "mlir/CAPI/IR.h"
#include "mlir/IR/DialectRegistry.h"
#include "nnforge/Dialect/MPI/MPIMemoryEffects.h"
#include "nnforge/Dialect/NNF/NNFDialect.h"
#include "nnforge/Dialect/Tensor/ExtractSliceSharding.h"
#include "nnforge/Dialect/Tensor/ReshapeSharding.h"
#include "nnforge/Passes.h"

void nnforgeRegisterDialects(MlirContext context) {
  mlir::DialectRegistry registry;
  registry.insert<nnforge::nnf::NNFDialect>();
  nnforge::registerMPIMemoryEffects(registry);
  nnforge::registerExtractSliceShardingInterface(registry);
  nnforge::registerReshapeShardingInterface(registry);
  mlir::MLIRContext *ctx = unwrap(context);
  ctx->appendDialectRegistry(registry);
  ctx->loadDialect<nnforge::nnf::NNFDialect>();
}

void nnforgeRegisterPasses() {
  // The pass registry is process-wide and rejects a second registration of a
  // name, so contexts created later must not register again.
  static const bool registered = [] {
    nnforge::registerNNForgePasses();
    return true;
  }();
  (void)registered;
}
