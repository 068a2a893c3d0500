//===- NNFPlugin.cpp - nnforge as a plugin of mlir-opt --------------------===//
//
// Load with `mlir-opt --load-dialect-plugin=P --load-pass-plugin=P`. Plugin
// passes are reached through `--pass-pipeline=...`: mlir-opt parses its
// command-line flags before plugins load.
//
//===----------------------------------------------------------------------===//

#include "mlir/Tools/Plugins/DialectPlugin.h"
#include "mlir/Tools/Plugins/PassPlugin.h"
#include "nnforge/Dialect/MPI/MPIMemoryEffects.h"
#include "nnforge/Dialect/NNF/NNFDialect.h"
#include "nnforge/Dialect/Tensor/ExtractSliceSharding.h"
#include "nnforge/Dialect/Tensor/ReshapeSharding.h"
#include "nnforge/Passes.h"
#include "llvm/Config/llvm-config.h"

// The library is built with hidden visibility; these are its entry points.
#define NNFORGE_PLUGIN_EXPORT __attribute__((visibility("default")))

extern "C" LLVM_ATTRIBUTE_WEAK NNFORGE_PLUGIN_EXPORT ::mlir::DialectPluginLibraryInfo
mlirGetDialectPluginInfo() {
  return {MLIR_PLUGIN_API_VERSION, "nnforge", LLVM_VERSION_STRING,
          [](mlir::DialectRegistry *registry) {
            registry->insert<nnforge::nnf::NNFDialect>();
            nnforge::registerMPIMemoryEffects(*registry);
            nnforge::registerExtractSliceShardingInterface(*registry);
            nnforge::registerReshapeShardingInterface(*registry);
          }};
}

extern "C" LLVM_ATTRIBUTE_WEAK NNFORGE_PLUGIN_EXPORT ::mlir::PassPluginLibraryInfo
mlirGetPassPluginInfo() {
  return {MLIR_PLUGIN_API_VERSION, "nnforge", LLVM_VERSION_STRING,
          [] { nnforge::registerNNForgePasses(); }};
}
