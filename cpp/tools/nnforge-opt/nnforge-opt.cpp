//===- nnforge-opt.cpp - mlir-opt with nnforge's dialects and passes ------===//
//
// mlir-opt's driver (MlirOptMain) with nnforge's dialect, passes and
// interfaces registered, run in a child process that Supervisor.h watches:
// an upstream assertion on bad input ends in one error line and status 1,
// not in a crash of the tool.
//
//===----------------------------------------------------------------------===//

#include "Supervisor.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Support/FileUtilities.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "nnforge/Dialect/MPI/MPIMemoryEffects.h"
#include "nnforge/Dialect/NNF/NNFDialect.h"
#include "nnforge/Dialect/Tensor/ExtractSliceSharding.h"
#include "nnforge/Dialect/Tensor/ReshapeSharding.h"
#include "nnforge/Passes.h"
#include "llvm/Support/ErrorHandling.h"
#include "llvm/Support/ManagedStatic.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Process.h"
#include "llvm/Support/Signals.h"
#include "llvm/Support/ToolOutputFile.h"

#include <cstdio>

namespace {

/// mlir::MlirOptMain(argc, argv, toolName, registry), noting its progress:
/// the files, when parsing starts and which passes run.
int optMain(int argc, char **argv, nnforge::Progress &progress) {
  // What llvm::InitLLVM does, less the stack-trace printer: a crash's report
  // is the assertion's line and the supervisor's error.
  llvm::llvm_shutdown_obj shutdown;
  llvm::sys::SetOneShotPipeSignalFunction(
      llvm::sys::DefaultOneShotPipeSignalHandler);
  llvm::install_out_of_memory_new_handler();

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
  nnforge::registerExtractSliceShardingInterface(registry);
  nnforge::registerReshapeShardingInterface(registry);

  auto [inputFilename, outputFilename] = mlir::registerAndParseCLIOptions(
      argc, argv, "nnforge optimizer driver\n", registry);
  mlir::MlirOptMainConfig config = mlir::MlirOptMainConfig::createFromCLOptions();
  if (config.shouldShowDialects()) {
    llvm::outs() << "Available Dialects: ";
    llvm::interleave(registry.getDialectNames(), llvm::outs(), ",");
    llvm::outs() << "\n";
    return 0;
  }
  if (config.shouldListPasses()) {
    mlir::printRegisteredPasses();
    return 0;
  }
  if (inputFilename == "-" &&
      llvm::sys::Process::FileDescriptorIsDisplayed(fileno(stdin)))
    llvm::errs() << "(processing input from stdin now, hit ctrl-c/ctrl-d to "
                    "interrupt)\n";

  std::string errorMessage;
  auto input = mlir::openInputFile(inputFilename, &errorMessage);
  if (!input) {
    llvm::errs() << errorMessage << "\n";
    return 1;
  }
  auto output = mlir::openOutputFile(outputFilename, &errorMessage);
  if (!output) {
    llvm::errs() << errorMessage << "\n";
    return 1;
  }
  nnforge::noteFiles(progress, inputFilename, outputFilename,
                     !config.inputSplitMarker().empty());

  // The pipeline the flags name, then the instrumentation noting its passes.
  mlir::MlirOptMainConfig flags = config;
  config.setPassPipelineSetupFn(
      [flags, &progress](mlir::PassManager &pm) -> llvm::LogicalResult {
        if (mlir::failed(flags.setupPassPipeline(pm)))
          return mlir::failure();
        pm.addInstrumentation(nnforge::createProgressInstrumentation(progress));
        nnforge::notePipeline(progress, pm.size());
        return mlir::success();
      });
  nnforge::noteParsing(progress);
  if (mlir::failed(
          mlir::MlirOptMain(output->os(), std::move(input), registry, config)))
    return 1;
  output->keep();
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  return nnforge::runSupervised(
      [&](nnforge::Progress &progress) { return optMain(argc, argv, progress); });
}
