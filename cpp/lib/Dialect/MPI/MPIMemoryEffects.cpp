//===- MPIMemoryEffects.cpp - memory effects of mpi ops -------------------===//
//
// MLIR 22.1.8 declares no memory effects on the mpi ops that take buffers.
// convert-shard-to-mpi emits them on memrefs inside tensor code, and the
// ownership-based buffer deallocation run after bufferization fails on
// them ("ops with unknown memory side effects are not supported"). These
// external models say what each op does: it reads its send buffer and
// writes its receive buffer; every op also has a generic effect on the
// default resource, so that none is reordered or erased (they communicate).
//
//===----------------------------------------------------------------------===//

#include "nnforge/Dialect/MPI/MPIMemoryEffects.h"

#include "mlir/Dialect/MPI/IR/MPI.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

using namespace mlir;

namespace {

using Effects = SmallVectorImpl<SideEffects::EffectInstance<MemoryEffects::Effect>>;

template <typename Op>
struct BufferEffects
    : public MemoryEffectOpInterface::ExternalModel<BufferEffects<Op>, Op> {
  void getEffects(Operation *op, Effects &effects) const {
    auto concrete = cast<Op>(op);
    if constexpr (std::is_same_v<Op, mpi::AllReduceOp>) {
      effects.emplace_back(MemoryEffects::Read::get(),
                           &concrete.getSendbufMutable());
      effects.emplace_back(MemoryEffects::Write::get(),
                           &concrete.getRecvbufMutable());
    } else if constexpr (std::is_same_v<Op, mpi::SendOp>) {
      effects.emplace_back(MemoryEffects::Read::get(), &concrete.getRefMutable());
    } else {
      effects.emplace_back(MemoryEffects::Write::get(),
                           &concrete.getRefMutable());
    }
    // Communication: neither reordered against other effects nor erased.
    effects.emplace_back(MemoryEffects::Write::get());
  }
};

} // namespace

void nnforge::registerMPIMemoryEffects(DialectRegistry &registry) {
  registry.addExtension(+[](MLIRContext *context, mpi::MPIDialect *) {
    mpi::AllReduceOp::attachInterface<BufferEffects<mpi::AllReduceOp>>(
        *context);
    mpi::SendOp::attachInterface<BufferEffects<mpi::SendOp>>(*context);
    mpi::RecvOp::attachInterface<BufferEffects<mpi::RecvOp>>(*context);
  });
}
