//===- PackWeights.cpp - constant right operands stored as column panels ---===//
//
// A contraction's code reads its right operand (the [K, N] weight of a
// linear layer) as one row segment of a register tile's columns per k step.
// Rows of a large weight are far apart, so each step reads another page,
// and hardware prefetchers stop at page boundaries: a weight streamed from
// memory stalls on every row. Measured here, x[64, 1024] @ W[1024, 4096] on
// one thread: 161 GFLOP/s with W as is, 194 with W stored as panels of 32
// columns, [N/32, K, 32], each register tile's operand one contiguous run.
// Constants are packed once, when compiling; operands computed at run time
// on every call, where enough rows reuse them to pay for the copy. The
// contraction becomes a generic reading the panels, its result
// [.., N/32, 32] collapsed back. Element reads (`tensor.extract`) of a
// constant packed read the panels too, so that it is stored once. A
// constant that is a transposed copy of a weight (nnf-fold-constant-
// transposes) is freed before its panels are written, from the weight.
// nnf-pack-layout-free-arguments rewrites the same contractions for
// arguments whose caller stores them as panels (a rank's weight slices):
// the argument's type becomes the panels', with no copy per call.
//
//===----------------------------------------------------------------------===//

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Interfaces/FunctionInterfaces.h"
#include "nnforge/Passes.h"
#include "nnforge/Transforms/ConstantData.h"

#include "llvm/ADT/MapVector.h"
#include "llvm/ADT/Sequence.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace nnforge {
#define GEN_PASS_DEF_NNFPACKWEIGHTS
#define GEN_PASS_DEF_NNFPACKLAYOUTFREEARGUMENTS
#include "nnforge/Passes.h.inc"
} // namespace nnforge

using namespace mlir;

