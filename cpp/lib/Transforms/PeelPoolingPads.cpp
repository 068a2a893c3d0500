//===- PeelPoolingPads.cpp - poolings of padded inputs without the pad ----===//
//
// A pooling of a padded input (ResNet's 3x3 max pool after the stem) reads
// the padding only at the borders of its output, yet the padded tensor is
// written whole first: a copy of the input (3.2 MB a call for ResNet-18,
// 0.18 ms on 2 cores of the AMD EPYC Zen 4, more than the pooling itself).
// This pass splits the output into the box whose windows lie inside the
// input, pooled from a slice of the input as it is, and the border boxes
// around it, each pooled from a pad of the thin slice of the input it
// reads: only those slices are copied.
//
//===----------------------------------------------------------------------===//

#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Utils/StructuredOpsUtils.h"
#include "mlir/IR/PatternMatch.h"
#include "nnforge/Passes.h"

namespace nnforge {
#define GEN_PASS_DEF_NNFPEELPOOLINGPADS
#include "nnforge/Passes.h.inc"
} // namespace nnforge

using namespace mlir;

namespace {

/// One spatial dim of a pooling: the unpadded input's extent, its padding
/// before, the window and the output's extent.
struct Spatial {
  int64_t input, low, kernel, stride, dilation, output;

