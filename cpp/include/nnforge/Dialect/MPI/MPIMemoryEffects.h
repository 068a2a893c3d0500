//===- MPIMemoryEffects.h - memory effects of mpi ops -----------*- C++ -*-===//

#ifndef NNFORGE_DIALECT_MPI_MPIMEMORYEFFECTS_H
#define NNFORGE_DIALECT_MPI_MPIMEMORYEFFECTS_H

#include "mlir/IR/DialectRegistry.h"

namespace nnforge {

/// Gives the `mpi` ops that read or write buffers (allreduce, send, recv)
/// the MemoryEffectOpInterface they lack in MLIR 22.1.8, so that buffer
/// deallocation (which refuses ops with unknown effects on memrefs) and the
/// other passes between convert-shard-to-mpi and the LLVM lowering accept
/// them.
void registerMPIMemoryEffects(mlir::DialectRegistry &registry);

} // namespace nnforge

#endif // NNFORGE_DIALECT_MPI_MPIMEMORYEFFECTS_H
