//===- ObjectFiles.h - LLVM-dialect modules to x86-64 object files --------===//
//
// nnforge's CPU code generation after MLIR: an LLVM-dialect module is
// translated to LLVM IR, its OpenMP calls pointed at nnforge's runtime
// (`nnforge_kmpc_*`), given the packed entry points MLIR's ExecutionEngine
// would add (`_mlir_<name>(void **)`), split into partitions of its functions,
// and the partitions are optimized (-O3) and compiled to object files by a
// few threads. One compilation serves both this machine (a model run
// in-process) and a named CPU (a model built for another machine).
//
//===----------------------------------------------------------------------===//

#ifndef NNFORGE_TARGET_CPU_OBJECTFILES_H
#define NNFORGE_TARGET_CPU_OBJECTFILES_H

#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <string>

namespace mlir {
class Operation;
} // namespace mlir

namespace nnforge {

/// The CPU code is generated for: an LLVM CPU name ("znver4") and feature
/// string ("+avx2,-avx512f"); both empty: this machine's CPU and features.
struct CpuTarget {
  std::string cpu;
  std::string features;
};

/// Compiles `module` (an LLVM-dialect module, verified) into object files
/// named `<prefix><index>.o`, each from a partition of the module's
/// functions, on `threads` threads (1: one object file, no partitions).
/// Returns the files' paths.
llvm::Expected<llvm::SmallVector<std::string>>
compileToObjectFiles(mlir::Operation *module, const CpuTarget &target,
                     unsigned threads, llvm::StringRef prefix);

} // namespace nnforge

#endif // NNFORGE_TARGET_CPU_OBJECTFILES_H
