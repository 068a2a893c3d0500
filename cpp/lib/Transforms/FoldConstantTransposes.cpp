//===- FoldConstantTransposes.cpp - transpose constants at compile time ---===//
//
// Importers store weights as `dense_resource` blobs and express a layer's
// use of `W^T` as a `linalg.transpose` of that constant, which upstream's
// linalg constant folding (inline dense elements only) leaves for run time.
// This pass permutes the bytes of such constants once, when compiling.
// Element reads (`tensor.extract`) of a constant transposed follow it, so
// that a table read both ways (an embedding tied to the output projection)
// is stored once. A constant transposed records its source (an importer's
// weight, in memory anyway), which `nnf-pack-weights` packs from once the
// transposed copy is freed.
//
//===----------------------------------------------------------------------===//

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "nnforge/Passes.h"
#include "nnforge/Transforms/ConstantData.h"

#include <algorithm>
#include <cstring>

namespace nnforge {
#define GEN_PASS_DEF_NNFFOLDCONSTANTTRANSPOSES
#include "nnforge/Passes.h.inc"
} // namespace nnforge

using namespace mlir;

namespace {

/// Copies one element of `size` bytes (a constant size for the common
/// ones, so that the copy is a move).
inline void copyElement(char *to, const char *from, size_t size) {
  switch (size) {
  case 1:
    *to = *from;
    return;
  case 2:
    std::memcpy(to, from, 2);
    return;
  case 4:
    std::memcpy(to, from, 4);
    return;
  case 8:
    std::memcpy(to, from, 8);
    return;
  default:
    std::memcpy(to, from, size);
  }
}

/// `to` = `from` ([rows, columns] elements of `size` bytes) transposed,
/// in square blocks that stay in the cache while both are walked.
void transposeMatrix(const char *from, char *to, int64_t rows,
                     int64_t columns, size_t size) {
  constexpr int64_t kBlock = 32;
  for (int64_t r0 = 0; r0 < rows; r0 += kBlock)
    for (int64_t c0 = 0; c0 < columns; c0 += kBlock)
      for (int64_t c = c0, cEnd = std::min(c0 + kBlock, columns); c < cEnd;
           ++c)
        for (int64_t r = r0, rEnd = std::min(r0 + kBlock, rows); r < rEnd;
             ++r)
          copyElement(to + (c * rows + r) * size,
                      from + (r * columns + c) * size, size);
}

/// `to` = `from` (of `shape`, elements of `size` bytes) permuted:
/// result[i_0, ..., i_r] = input[j] with j[permutation[d]] = i_d. The
/// common case, the innermost two dimensions swapped, goes a matrix at a
/// time; others walk the result in order.
void transpose(const char *from, char *to, ArrayRef<int64_t> shape,
               ArrayRef<int64_t> permutation, size_t size) {
  int64_t rank = shape.size();
  bool swapsLastTwo = rank >= 2 && permutation[rank - 1] == rank - 2 &&
                      permutation[rank - 2] == rank - 1;
  for (int64_t d = 0; swapsLastTwo && d + 2 < rank; ++d)
    swapsLastTwo = permutation[d] == d;
  if (swapsLastTwo) {
    int64_t rows = shape[rank - 2], columns = shape[rank - 1];
    int64_t matrices = 1;
    for (int64_t d = 0; d + 2 < rank; ++d)
      matrices *= shape[d];
    size_t matrixBytes = rows * columns * size;
    for (int64_t m = 0; m < matrices; ++m)
      transposeMatrix(from + m * matrixBytes, to + m * matrixBytes, rows,
                      columns, size);
    return;
  }
  SmallVector<int64_t> inputStrides(rank, 1);
  for (int64_t d = rank - 2; d >= 0; --d)
    inputStrides[d] = inputStrides[d + 1] * shape[d + 1];
  SmallVector<int64_t> resultShape(rank), stride(rank);
  int64_t count = 1;
  for (int64_t d = 0; d < rank; ++d) {
    resultShape[d] = shape[permutation[d]];
    stride[d] = inputStrides[permutation[d]];
    count *= resultShape[d];
  }
  // The source offset follows the result index as it advances.
  SmallVector<int64_t> index(rank, 0);
  int64_t source = 0;
  for (int64_t linear = 0; linear < count; ++linear) {
    copyElement(to + linear * size, from + source * size, size);
    for (int64_t d = rank - 1; d >= 0; --d) {
      source += stride[d];
      if (++index[d] < resultShape[d])
        break;
      source -= stride[d] * resultShape[d];
      index[d] = 0;
    }
  }
}

struct FoldConstantTranspose : OpRewritePattern<linalg::TransposeOp> {
  FoldConstantTranspose(MLIRContext *context,
                        SmallVectorImpl<Attribute> &consumed)
      : OpRewritePattern(context), consumed(consumed) {}