  /// The first output index whose window starts inside the input.
  int64_t interiorBegin() const { return llvm::divideCeil(low, stride); }
  /// One past the last output index whose window ends inside the input.
  int64_t interiorEnd() const {
    int64_t last = input - 1 + low - (kernel - 1) * dilation;
    return last < 0 ? 0 : std::min(output, last / stride + 1);
  }
};

/// A range of output indices, [first, second).
using Range = std::pair<int64_t, int64_t>;
/// A box of output indices: rows, columns.
using Box = std::array<Range, 2>;

/// The output boxes of a pooling over `dims`: the interior first, then the
/// rows above and below it (full width) and the columns left and right of
/// it, each at least `borderWidth` columns wide where the interior leaves
/// room (a box one column wide is pooled element by element); empty boxes
/// left out.
SmallVector<Box> outputBoxes(ArrayRef<Spatial> dims, int64_t borderWidth) {
  Range rows = {dims[0].interiorBegin(), dims[0].interiorEnd()};
  Range columns = {dims[1].interiorBegin(), dims[1].interiorEnd()};
  int64_t width = dims[1].output;
  if (columns.first > 0)
    columns.first =
        std::min(std::max(columns.first, borderWidth), columns.second);
  if (columns.second < width)
    columns.second =
        std::max(std::min(columns.second, width - borderWidth), columns.first);
  SmallVector<Box> boxes = {{rows, columns},
                            {Range{0, rows.first}, Range{0, width}},
                            {Range{rows.second, dims[0].output}, Range{0, width}},
                            {rows, Range{0, columns.first}},
                            {rows, Range{columns.second, width}}};
  return llvm::filter_to_vector(boxes, [](const Box &box) {
    return box[0].first < box[0].second && box[1].first < box[1].second;
  });
}

/// An NCHW pooling (max or sum) reading a constant pad of its spatial dims:
/// the pad and each spatial dim.
struct PaddedPooling {
  tensor::PadOp pad;
  SmallVector<Spatial, 2> dims;
};

std::optional<PaddedPooling> matchPaddedPooling(linalg::LinalgOp pooling) {
  if (!isa<linalg::PoolingNchwMaxOp, linalg::PoolingNchwSumOp>(pooling))
    return std::nullopt;
  auto pad = pooling->getOperand(0).getDefiningOp<tensor::PadOp>();
  if (!pad || !pad.getConstantPaddingValue() || !pad.getLow().empty() ||
      !pad.getHigh().empty())
    return std::nullopt;
  auto source = cast<RankedTensorType>(pad.getSource().getType());
  auto output = dyn_cast<RankedTensorType>(pooling->getResult(0).getType());
  auto window = dyn_cast<RankedTensorType>(pooling->getOperand(1).getType());
  if (!source.hasStaticShape() || !output || !output.hasStaticShape() ||
      !window || !window.hasStaticShape())
    return std::nullopt;
  ArrayRef<int64_t> low = pad.getStaticLow(), high = pad.getStaticHigh();
  if (low[0] || low[1] || high[0] || high[1])
    return std::nullopt; // pads the batch or the channels
  auto strides = pooling->getAttrOfType<DenseIntElementsAttr>("strides");
  auto dilations = pooling->getAttrOfType<DenseIntElementsAttr>("dilations");
  PaddedPooling match{pad, {}};
  for (int dim = 0; dim < 2; ++dim)
    match.dims.push_back({source.getDimSize(2 + dim), low[2 + dim],
                          window.getDimSize(dim),
                          strides.getValues<int64_t>()[dim],
                          dilations.getValues<int64_t>()[dim],
                          output.getDimSize(2 + dim)});
  // Some window wholly inside the input, or nothing to gain.
  for (const Spatial &dim : match.dims)
    if (dim.interiorBegin() >= dim.interiorEnd())
      return std::nullopt;
  return match;
}

/// Replaces `pooling` by a pooling per output box of `match`, each inserted
/// into the destination.
void peel(RewriterBase &rewriter, linalg::LinalgOp pooling,
          PaddedPooling &match, int64_t borderWidth) {
  rewriter.setInsertionPoint(pooling);
  Location loc = pooling.getLoc();
  Value input = match.pad.getSource();
  Value padding = match.pad.getConstantPaddingValue();
  auto outputType = cast<RankedTensorType>(pooling->getResult(0).getType());
  int64_t batch = outputType.getDimSize(0);
  int64_t channels = outputType.getDimSize(1);
  auto index = [&](int64_t value) -> OpFoldResult {
    return rewriter.getIndexAttr(value);
  };
  SmallVector<OpFoldResult> ones(4, index(1));
  Value result = pooling.getDpsInits()[0];
  for (const Box &box : outputBoxes(match.dims, borderWidth)) {
    // The input rows and columns the box's windows read, clipped to the
    // input, and the padding that makes up for the clipping.
    SmallVector<OpFoldResult> offsets = {index(0), index(0)};
    SmallVector<OpFoldResult> sizes = {index(batch), index(channels)};
    SmallVector<OpFoldResult> low = {index(0), index(0)};
    SmallVector<OpFoldResult> high = {index(0), index(0)};
    bool padded = false;
    for (auto [dim, range] : llvm::zip_equal(match.dims, box)) {
      int64_t begin = range.first * dim.stride - dim.low;
      int64_t end = (range.second - 1) * dim.stride +
                    (dim.kernel - 1) * dim.dilation + 1 - dim.low;
      int64_t first = std::max<int64_t>(begin, 0);
      int64_t last = std::min(end, dim.input);
      offsets.push_back(index(first));
      sizes.push_back(index(last - first));
      low.push_back(index(first - begin));
      high.push_back(index(end - last));
      padded |= first != begin || last != end;
    }
    Value windows = tensor::ExtractSliceOp::create(rewriter, loc, input,
                                                   offsets, sizes, ones);
    if (padded)
      windows = tensor::PadOp::create(rewriter, loc, Type(), windows, low,
                                      high, padding);
    SmallVector<OpFoldResult> outputOffsets = {
        index(0), index(0), index(box[0].first), index(box[1].first)};
    SmallVector<OpFoldResult> outputSizes = {
        index(batch), index(channels), index(box[0].second - box[0].first),
        index(box[1].second - box[1].first)};
    Value destination = tensor::ExtractSliceOp::create(
        rewriter, loc, result, outputOffsets, outputSizes, ones);
    Operation *part =
        clone(rewriter, pooling.getOperation(), {destination.getType()},
              {windows, pooling->getOperand(1), destination});
    result = tensor::InsertSliceOp::create(rewriter, loc, part->getResult(0),
                                           result, outputOffsets, outputSizes,
                                           ones);
  }
  rewriter.replaceOp(pooling, result);
  if (match.pad->use_empty())
    rewriter.eraseOp(match.pad);
}

struct NNFPeelPoolingPadsPass
    : nnforge::impl::NNFPeelPoolingPadsBase<NNFPeelPoolingPadsPass> {
  using Base::Base;

  // Each pooling once (not a rewrite pattern): its widened border boxes
  // have windows inside the input too.
  void runOnOperation() override {
    SmallVector<std::pair<linalg::LinalgOp, PaddedPooling>> poolings;
    getOperation()->walk([&](linalg::LinalgOp op) {
      if (std::optional<PaddedPooling> match = matchPaddedPooling(op))
        poolings.emplace_back(op, *match);
    });
    IRRewriter rewriter(&getContext());
    for (auto &[pooling, match] : poolings)
      peel(rewriter, pooling, match, borderWidth);
  }
};

} // namespace