namespace {

/// A contraction whose right operand can be packed (the input indexed by
/// the output's innermost (n) loop), or a convolution whose filter can be,
/// into panels of `panel` columns.
struct PackableOp {
  linalg::LinalgOp op;
  OpOperand *weight;
  unsigned nLoop;
  int64_t panel;
};

/// How many times the contraction reads each element of its `weight`: the
/// product of the loops its output has and the weight lacks (a matmul's m).
int64_t reuseOf(linalg::LinalgOp op, OpOperand *weight) {
  AffineMap outputMap = op.getMatchingIndexingMap(op.getDpsInitOperand(0));
  AffineMap weightMap = op.getMatchingIndexingMap(weight);
  SmallVector<int64_t> sizes = op.getStaticLoopRanges();
  int64_t reuse = 1;
  for (AffineExpr result : outputMap.getResults()) {
    auto dim = dyn_cast<AffineDimExpr>(result);
    if (!dim || weightMap.isFunctionOfDim(dim.getPosition()))
      continue;
    int64_t size = sizes[dim.getPosition()];
    reuse = ShapedType::isDynamic(size) ? 0 : reuse * size;
  }
  return reuse;
}

/// The weight of `op` if it can be packed into panels of `panel` columns
/// and holds at least `minBytes`, whatever defines it.
std::optional<PackableOp> packable(linalg::LinalgOp op,
                                            int64_t panel, int64_t minBytes) {
  if (!op.hasPureTensorSemantics() || op.getNumDpsInits() != 1 ||
      op.getNumDpsInputs() != 2 || !linalg::isaContractionOpInterface(op))
    return std::nullopt;
  AffineMap outputMap = op.getMatchingIndexingMap(op.getDpsInitOperand(0));
  auto nExpr = dyn_cast_or_null<AffineDimExpr>(
      outputMap.getNumResults() ? outputMap.getResults().back() : AffineExpr());
  if (!nExpr)
    return std::nullopt;
  unsigned nLoop = nExpr.getPosition();
  OpOperand *weight = nullptr;
  for (OpOperand *input : op.getDpsInputOperands()) {
    AffineMap map = op.getMatchingIndexingMap(input);
    if (!map.isFunctionOfDim(nLoop))
      continue;
    if (weight || !map.isProjectedPermutation() ||
        map.getResults().back() != nExpr)
      return std::nullopt; // n read by both inputs, or not innermost
    weight = input;
  }
  if (!weight)
    return std::nullopt;
  auto type = cast<RankedTensorType>(weight->get().getType());
  if (!type.hasStaticShape() || type.getRank() < 2 ||
      type.getElementTypeBitWidth() % 8 != 0)
    return std::nullopt;
  int64_t columns = type.getShape().back();
  if (columns <= panel || columns % panel != 0 ||
      type.getNumElements() * type.getElementTypeBitWidth() / 8 < minBytes)
    return std::nullopt;
  return PackableOp{op, weight, nLoop, panel};
}

/// The filter of `op` if it is a constant to be packed into panels of
/// `panel` output channels: an NHWC/HWCF convolution computed from its
/// input directly (unit strides and dilations, static shapes, one element
/// type: what nnf-conv-to-im2col leaves for that) whose filter, of at least
/// `minBytes`, has more than one panel of output channels.
std::optional<PackableOp>
packableConvolution(Operation *op, int64_t panel, int64_t minBytes) {
  auto conv = dyn_cast<linalg::Conv2DNhwcHwcfOp>(op);
  if (!conv || !conv.hasPureTensorSemantics() ||
      !llvm::all_of(conv.getStrides().getValues<int64_t>(),
                    [](int64_t s) { return s == 1; }) ||
      !llvm::all_of(conv.getDilations().getValues<int64_t>(),
                    [](int64_t d) { return d == 1; }))
    return std::nullopt;
  Type element = getElementTypeOrSelf(conv->getOperand(0).getType());
  for (Value operand : conv->getOperands()) {
    auto type = cast<RankedTensorType>(operand.getType());
    if (!type.hasStaticShape() || type.getElementType() != element)
      return std::nullopt;
  }
  OpOperand *filter = conv.getDpsInputOperand(1);
  auto type = cast<RankedTensorType>(filter->get().getType());
  int64_t channels = type.getShape().back();
  if (!filter->get().getDefiningOp<arith::ConstantOp>() ||
      element.getIntOrFloatBitWidth() % 8 != 0 || channels <= panel ||
      channels % panel != 0 ||
      type.getNumElements() * element.getIntOrFloatBitWidth() / 8 < minBytes)
    return std::nullopt;
  // Loops (n, oh, ow, f, kh, kw, c): the output channels are loop 3.
  return PackableOp{conv, filter, 3, panel};
}

/// Replaces each `tensor.collapse_shape` of a constant that only packable
/// contractions read as their weight with a constant of the collapsed type
/// (the same bytes, row-major): nnf-conv-to-im2col hands a convolution's
/// filter to its contraction so, and only constants are packed when
/// compiling. The constant collapsed is freed if nothing else uses it.
void foldCollapsedWeights(Operation *root, int64_t panel, int64_t minBytes) {
  SmallVector<tensor::CollapseShapeOp> collapses;
  root->walk([&](tensor::CollapseShapeOp collapse) {
    if (!collapse.getSrc().getDefiningOp<arith::ConstantOp>() ||
        collapse.getResult().use_empty())
      return;
    for (OpOperand &use : collapse.getResult().getUses()) {
      auto op = dyn_cast<linalg::LinalgOp>(use.getOwner());
      std::optional<PackableOp> candidate =
          op ? packable(op, panel, minBytes) : std::nullopt;
      if (!candidate || candidate->weight != &use)
        return;
    }
    collapses.push_back(collapse);
  });
  SmallVector<Attribute> released;
  for (tensor::CollapseShapeOp collapse : collapses) {
    auto constant = collapse.getSrc().getDefiningOp<arith::ConstantOp>();
    std::optional<ArrayRef<char>> bytes =
        nnforge::rawConstantBytes(constant.getValue());
    RankedTensorType type = collapse.getResultType();
    if (!bytes || static_cast<int64_t>(bytes->size()) !=
                      type.getNumElements() * type.getElementTypeBitWidth() / 8)
      continue; // a splat, or data not at hand
    OpBuilder builder(collapse);
    Attribute value = nnforge::newConstantData(
        type, "collapsed", [&](MutableArrayRef<char> data) {
          std::memcpy(data.data(), bytes->data(), bytes->size());
        });
    Value folded = arith::ConstantOp::create(builder, collapse.getLoc(),
                                             cast<TypedAttr>(value));
    collapse.getResult().replaceAllUsesWith(folded);
    collapse.erase();
    if (constant.getResult().use_empty()) {
      released.push_back(constant.getValue());
      constant.erase();
    }
  }
  nnforge::releaseUnusedConstants(root, released);
}

/// Reassociation splitting the innermost of `rank` dims into two.
SmallVector<ReassociationIndices> splitInnermost(int64_t rank) {
  SmallVector<ReassociationIndices> groups;
  for (int64_t dim = 0; dim + 1 < rank; ++dim)
    groups.push_back({dim});
  groups.push_back({rank - 1, rank});
  return groups;
}

/// `value` ([.., N]) reshaped to [.., N/panel, panel] (no copy).
Value splitColumns(OpBuilder &b, Location loc, Value value, int64_t panel) {
  auto type = cast<RankedTensorType>(value.getType());
  SmallVector<int64_t> shape(type.getShape());
  shape.back() /= panel;
  shape.push_back(panel);
  return tensor::ExpandShapeOp::create(
      b, loc, RankedTensorType::get(shape, type.getElementType()), value,
      splitInnermost(type.getRank()));
}

/// The type of `type` ([.., N]) stored as panels: [N/panel, .., panel].
RankedTensorType panelsType(RankedTensorType type, int64_t panel) {
  SmallVector<int64_t> shape = {type.getShape().back() / panel};
  llvm::append_range(shape, type.getShape().drop_back());
  shape.push_back(panel);
  return RankedTensorType::get(shape, type.getElementType());
}

/// Copies `elements` elements of `size` bytes from `from` (`stride`
/// elements apart) to `to` (`step` elements apart); constant sizes for the
/// common ones, so that each copy is a move.
template <size_t Size>
void copyStrided(char *to, int64_t step, const char *from, int64_t stride,
                 int64_t elements, size_t size) {
  for (int64_t e = 0; e < elements; ++e)
    std::memcpy(to + e * step * Size, from + e * stride * Size, Size);
}
void copyStrided(char *to, int64_t step, const char *from, int64_t stride,
                 int64_t elements, size_t size) {
  switch (size) {
  case 1:
    return copyStrided<1>(to, step, from, stride, elements, size);
  case 2:
    return copyStrided<2>(to, step, from, stride, elements, size);
  case 4:
    return copyStrided<4>(to, step, from, stride, elements, size);
  case 8:
    return copyStrided<8>(to, step, from, stride, elements, size);
  default:
    for (int64_t e = 0; e < elements; ++e)
      std::memcpy(to + e * step * size, from + e * stride * size, size);
  }
}

/// Writes into `out` the panels, [N/panel, .., panel], of the [.., N]
/// tensor `type` whose data is `source` (of `sourceShape`) permuted by
/// `permutation` (dimension d is source dimension permutation[d]; the
/// identity: `source` is the tensor itself).
void writePanels(const char *source, ArrayRef<int64_t> sourceShape,
                 ArrayRef<int64_t> permutation, RankedTensorType type,
                 int64_t panel, MutableArrayRef<char> out) {
  size_t size = type.getElementTypeBitWidth() / 8;
  int64_t rank = type.getRank();
  SmallVector<int64_t> sourceStrides(rank, 1);
  for (int64_t d = rank - 2; d >= 0; --d)
    sourceStrides[d] = sourceStrides[d + 1] * sourceShape[d + 1];
  // Strides, in source elements, of the tensor's dimensions.
  SmallVector<int64_t> strides;
  for (int64_t from : permutation)
    strides.push_back(sourceStrides[from]);
  ArrayRef<int64_t> shape = type.getShape();
  int64_t columnStride = strides[rank - 1];
  int64_t inner = shape[rank - 2], innerStride = strides[rank - 2];
  int64_t rows = type.getNumElements() / shape[rank - 1];
  int64_t panels = shape[rank - 1] / panel;
  // Blocks of rows whose panel columns stay in the cache while read across
  // (a source read down its columns: a transposed weight).
  constexpr int64_t kBlock = 32;
  for (int64_t p = 0; p < panels; ++p) {
    // The rows, the innermost row dimension at a time; `outer` indexes
    // the others and `base` follows it.
    SmallVector<int64_t> outer(std::max<int64_t>(rank - 2, 0), 0);
    int64_t base = p * panel * columnStride;
    for (int64_t row = 0; row < rows; row += inner) {
      char *panelRows = out.data() + (p * rows + row) * panel * size;
      if (columnStride == 1) {
        for (int64_t r = 0; r < inner; ++r)
          std::memcpy(panelRows + r * panel * size,
                      source + (base + r * innerStride) * size,
                      panel * size);
      } else {
        for (int64_t r0 = 0; r0 < inner; r0 += kBlock)
          for (int64_t c = 0; c < panel; ++c)
            copyStrided(panelRows + (r0 * panel + c) * size, panel,
                        source + (base + r0 * innerStride + c * columnStride) *
                                     size,
                        innerStride, std::min(kBlock, inner - r0), size);
      }
      for (int64_t d = rank - 3; d >= 0; --d) {
        base += strides[d];
        if (++outer[d] < shape[d])
          break;
        base -= strides[d] * shape[d];
        outer[d] = 0;
      }
    }
  }
}

/// Writes the panels of `type` from `source` (`writePanels`).
void writePanelsFromSource(const nnforge::TransposeSource &source,
                           RankedTensorType type, int64_t panel,
                           MutableArrayRef<char> out) {
  writePanels(nnforge::rawConstantBytes(source.source)->data(),
              cast<ShapedType>(cast<TypedAttr>(source.source).getType())
                  .getShape(),
              source.permutation, type, panel, out);
}

/// `constant` ([.., N]) stored as [N/panel, .., panel]; null if its data
/// cannot be read. Where the constant records the weight it is a
/// transposed copy of (`nnf-fold-constant-transposes`), the panels are
/// written from that weight; a blob is left for the caller to write
/// (`fillFromSource`) once the copy is freed, so that the copy and the
/// panels are not in memory together.
Value packedConstant(OpBuilder &b, arith::ConstantOp constant, int64_t panel,
                     std::optional<nnforge::TransposeSource> &source,
                     MutableArrayRef<char> &fillFromSource) {
  auto type = cast<RankedTensorType>(constant.getType());
  RankedTensorType packedType = panelsType(type, panel);
  source = nnforge::transposeSource(constant);
  Attribute packed;
  if (source && nnforge::isStoredAsBlob(packedType)) {
    packed = nnforge::newUnfilledConstantBlob(packedType, "packed",
                                              fillFromSource);
  } else if (source) {
    packed = nnforge::newConstantData(
        packedType, "packed", [&](MutableArrayRef<char> out) {
          writePanelsFromSource(*source, type, panel, out);
        });
  } else {
    std::optional<ArrayRef<char>> bytes =
        nnforge::rawConstantBytes(constant.getValue());
    size_t elementBytes = type.getElementTypeBitWidth() / 8;
    if (!bytes || bytes->size() != type.getNumElements() * elementBytes)
      return nullptr;
    SmallVector<int64_t> identity =
        llvm::to_vector(llvm::seq<int64_t>(0, type.getRank()));
    packed = nnforge::newConstantData(
        packedType, "packed", [&](MutableArrayRef<char> out) {
          writePanels(bytes->data(), type.getShape(), identity, type, panel,
                      out);
        });
  }
  b.setInsertionPointAfter(constant);
  return arith::ConstantOp::create(b, constant.getLoc(), packedType,
                                   cast<TypedAttr>(packed));
}

/// `weight` ([.., N], computed at run time) copied into [N/panel, ..,
/// panel] on every call: a generic reading [.., N] split as [.., N/panel,
/// panel], each panel row one contiguous run (vectorized as such; a
/// linalg.transpose would be scheduled as a 2-D transpose).
Value packedAtRunTime(OpBuilder &b, Location loc, Value weight,
                      int64_t panel) {
  auto type = cast<RankedTensorType>(weight.getType());
  int64_t rank = type.getRank();
  Value split = splitColumns(b, loc, weight, panel);
  // Loops (panel, rows..., column) over the packed result.
  MLIRContext *context = b.getContext();
  SmallVector<AffineExpr> readResults;
  for (int64_t dim = 1; dim < rank; ++dim)
    readResults.push_back(getAffineDimExpr(dim, context));
  readResults.push_back(getAffineDimExpr(0, context));
  readResults.push_back(getAffineDimExpr(rank, context));
  RankedTensorType packedType = panelsType(type, panel);
  Value empty = tensor::EmptyOp::create(b, loc, packedType.getShape(),
                                        packedType.getElementType());
  return linalg::GenericOp::create(
             b, loc, empty.getType(), split, empty,
             {AffineMap::get(rank + 1, 0, readResults, context),
              b.getMultiDimIdentityMap(rank + 1)},
             SmallVector<utils::IteratorType>(rank + 1,
                                              utils::IteratorType::parallel),
             [](OpBuilder &nb, Location nl, ValueRange arguments) {
               linalg::YieldOp::create(nb, nl, arguments[0]);
             })
      .getResult(0);
}

/// Redirects the uses of `constant` ([.., N]), if all read one element
/// (`tensor.extract`), to `packed`, its data as [N/panel, .., panel]:
/// element [.., n] is [n / panel, .., n % panel].
void readElementsFromPanels(RewriterBase &rewriter, arith::ConstantOp constant,
                            Value packed, int64_t panel) {
  if (!llvm::all_of(constant->getUsers(), llvm::IsaPred<tensor::ExtractOp>))
    return;
  for (Operation *user : llvm::to_vector(constant->getUsers())) {
    auto extract = cast<tensor::ExtractOp>(user);
    SmallVector<Value> old(extract.getIndices());
    rewriter.setInsertionPoint(extract);
    Location loc = extract.getLoc();
    Value width = arith::ConstantIndexOp::create(rewriter, loc, panel);
    SmallVector<Value> indices = {
        arith::DivUIOp::create(rewriter, loc, old.back(), width)};
    llvm::append_range(indices, ArrayRef<Value>(old).drop_back());
    indices.push_back(arith::RemUIOp::create(rewriter, loc, old.back(), width));
    rewriter.modifyOpInPlace(extract, [&] {
      extract.getTensorMutable().assign(packed);
      extract.getIndicesMutable().assign(indices);
    });
  }
}

/// Rewrites the contraction to read `packed` (the weight in panels): a
/// generic with one more loop (the column within a panel; n becomes the
/// panel), its output split likewise and collapsed back.
void readPanels(RewriterBase &rewriter, const PackableOp &found,
                Value packed, int64_t panel) {
  linalg::LinalgOp op = found.op;
  // Read before generalizing, which replaces a named op (and its operands).
  unsigned weightIndex = found.weight->getOperandNumber();
  rewriter.setInsertionPoint(op);
  FailureOr<linalg::GenericOp> generalized =
      isa<linalg::GenericOp>(op)
          ? FailureOr<linalg::GenericOp>(cast<linalg::GenericOp>(op))
          : linalg::generalizeNamedOp(rewriter, op);
  if (failed(generalized))
    return;
  linalg::GenericOp generic = *generalized;
  MLIRContext *context = rewriter.getContext();
  Location loc = generic.getLoc();
  unsigned loops = generic.getNumLoops();
  AffineExpr column = getAffineDimExpr(loops, context);
  AffineExpr n = getAffineDimExpr(found.nLoop, context);

  SmallVector<AffineMap> maps;
  for (OpOperand &operand : generic->getOpOperands()) {
    AffineMap map = generic.getMatchingIndexingMap(&operand);
    SmallVector<AffineExpr> results(map.getResults());
    if (operand.getOperandNumber() == weightIndex) {
      results.back() = column; // [.., n] -> [n (the panel), .., column]
      results.insert(results.begin(), n);
    } else if (generic.isDpsInit(&operand)) {
      results.push_back(column); // [.., n] -> [.., n, column]
    }
    maps.push_back(AffineMap::get(loops + 1, 0, results, context));
  }
  SmallVector<utils::IteratorType> iterators =
      generic.getIteratorTypesArray();
  iterators.push_back(utils::IteratorType::parallel);

  Value init = generic.getDpsInitOperand(0)->get();
  auto initType = cast<RankedTensorType>(init.getType());
  Value splitInit = splitColumns(rewriter, loc, init, panel);
  SmallVector<Value> inputs = generic.getDpsInputs();
  inputs[weightIndex] = packed;
  auto packedOp = linalg::GenericOp::create(
      rewriter, loc, TypeRange{splitInit.getType()}, inputs,
      ValueRange{splitInit}, maps, iterators);
  rewriter.inlineRegionBefore(generic.getRegion(), packedOp.getRegion(),
                              packedOp.getRegion().begin());
  rewriter.replaceOpWithNewOp<tensor::CollapseShapeOp>(
      generic, initType, packedOp.getResult(0),
      splitInnermost(initType.getRank()));
}

struct NNFPackWeightsPass
    : nnforge::impl::NNFPackWeightsBase<NNFPackWeightsPass> {
  using Base::Base;

  void runOnOperation() override {
    if (panel < 1) {
      getOperation()->emitError("nnf-pack-weights: panel must be positive");
      return signalPassFailure();
    }
    foldCollapsedWeights(getOperation(), panel, minBytes);
    // Constants, and values computed at run time whose elements are each
    // read at least `runtimeMinReuse` times.
    SmallVector<PackableOp> found;
    getOperation()->walk([&](linalg::LinalgOp op) {
      std::optional<PackableOp> candidate =
          packable(op, panel, minBytes);
      if (candidate &&
          (candidate->weight->get().getDefiningOp<arith::ConstantOp>() ||
           reuseOf(op, candidate->weight) >= runtimeMinReuse))
        found.push_back(*candidate);
      else if (convolutionPanel > 0 &&
               (candidate = packableConvolution(op, convolutionPanel,
                                                convolutionMinBytes)))
        found.push_back(*candidate);
    });
    // Weight by weight, so that a constant packed and no longer used is
    // freed before the next is packed.
    llvm::MapVector<Value, SmallVector<PackableOp>> byWeight;
    for (const PackableOp &contraction : found)
      byWeight[contraction.weight->get()].push_back(contraction);
    IRRewriter rewriter(&getContext());
    for (auto &group : byWeight) {
      // Read now: packing an earlier group may have replaced the value
      // (a weight computed by a contraction packed before).
      SmallVector<PackableOp> &contractions = group.second;
      Value weight = contractions.front().weight->get();
      int64_t panel = contractions.front().panel;
      if (!llvm::all_of(contractions, [&](const PackableOp &contraction) {
            return contraction.panel == panel;
          }))
        continue; // a filter also read by contractions: left as it is
      Value packed;
      std::optional<nnforge::TransposeSource> source;
      MutableArrayRef<char> fillFromSource;
      auto constant = weight.getDefiningOp<arith::ConstantOp>();
      if (constant) {
        packed = packedConstant(rewriter, constant, panel, source,
                                fillFromSource);
      } else {
        // Right after the operand, so that it dominates every user.
        rewriter.setInsertionPointAfterValue(weight);
        packed = packedAtRunTime(rewriter, weight.getLoc(), weight, panel);
      }
      if (!packed)
        continue;
      for (const PackableOp &contraction : contractions)
        readPanels(rewriter, contraction, packed, panel);
      if (constant)
        readElementsFromPanels(rewriter, constant, packed, panel);
      auto type = cast<RankedTensorType>(weight.getType());
      if (constant && weight.use_empty()) {
        Attribute value = constant.getValue();
        rewriter.eraseOp(constant);
        nnforge::releaseUnusedConstants(getOperation(), value);
      }
      if (!fillFromSource.empty())
        writePanelsFromSource(*source, type, panel, fillFromSource);
    }
  }
};

/// Marks an argument whose data its caller lays out when the model is
/// built (a rank's weight slices): the pass may choose its layout.
constexpr llvm::StringLiteral kLayoutFree = "nnf.layout_free";
/// Records on an argument taken as panels how many columns each holds.
constexpr llvm::StringLiteral kPanels = "nnf.panels";

struct NNFPackLayoutFreeArgumentsPass
    : nnforge::impl::NNFPackLayoutFreeArgumentsBase<
          NNFPackLayoutFreeArgumentsPass> {
  using Base::Base;

  void runOnOperation() override {
    if (panel < 1) {
      getOperation()->emitError(
          "nnf-pack-layout-free-arguments: panel must be positive");
      return signalPassFailure();
    }
    llvm::MapVector<BlockArgument, SmallVector<PackableOp>>
        byArgument;
    getOperation()->walk([&](linalg::LinalgOp op) {
      std::optional<PackableOp> candidate =
          packable(op, panel, minBytes);
      auto argument = candidate
                          ? dyn_cast<BlockArgument>(candidate->weight->get())
                          : BlockArgument();
      auto function =
          argument ? dyn_cast<FunctionOpInterface>(
                         argument.getOwner()->getParentOp())
                   : FunctionOpInterface();
      if (function && argument.getOwner()->isEntryBlock() &&
          function.getArgAttr(argument.getArgNumber(), kLayoutFree))
        byArgument[argument].push_back(*candidate);
    });
    IRRewriter rewriter(&getContext());
    for (auto &[argument, contractions] : byArgument) {
      // Only an argument that nothing else reads changes its type.
      if (!llvm::all_of(argument.getUses(), [&](OpOperand &use) {
            return llvm::any_of(contractions,
                                [&](const PackableOp &contraction) {
                                  return contraction.weight == &use;
                                });
          }))
        continue;
      auto function =
          cast<FunctionOpInterface>(argument.getOwner()->getParentOp());
      unsigned index = argument.getArgNumber();
      NamedAttrList attributes(function.getArgAttrDict(index));
      attributes.erase(kLayoutFree);
      attributes.set(kPanels, rewriter.getI64IntegerAttr(panel));
      RankedTensorType packedType =
          panelsType(cast<RankedTensorType>(argument.getType()), panel);
      // The panels as a new argument before the old one, which goes once
      // the contractions read the panels.
      if (failed(function.insertArgument(
              index, packedType, attributes.getDictionary(&getContext()),
              argument.getLoc())))
        return signalPassFailure();
      Value packed = function.getArgument(index);
      for (const PackableOp &contraction : contractions)
        readPanels(rewriter, contraction, packed, panel);
      if (failed(function.eraseArgument(index + 1)))
        return signalPassFailure();
    }
  }
};

} // namespace
