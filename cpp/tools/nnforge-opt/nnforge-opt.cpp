//===- nnforge-opt.cpp - mlir-opt with nnforge's dialects and passes ------===//

#include "mlir/IR/DialectRegistry.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "nnforge/Dialect/MPI/MPIMemoryEffects.h"
#include "nnforge/Dialect/NNF/NNFDialect.h"
#include "nnforge/Dialect/Tensor/ReshapeSharding.h"
#include "nnforge/Passes.h"

int main(int argc, char **argv) {
  mlir::registerAllPasses();
  nnforge::registerNNForgePasses();

  mlir::DialectRegistry registry;
  mlir::registerAllDialects(registry);
  mlir::registerAllExtensions(registry);
  // As mlir-opt does: gpu-module-to-binary (the CUDA pipeline's last step)
  // translates kernels to LLVM IR inside a pass.
  mlir::registerAllGPUToLLVMIRTranslations(registry);
  registry.insert<nnforge::nnf::NNFDialect>();
  nnforge::registerMPIMemoryEffects(registry);
  nnforge::registerReshapeShardingInterface(registry);

  return mlir::asMainReturnCode(mlir::MlirOptMain(
      argc, argv, "nnforge optimizer driver\n", registry));
}
