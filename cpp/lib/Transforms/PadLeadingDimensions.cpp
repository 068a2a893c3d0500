//===- PadLeadingDimensions.cpp - row strides free of cache-set conflicts -===//
//
// A matmul's code reads its right operand down a tile of columns, a row
// after another. With rows a multiple of 4 KiB apart (1024 or 2048 f32),
// every row of the tile maps to the same L1 set: measured here, a
// 2048^2 matmul on two threads ran at 280-290 GFLOP/s with the right
// operand's rows 8 KiB apart and 360 with them 8 KiB + 64 bytes apart.
// BLAS libraries avoid this by packing; this pass gives such operands the
// padded stride (a leading dimension one cache line longer) instead.
//
//===----------------------------------------------------------------------===//

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "nnforge/Dialect/NNF/NNFOps.h"
#include "nnforge/Passes.h"
#include "nnforge/Transforms/ConstantData.h"

#include <cstring>
#include <vector>

namespace nnforge {
#define GEN_PASS_DEF_NNFPADLEADINGDIMENSIONS
#include "nnforge/Passes.h.inc"
} // namespace nnforge

using namespace mlir;

namespace {

/// Rows this many bytes apart (or a multiple) all map to the same L1 set
/// (64 sets of 64-byte lines). Rows a smaller power of two apart spread over
/// several sets: measured, 512^2 matmuls (2 KiB rows) and ResNet-18's
/// im2col matrix of the first layer (49 KiB rows) gained nothing from padding.
constexpr int64_t kConflictingRowBytes = 4096;
/// A function argument is copied (once per call) only where each of its
/// elements is read by at least this many of the contraction's iterations
/// (a matmul's m, for its right operand). Measured on the AMD EPYC Zen 4,
/// one thread, [m, 1024] x [1024, 1024] with the right operand an argument:
/// the copy cost more than the padding saved at m = 64 (1.44 against
/// 1.31 ms) and 128 (2.66 against 2.57 ms), and paid from 256 (5.34
/// against 5.61 ms) on; the MLP 64x1024->4096->1024 ran 14.1 ms without its
/// two 16 MiB copies and 16.1 ms with them.
constexpr int64_t kMinArgumentReuse = 256;
/// What each row is padded by: one cache line, which moves the next row to
/// the next set.
constexpr int64_t kCacheLineBytes = 64;

int64_t elementBytes(RankedTensorType type) {
  return type.getElementTypeBitWidth() / 8;
}

/// Whether rows of `type` are a conflicting distance apart in a tensor of
/// at least `minBytes`.
bool hasConflictingRows(RankedTensorType type, int64_t minBytes) {
  if (!type.hasStaticShape() || type.getRank() < 2 ||
      type.getElementTypeBitWidth() % 8 != 0 ||
      kCacheLineBytes % elementBytes(type) != 0)
    return false;
  int64_t rowBytes = type.getShape().back() * elementBytes(type);
  return rowBytes % kConflictingRowBytes == 0 &&
         type.getNumElements() * elementBytes(type) >= minBytes;
}

/// Whether `op` reads `operand` as vectors along its rows: the operand's
/// innermost dimension is a parallel loop of the op (a matmul's n), not a
/// reduction (k, whose elements are broadcast one at a time).
bool isReadAlongRows(linalg::LinalgOp op, OpOperand &operand) {
  AffineMap map = op.getMatchingIndexingMap(&operand);
  if (map.getNumResults() < 2)
    return false;
  auto innermost = dyn_cast<AffineDimExpr>(map.getResults().back());
  return innermost && op.getIteratorTypesArray()[innermost.getPosition()] ==
                          utils::IteratorType::parallel;
}

/// How many of `op`'s iterations read each element of `operand`: the
/// product of the loops its indexing map does not use (for a matmul's
/// right operand, m); 0 where one of them is dynamic.
int64_t readsPerElement(linalg::LinalgOp op, OpOperand &operand) {
  AffineMap map = op.getMatchingIndexingMap(&operand);
  int64_t reads = 1;
  for (auto [loop, size] : llvm::enumerate(op.getStaticLoopRanges())) {
    if (map.isFunctionOfDim(loop))
      continue;
    if (ShapedType::isDynamic(size))
      return 0;
    reads *= size;
  }
  return reads;
}

/// `type` with its innermost dimension one cache line longer.
RankedTensorType widened(RankedTensorType type) {
  SmallVector<int64_t> shape(type.getShape());
  shape.back() += kCacheLineBytes / elementBytes(type);
  return RankedTensorType::get(shape, type.getElementType());
}

/// The leading `type`-shaped slice of `wide`.
Value leadingSlice(OpBuilder &b, Location loc, Value wide,
                   RankedTensorType type) {
  int64_t rank = type.getRank();
  SmallVector<OpFoldResult> offsets(rank, b.getIndexAttr(0));
  SmallVector<OpFoldResult> strides(rank, b.getIndexAttr(1));
  SmallVector<OpFoldResult> sizes;
  for (int64_t size : type.getShape())
    sizes.push_back(b.getIndexAttr(size));
  return tensor::ExtractSliceOp::create(b, loc, type, wide, offsets, sizes,
                                        strides);
}

/// A `type`-shaped slice of a fresh, wider tensor.
Value paddedDestination(OpBuilder &b, Location loc, RankedTensorType type) {
  RankedTensorType wide = widened(type);
  Value empty = tensor::EmptyOp::create(b, loc, wide.getShape(),
                                        wide.getElementType());
  return leadingSlice(b, loc, empty, type);
}

/// Whether `value` already is, or is written into, a slice of a wider
/// tensor (this pass ran before).
bool isPaddedView(Value value) {
  auto slice = value.getDefiningOp<tensor::ExtractSliceOp>();
  if (auto producer = value.getDefiningOp<DestinationStyleOpInterface>();
      producer && producer.getNumDpsInits() == 1)
    slice = producer.getDpsInitOperand(0)->get()
                .getDefiningOp<tensor::ExtractSliceOp>();
  return slice && slice.getSourceType().getShape() !=
                      slice.getResultType().getShape();
}

/// The constant `constant` stored with padded rows, and its slice; null if
/// its data cannot be read.
Value paddedConstant(OpBuilder &b, arith::ConstantOp constant) {
  auto type = cast<RankedTensorType>(constant.getType());
  std::optional<ArrayRef<char>> bytes =
      nnforge::rawConstantBytes(constant.getValue());
  size_t size = type.getNumElements() * elementBytes(type);
  if (!bytes || bytes->size() != size)
    return nullptr;
  RankedTensorType wide = widened(type);
  size_t rowBytes = type.getShape().back() * elementBytes(type);
  size_t wideRowBytes = wide.getShape().back() * elementBytes(type);
  Attribute padded = nnforge::newConstantData(
      wide, "padded", [&](MutableArrayRef<char> out) {
        std::memset(out.data(), 0, out.size());
        for (size_t row = 0, rows = size / rowBytes; row < rows; ++row)
          std::memcpy(out.data() + row * wideRowBytes,
                      bytes->data() + row * rowBytes, rowBytes);
      });
  b.setInsertionPointAfter(constant);
  Value wideConstant = arith::ConstantOp::create(b, constant.getLoc(), wide,
                                                 cast<TypedAttr>(padded));
  return leadingSlice(b, constant.getLoc(), wideConstant, type);
}

/// `value` (not yet padded) with padded rows; null where that would not
/// pay: a constant whose data is not readable, a value computed by
/// something other than a linalg op into a fresh tensor (a reshaped im2col
/// matrix: copying it again would cost about what the padding saves), or
/// an argument whose elements are each read fewer than kMinArgumentReuse
/// times (`reads`), or any argument unless `copyArguments`.
Value padded(OpBuilder &b, Value value, int64_t reads, bool copyArguments) {
  auto type = cast<RankedTensorType>(value.getType());
  if (auto constant = value.getDefiningOp<arith::ConstantOp>())
    return paddedConstant(b, constant);
  // A linalg op filling a fresh tensor writes into the padded one instead.
  if (auto producer = value.getDefiningOp<linalg::LinalgOp>();
      producer && producer->getNumResults() == 1 &&
      producer.hasPureTensorSemantics()) {
    OpOperand *init = producer.getDpsInitOperand(0);
    auto empty = init->get().getDefiningOp<tensor::EmptyOp>();
    if (empty && empty->hasOneUse()) {
      b.setInsertionPoint(producer);
      init->set(paddedDestination(b, producer->getLoc(), type));
      return value;
    }
  }
  // An argument is copied once, on entry, where it is read often enough.
  if (!isa<BlockArgument>(value) || !copyArguments || reads < kMinArgumentReuse)
    return nullptr;
  b.setInsertionPointAfterValue(value);
  Location loc = value.getLoc();
  return linalg::CopyOp::create(b, loc, value,
                                paddedDestination(b, loc, type))
      .getResult(0);
}

struct NNFPadLeadingDimensionsPass
    : nnforge::impl::NNFPadLeadingDimensionsBase<NNFPadLeadingDimensionsPass> {
  using Base::Base;

  void runOnOperation() override {
    // Each operand to pad: its use outside a dispatch region (whose operands
    // are padded outside, once per call).
    SmallVector<OpOperand *> uses;
    // How often each value's contractions read each of its elements (the most
    // over its uses).
    DenseMap<Value, int64_t> reads;
    getOperation()->walk([&](linalg::LinalgOp op) {
      if (!op.hasPureTensorSemantics() ||
          !linalg::isaContractionOpInterface(op))
        return;
      for (OpOperand *operand : op.getDpsInputOperands()) {
        auto type = dyn_cast<RankedTensorType>(operand->get().getType());
        if (!type || !hasConflictingRows(type, minBytes) ||
            !isReadAlongRows(op, *operand))
          continue;
        OpOperand *use = operand;
        if (auto argument = dyn_cast<BlockArgument>(operand->get()))
          if (auto dispatch = dyn_cast<nnforge::nnf::DispatchOp>(
                  argument.getOwner()->getParentOp()))
            use = &dispatch->getOpOperand(argument.getArgNumber());
        uses.push_back(use);
        int64_t &most = reads[use->get()];
        most = std::max(most, readsPerElement(op, *operand));
      }
    });
    OpBuilder b(&getContext());
    DenseMap<Value, Value> paddedValues;
    for (OpOperand *use : uses) {
      Value value = use->get();
      if (isPaddedView(value))
        continue;
      auto [known, inserted] = paddedValues.try_emplace(value);
      if (inserted)
        known->second = padded(b, value, reads.lookup(value), copyArguments);
      if (known->second)
        use->set(known->second);
    }
    // Constants padded and no longer used: their data is freed.
    SmallVector<Attribute> consumed;
    for (auto [value, padding] : paddedValues)
      if (auto constant = value.getDefiningOp<arith::ConstantOp>();
          constant && padding && value.use_empty()) {
        consumed.push_back(constant.getValue());
        constant->erase();
      }
    nnforge::releaseUnusedConstants(getOperation(), consumed);
  }
};

} // namespace
