//===- Supervisor.h - nnforge-opt's work in a supervised child --*- C++ -*-===//
//
// MLIR's parsers, verifiers and passes assert (abort) on some invalid inputs:
// upstream defects that the tool must not pass on to its user as a crash
// (`dimensions = [nan]` in linalg.broadcast, a convolution's dilation of
// 2^63 - 1). nnforge-opt does its work in a child process; when the child
// dies on a signal, the parent prints one error naming what the child was
// doing (parsing/verifying the input, which pass on which op, printing the
// result) and exits 1.
//
// A child rather than llvm::CrashRecoveryContext: crash recovery only catches
// a crash on the thread that enabled it, and MLIR verifies and runs passes on
// its thread pool; a recovered process also holds whatever locks and state
// the aborted code left behind.
//
//===----------------------------------------------------------------------===//

#ifndef NNFORGE_TOOLS_NNFORGE_OPT_SUPERVISOR_H
#define NNFORGE_TOOLS_NNFORGE_OPT_SUPERVISOR_H

#include "mlir/Pass/PassInstrumentation.h"
#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/ADT/StringRef.h"

#include <memory>

namespace nnforge {

/// What the supervised child is doing, in memory its parent reads after the
/// child died.
class Progress;

/// Notes the input and output files (after the output file was created).
void noteFiles(Progress &progress, llvm::StringRef input, llvm::StringRef output,
               bool splitInput);
/// Notes that the input is being parsed and verified.
void noteParsing(Progress &progress);
/// Notes that a pipeline of `topLevelPasses` passes starts (after parsing).
void notePipeline(Progress &progress, unsigned topLevelPasses);

/// A pass instrumentation recording in `progress` the pass each thread runs.
std::unique_ptr<mlir::PassInstrumentation>
createProgressInstrumentation(Progress &progress);

/// Runs `work` in a child process and returns its exit status. A child that
/// dies on a signal it was not sent by this process's caller becomes one
/// error on stderr ("nnforge-opt: error: MLIR aborted (SIGABRT) while
/// parsing/verifying in.mlir ...") and status 1. Where no child can be
/// started, runs `work` in this process.
int runSupervised(llvm::function_ref<int(Progress &)> work);

} // namespace nnforge

#endif // NNFORGE_TOOLS_NNFORGE_OPT_SUPERVISOR_H