  /// The constants transposed (freed at the end where no op uses them).
  SmallVectorImpl<Attribute> &consumed;

  LogicalResult matchAndRewrite(linalg::TransposeOp op,
                                PatternRewriter &rewriter) const override {
    if (!op.hasPureTensorSemantics())
      return failure();
    auto source = op.getInput().getDefiningOp<arith::ConstantOp>();
    if (!source)
      return rewriter.notifyMatchFailure(op, "input is not a constant");
    auto inputType = cast<RankedTensorType>(op.getInput().getType());
    auto resultType = cast<RankedTensorType>(op.getResult()[0].getType());
    unsigned bits = inputType.getElementTypeBitWidth();
    if (!inputType.hasStaticShape() || bits % 8 != 0)
      return rewriter.notifyMatchFailure(op, "dynamic or sub-byte constant");
    std::optional<ArrayRef<char>> bytes = nnforge::rawConstantBytes(source.getValue());
    size_t elementBytes = bits / 8;
    int64_t count = inputType.getNumElements();
    if (!bytes || bytes->size() != static_cast<size_t>(count) * elementBytes)
      return rewriter.notifyMatchFailure(op, "constant data not readable");

    ArrayRef<int64_t> permutation = op.getPermutation();
    Attribute folded = nnforge::newConstantData(
        resultType, "transposed", [&](MutableArrayRef<char> transposed) {
          transpose(bytes->data(), transposed.data(), inputType.getShape(),
                    permutation, elementBytes);
        });
    consumed.push_back(source.getValue());
    // Where the source's other uses all read one element, they read the
    // transposed constant instead (defined where the source is, which
    // dominates them), and the source is left unused.
    bool readsFollow = llvm::all_of(source->getUsers(), [&](Operation *user) {
      return user == op || isa<tensor::ExtractOp>(user);
    });
    if (readsFollow)
      rewriter.setInsertionPointAfter(source);
    auto transposed = arith::ConstantOp::create(rewriter, op.getLoc(), resultType,
                                                cast<TypedAttr>(folded));
    nnforge::recordTransposeSource(transposed, source.getValue(), permutation);
    if (readsFollow) {
      for (Operation *user : llvm::to_vector(source->getUsers())) {
        auto extract = dyn_cast<tensor::ExtractOp>(user);
        if (!extract)
          continue;
        // input[j] = result[i] with i_d = j[permutation[d]].
        SmallVector<Value> indices;
        for (int64_t d : permutation)
          indices.push_back(extract.getIndices()[d]);
        rewriter.modifyOpInPlace(extract, [&] {
          extract.getTensorMutable().assign(transposed);
          extract.getIndicesMutable().assign(indices);
        });
      }
    }
    rewriter.replaceOp(op, transposed.getResult());
    return success();
  }
};

struct NNFFoldConstantTransposesPass
    : nnforge::impl::NNFFoldConstantTransposesBase<
          NNFFoldConstantTransposesPass> {
  void runOnOperation() override {
    SmallVector<Attribute> consumed;
    RewritePatternSet patterns(&getContext());
    patterns.add<FoldConstantTranspose>(&getContext(), consumed);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      return signalPassFailure();
    nnforge::releaseUnusedConstants(getOperation(), consumed);
  }
};

} // namespace
