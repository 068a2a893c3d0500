//===- DispatchRegions.cpp - forming and dissolving nnf.dispatch ----------===//
//
// nnf-form-dispatch-regions groups a root (a contraction, or reductions over
// rows) with the linalg ops that can be fused into one tile loop with it;
// nnf-inline-dispatch-regions dissolves the regions once code generation has
// tiled them; nnf-outline-dispatch-regions moves them into functions instead,
// equivalent regions into one.
//
//===----------------------------------------------------------------------===//

#include <map>

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Tensor/Transforms/Transforms.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "mlir/Transforms/RegionUtils.h"
#include "nnforge/Dialect/NNF/NNFOps.h"
#include "nnforge/Passes.h"

namespace nnforge {
#define GEN_PASS_DEF_NNFFORMDISPATCHREGIONS
#define GEN_PASS_DEF_NNFINLINEDISPATCHREGIONS
#define GEN_PASS_DEF_NNFOUTLINEDISPATCHREGIONS
#include "nnforge/Passes.h.inc"
} // namespace nnforge

using namespace mlir;

namespace {

/// The tiled loops of a group member, each mapped to the anchor loop whose
/// tile it follows.
using TiledLoops = std::map<unsigned, unsigned>;

enum class GroupKind {
  /// One contraction (or depthwise convolution) and its epilogue: every
  /// anchor loop is tiled.
  Contraction,
  /// Reductions over the innermost loop and elementwise ops: the outer
  /// anchor loops (rows) are tiled.
  Rows,
};

struct Group {
  /// Anchor first, then the producers in reverse program order.
  SmallVector<Operation *> members;
  llvm::DenseMap<Operation *, TiledLoops> tiled;

  bool contains(Operation *op) const { return tiled.contains(op); }
};

bool isDepthwiseConvolution(Operation *op) {
  return isa<linalg::DepthwiseConv2DNchwChwOp>(op);
}

/// A linalg op on tensors with one result and projected-permutation maps:
/// what tile-and-fuse can slice. A depthwise convolution reads windows (no
/// projected permutation), but a tile of its output still slices its input.
bool isFusable(linalg::LinalgOp op) {
  return op.hasPureTensorSemantics() && op->getNumResults() == 1 &&
         (isDepthwiseConvolution(op) ||
          llvm::all_of(op.getIndexingMapsArray(), [](AffineMap map) {
            return map.isProjectedPermutation();
          }));
}

bool hasOnlyParallelLoops(linalg::LinalgOp op) {
  return op.getNumParallelLoops() == op.getNumLoops();
}

/// Reduces its innermost loop and no other.
bool isRowReduction(linalg::LinalgOp op) {
  return op.getNumReductionLoops() == 1 &&
         linalg::isReductionIterator(op.getIteratorTypesArray().back());
}

bool isContraction(Operation *op) {
  auto linalgOp = dyn_cast_or_null<linalg::LinalgOp>(op);
  return linalgOp && linalg::isaContractionOpInterface(linalgOp);
}

/// The root of a Contraction group: it accumulates into its destination.
bool isAccumulatingRoot(Operation *op) {
  return isContraction(op) || isDepthwiseConvolution(op);
}

/// Whether `map` reads dims in loop order (a broadcast, a projection, the
/// identity; no transpose): the tiles of the producer then follow the loop
/// order of the anchor, which the tile sizes of code generation assume.
bool keepsLoopOrder(AffineMap map) {
  if (!map.isProjectedPermutation(/*allowZeroInResults=*/false))
    return false;
  for (unsigned position = 1; position < map.getNumResults(); ++position)
    if (map.getDimPosition(position) < map.getDimPosition(position - 1))
      return false;
  return true;
}

/// The loops of `producer` that are tiled when `use` (an operand of a group
/// member whose tiled loops are `userTiled`) reads a tile of its result, or
/// failure when several tiles of the user would read the same elements (the
/// producer would be computed again for each) or the read transposes.
FailureOr<TiledLoops> tiledLoopsFor(linalg::LinalgOp producer, OpOperand &use,
                                    const TiledLoops &userTiled) {
  // A padded input (a depthwise convolution's pad is a member) is no tile
  // of its producer.
  auto user = dyn_cast<linalg::LinalgOp>(use.getOwner());
  if (!user)
    return failure();
  AffineMap readMap = user.getMatchingIndexingMap(&use);
  // A depthwise convolution's NCHW output follows its loops (n, oh, ow, c)
  // in another order; its destination's tiles are its output's all the same.
  bool isConvolutionInit =
      isDepthwiseConvolution(user) && user.isDpsInit(&use);
  if (!keepsLoopOrder(readMap) && !isConvolutionInit)
    return failure();
  AffineMap resultMap =
      producer.getIndexingMapMatchingResult(cast<OpResult>(use.get()));
  TiledLoops tiled;
  for (auto [userLoop, anchorLoop] : userTiled) {
    std::optional<unsigned> position = readMap.getResultPosition(
        getAffineDimExpr(userLoop, producer->getContext()));
    if (!position)
      return failure();
    tiled[resultMap.getDimPosition(*position)] = anchorLoop;
  }
  return tiled;
}

/// Whether `pad` pads with a constant only the input of depthwise
/// convolutions in `group`: fused into their tile loop, it pads each tile of
/// the input where the convolution reads it (the padded tensor is never
/// written whole).
bool padsDepthwiseInputOnly(tensor::PadOp pad, const Group &group) {
  return pad.getConstantPaddingValue() && !pad->use_empty() &&
         llvm::all_of(pad->getUses(), [&](OpOperand &use) {
           Operation *user = use.getOwner();
           return group.contains(user) && isDepthwiseConvolution(user) &&
                  cast<linalg::LinalgOp>(user).isDpsInput(&use);
         });
}

/// Whether `op` writes fresh (static) tensors only.
bool writesFreshTensors(linalg::LinalgOp op) {
  return llvm::all_of(op.getDpsInits(), [](Value init) {
    auto empty = init.getDefiningOp<tensor::EmptyOp>();
    return empty && empty->getNumOperands() == 0;
  });
}

/// Whether the group's anchor writes a fresh (static) tensor and its
/// accumulating root, if any, accumulates into one computed in the group (a
/// zero fill, a broadcast bias): tiles of both are then private to the tile
/// loop. A destination from outside may share its buffer with another
/// member's, and bufferization copies each tile.
bool hasPrivateDestinations(const Group &group, Operation *root) {
  if (root)
    for (Value init : cast<linalg::LinalgOp>(root).getDpsInits()) {
      auto initializer = init.getDefiningOp<linalg::LinalgOp>();
      if (!initializer || !group.contains(initializer) ||
          !hasOnlyParallelLoops(initializer) ||
          !writesFreshTensors(initializer))
        return false;
    }
  return writesFreshTensors(cast<linalg::LinalgOp>(group.members.front()));
}

/// The group anchored at `anchor`, or nothing when no root would be fused
/// with anything. `taken`: ops already in a group.
std::optional<Group> growGroup(linalg::LinalgOp anchor, GroupKind kind,
                               const llvm::DenseSet<Operation *> &taken) {
  Group group;
  unsigned tiledCount = anchor.getNumLoops() - (kind == GroupKind::Rows);
  TiledLoops anchorTiled;
  for (unsigned loop = 0; loop < tiledCount; ++loop)
    anchorTiled[loop] = loop;
  group.members.push_back(anchor);
  group.tiled[anchor] = anchorTiled;
  bool hasRoot = false;
  Operation *accumulatingRoot = nullptr;
  // Users come after their producers: walking backwards, every user that can
  // join has had its chance before the producer is looked at.
  for (Operation *op = anchor->getPrevNode(); op; op = op->getPrevNode()) {
    if (auto pad = dyn_cast<tensor::PadOp>(op)) {
      if (!taken.contains(op) && padsDepthwiseInputOnly(pad, group)) {
        group.members.push_back(op);
        group.tiled[op] = {};
      }
      continue;
    }
    auto producer = dyn_cast<linalg::LinalgOp>(op);
    if (!producer || taken.contains(op) || !isFusable(producer) ||
        op->use_empty())
      continue;
    bool accumulating = isAccumulatingRoot(producer);
    if (accumulating && (kind != GroupKind::Contraction || hasRoot))
      continue;
    bool reduction = !accumulating && !hasOnlyParallelLoops(producer);
    if (reduction && (kind != GroupKind::Rows || !isRowReduction(producer)))
      continue;
    std::optional<TiledLoops> tiled;
    bool joins = true;
    for (OpOperand &use : op->getResult(0).getUses()) {
      auto user = group.tiled.find(use.getOwner());
      if (user == group.tiled.end()) {
        joins = false;
        break;
      }
      FailureOr<TiledLoops> fromUse =
          tiledLoopsFor(producer, use, user->second);
      // Users reading different tiles would need two copies.
      if (failed(fromUse) || (tiled && *tiled != *fromUse)) {
        joins = false;
        break;
      }
      tiled = *fromUse;
    }
    if (!joins)
      continue;
    group.members.push_back(op);
    group.tiled[op] = *tiled;
    hasRoot |= accumulating || reduction;
    if (accumulating)
      accumulatingRoot = op;
  }
  if (!hasPrivateDestinations(group, accumulatingRoot))
    return std::nullopt;
  unsigned computing = llvm::count_if(group.members, [](Operation *op) {
    return !isa<linalg::FillOp, tensor::PadOp>(op);
  });
  if (!hasRoot || computing < 2)
    return std::nullopt;
  return group;
}

/// Whether `value` is better cloned into a dispatch region than passed in.
bool isClonedIntoRegions(Value value) {
  Operation *producer = value.getDefiningOp();
  if (!producer)
    return false;
  if (auto empty = dyn_cast<tensor::EmptyOp>(producer))
    return empty->getNumOperands() == 0;
  return matchPattern(value, m_Constant());
}

/// A new nnf.dispatch of `inputs` with `resultTypes` before `at`, and its
/// entry block (one argument per input), empty.
std::pair<nnforge::nnf::DispatchOp, Block *>
createDispatch(IRRewriter &rewriter, Operation *at, TypeRange resultTypes,
               ValueRange inputs) {
  rewriter.setInsertionPoint(at);
  auto dispatch = nnforge::nnf::DispatchOp::create(rewriter, at->getLoc(),
                                                   resultTypes, inputs);
  SmallVector<Location> locations(inputs.size(), at->getLoc());
  Block *body = rewriter.createBlock(&dispatch.getBody(), {},
                                     inputs.getTypes(), locations);
  return {dispatch, body};
}

/// Wraps the members of `group` into an nnf.dispatch at the anchor.
void buildDispatch(IRRewriter &rewriter, const Group &group) {
  SmallVector<Operation *> members(llvm::reverse(group.members));
  Operation *anchor = group.members.front();
  llvm::SetVector<Value> outside;
  for (Operation *member : members) {
    for (Value operand : member->getOperands())
      if (!group.contains(operand.getDefiningOp()))
        outside.insert(operand);
    getUsedValuesDefinedAbove(member->getRegions(), outside);
  }
  SmallVector<Value> inputs, cloned;
  for (Value value : outside)
    (isClonedIntoRegions(value) ? cloned : inputs).push_back(value);

  auto [dispatch, body] =
      createDispatch(rewriter, anchor, anchor->getResultTypes(), inputs);
  IRMapping inside;
  inside.map(inputs, body->getArguments());
  for (Value value : cloned)
    inside.map(value, rewriter.clone(*value.getDefiningOp())->getResult(0));
  for (Operation *member : members)
    rewriter.moveOpBefore(member, body, body->end());
  // The anchor's destination (a static empty tensor: growGroup admits no
  // other) becomes the tile loop's shared output. Made empty by an op CSE
  // leaves alone, it stays apart from the other members' empty inits: a
  // contraction's fill, given the same tensor, would be fused into the
  // output tile that the epilogue still has to write, and bufferization
  // would copy that tile.
  auto destination = cast<DestinationStyleOpInterface>(anchor);
  for (OpOperand &init : destination.getDpsInitsMutable()) {
    auto empty = cast<tensor::EmptyOp>(init.get().getDefiningOp());
    rewriter.setInsertionPoint(anchor);
    Value allocation = bufferization::AllocTensorOp::create(
        rewriter, empty.getLoc(), empty.getType(), ValueRange());
    rewriter.modifyOpInPlace(anchor, [&] { init.set(allocation); });
  }
  rewriter.setInsertionPointToEnd(body);
  nnforge::nnf::YieldOp::create(rewriter, anchor->getLoc(),
                                anchor->getResults());
  auto isInside = [&](OpOperand &use) {
    return dispatch->isProperAncestor(use.getOwner());
  };
  for (Value value : outside)
    rewriter.replaceUsesWithIf(value, inside.lookup(value), isInside);
  rewriter.replaceUsesWithIf(anchor->getResults(), dispatch.getResults(),
                             [&](OpOperand &use) { return !isInside(use); });
}

/// Whether to collapse an elementwise op to an im2col contraction's shape
/// ([N, F, OH*OW] rather than [N, F, OH, OW]) so that it can join the
/// contraction's group: a consumer of the expanded result (the epilogue), or
/// the producer of the collapsed accumulator (a broadcast bias).
bool collapsesIntoContractionShape(OpOperand *fusedOperand) {
  if (auto expand = fusedOperand->get().getDefiningOp<tensor::ExpandShapeOp>()) {
    auto consumer = dyn_cast<linalg::LinalgOp>(fusedOperand->getOwner());
    return consumer && hasOnlyParallelLoops(consumer) &&
           isContraction(expand.getSrc().getDefiningOp());
  }
  auto collapse = dyn_cast<tensor::CollapseShapeOp>(fusedOperand->getOwner());
  auto producer = fusedOperand->get().getDefiningOp<linalg::LinalgOp>();
  return collapse && producer && hasOnlyParallelLoops(producer) &&
         llvm::all_of(collapse->getUses(), [](OpOperand &use) {
           auto user = dyn_cast<linalg::LinalgOp>(use.getOwner());
           return isContraction(user) && user.isDpsInit(&use);
         });
}

/// A linalg op's destination that is a splat constant (torch-mlir's ONNX
/// importer folds a convolution's zero accumulator so) as a fill of an empty
/// tensor: groups take only destinations computed in the group, and
/// bufferization copied the constant into a new buffer on every call.
struct SplatDestinationAsFill : OpInterfaceRewritePattern<linalg::LinalgOp> {
  using OpInterfaceRewritePattern::OpInterfaceRewritePattern;

  LogicalResult matchAndRewrite(linalg::LinalgOp op,
                                PatternRewriter &rewriter) const override {
    if (!op.hasPureTensorSemantics() || isa<linalg::FillOp>(op))
      return failure();
    bool changed = false;
    for (OpOperand &init : op.getDpsInitsMutable()) {
      SplatElementsAttr splat;
      auto type = dyn_cast<RankedTensorType>(init.get().getType());
      if (!type || !type.hasStaticShape() ||
          !matchPattern(init.get(), m_Constant(&splat)))
        continue;
      Location loc = init.get().getLoc();
      Value value = arith::ConstantOp::create(rewriter, loc,
                                              splat.getSplatValue<TypedAttr>());
      Value empty = tensor::EmptyOp::create(rewriter, loc, type.getShape(),
                                            type.getElementType());
      Value filled =
          linalg::FillOp::create(rewriter, loc, value, empty).getResult(0);
      rewriter.modifyOpInPlace(op, [&] { init.set(filled); });
      changed = true;
    }
    return success(changed);
  }
};

/// linalg.broadcast as a linalg.generic where it initializes an im2col
/// contraction through a collapse_shape: the collapsing patterns take
/// generics only.
struct GeneralizeCollapsedBroadcast
    : OpRewritePattern<tensor::CollapseShapeOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(tensor::CollapseShapeOp collapse,
                                PatternRewriter &rewriter) const override {
    auto broadcast = collapse.getSrc().getDefiningOp<linalg::BroadcastOp>();
    if (!broadcast ||
        !collapsesIntoContractionShape(&collapse.getSrcMutable()))
      return failure();
    return linalg::generalizeNamedOp(rewriter, broadcast);
  }
};

/// Whether a region's entry block argument `input` has one use, a
/// contraction's input read through an indexing map whose last result is the
/// output's innermost loop (n: a 1x1 convolution's collapsed H*W).
bool isContractionColumns(BlockArgument input) {
  if (!input.hasOneUse())
    return false;
  OpOperand &use = *input.getUses().begin();
  auto contraction = dyn_cast<linalg::LinalgOp>(use.getOwner());
  if (!isContraction(contraction) || !contraction.isDpsInput(&use))
    return false;
  AffineMap readMap = contraction.getMatchingIndexingMap(&use);
  AffineMap outputMap =
      contraction.getMatchingIndexingMap(contraction.getDpsInitOperand(0));
  return readMap.getNumResults() != 0 &&
         readMap.getResults().back() == outputMap.getResults().back();
}

/// Whether `collapse` merges exactly the last two dims (an NCHW tensor's
/// H and W) and nothing else.
bool collapsesRowsOnly(tensor::CollapseShapeOp collapse) {
  SmallVector<ReassociationIndices> groups = collapse.getReassociationIndices();
  return groups.back().size() == 2 &&
         llvm::all_of(ArrayRef(groups).drop_back(),
                      [](const ReassociationIndices &group) {
                        return group.size() == 1;
                      });
}

/// A producer whose result a contraction region reads through a collapse
/// (read by nothing else): the input of `consumer` at `index`.
template <typename Producer>
struct IntoContraction {
  Producer producer;
  tensor::CollapseShapeOp collapse;
  nnforge::nnf::DispatchOp consumer;
  unsigned index;
};

/// The collapse of static shape that input `index` of `consumer` is, where
/// nothing else reads it.
tensor::CollapseShapeOp collapsedInput(nnforge::nnf::DispatchOp consumer,
                                       unsigned index) {
  auto collapse =
      consumer.getInputs()[index].getDefiningOp<tensor::CollapseShapeOp>();
  if (!collapse || !collapse->hasOneUse() ||
      !collapse.getSrcType().hasStaticShape())
    return {};
  return collapse;
}

/// A depthwise convolution's region whose result a contraction region reads
/// through the collapse of its rows (a MobileNetV2 block's depthwise stage
/// and 1x1 projection).
using RowsIntoContraction = IntoContraction<nnforge::nnf::DispatchOp>;

std::optional<RowsIntoContraction>
rowsIntoContraction(nnforge::nnf::DispatchOp consumer, unsigned index) {
  tensor::CollapseShapeOp collapse = collapsedInput(consumer, index);
  if (!collapse || !collapsesRowsOnly(collapse))
    return std::nullopt;
  auto producer = collapse.getSrc().getDefiningOp<nnforge::nnf::DispatchOp>();
  if (!producer || producer->getNumResults() != 1 ||
      !producer->getResult(0).hasOneUse() ||
      producer->getBlock() != consumer->getBlock() ||
      !llvm::any_of(producer.getBody().front(), [](Operation &op) {
        return isDepthwiseConvolution(&op);
      }) ||
      !isContractionColumns(consumer.getBody().front().getArgument(index)))
    return std::nullopt;
  return RowsIntoContraction{producer, collapse, consumer, index};
}

/// Clones the ops of `consumer`'s region to the end of `body` (its
/// terminator too), its argument `index` being `columns` and the others
/// the arguments of `body` from `next` on.
void cloneContractionRegion(IRRewriter &rewriter, Block *body,
                            IRMapping &mapping,
                            nnforge::nnf::DispatchOp consumer, unsigned index,
                            Value columns, unsigned next) {
  Block &consumerBody = consumer.getBody().front();
  for (auto [position, argument] : llvm::enumerate(consumerBody.getArguments()))
    mapping.map(argument, position == index ? columns
                                            : body->getArgument(next++));
  for (Operation &op : consumerBody)
    rewriter.clone(op, mapping);
}

/// The inputs of a region replacing `consumer` that computes its input
/// `index` from `produced` (the producer's inputs) instead.
SmallVector<Value> mergedInputs(ValueRange produced,
                                nnforge::nnf::DispatchOp consumer,
                                unsigned index) {
  SmallVector<Value> inputs(produced);
  for (auto [position, input] : llvm::enumerate(consumer.getInputs()))
    if (position != index)
      inputs.push_back(input);
  return inputs;
}

/// Replaces the two regions of `pair` by one: the producer's ops, the
/// collapse, then the consumer's. Code generation tiles the contraction's
/// output by whole rows and fuses the depthwise stage into each tile, so
/// that its result never goes to memory whole. The producer's result,
/// written into a whole-size buffer as the anchor's, gets an empty tensor
/// instead: tile-sized once fused.
void mergeRowsIntoContraction(IRRewriter &rewriter,
                              const RowsIntoContraction &pair) {
  auto [producer, collapse, consumer, index] = pair;
  auto [merged, body] = createDispatch(
      rewriter, consumer, consumer.getResultTypes(),
      mergedInputs(producer.getInputs(), consumer, index));
  IRMapping mapping;
  Block &producerBody = producer.getBody().front();
  mapping.map(producerBody.getArguments(),
              body->getArguments().take_front(producerBody.getNumArguments()));
  for (Operation &op : producerBody.without_terminator())
    rewriter.clone(op, mapping);
  Value produced = mapping.lookup(
      cast<nnforge::nnf::YieldOp>(producerBody.getTerminator()).getValues()[0]);
  auto anchor = cast<DestinationStyleOpInterface>(produced.getDefiningOp());
  for (OpOperand &init : anchor.getDpsInitsMutable()) {
    auto allocation = init.get().getDefiningOp<bufferization::AllocTensorOp>();
    if (!allocation)
      continue;
    rewriter.setInsertionPoint(allocation);
    Value empty = tensor::EmptyOp::create(
        rewriter, allocation.getLoc(), allocation.getType().getShape(),
        allocation.getType().getElementType());
    rewriter.modifyOpInPlace(anchor, [&] { init.set(empty); });
    rewriter.eraseOp(allocation);
  }
  rewriter.setInsertionPointToEnd(body);
  mapping.map(collapse.getSrc(), produced);
  Operation *rows = rewriter.clone(*collapse, mapping);
  cloneContractionRegion(rewriter, body, mapping, consumer, index,
                         rows->getResult(0), producerBody.getNumArguments());
  rewriter.replaceOp(consumer, merged.getResults());
  rewriter.eraseOp(collapse);
  rewriter.eraseOp(producer);
}

/// Whether `op` copies a convolution's input windows into an NCHW im2col
/// tensor [N, C, KH, KW, OH, OW] (nnf-conv-to-im2col's copy): a generic
/// of six parallel loops yielding its one input, into an empty tensor.
bool isWindowCopy(Operation *op) {
  auto generic = dyn_cast_or_null<linalg::GenericOp>(op);
  if (!generic || generic.getNumDpsInputs() != 1 ||
      generic.getNumDpsInits() != 1 || generic.getNumLoops() != 6 ||
      !hasOnlyParallelLoops(generic) || !generic.hasPureTensorSemantics())
    return false;
  Block &body = generic.getRegion().front();
  auto yield = cast<linalg::YieldOp>(body.getTerminator());
  auto empty = generic.getDpsInits()[0].getDefiningOp<tensor::EmptyOp>();
  return body.getOperations().size() == 1 &&
         yield.getValues()[0] == body.getArgument(0) && empty &&
         empty->getNumOperands() == 0;
}

/// An im2col window copy whose result a contraction region reads, pixels
/// along its innermost output loop, through the collapse into columns
/// ([N, C, KH, KW, OH, OW] to [N, C*KH*KW, OH*OW]).
using WindowsIntoContraction = IntoContraction<linalg::GenericOp>;

std::optional<WindowsIntoContraction>
windowsIntoContraction(nnforge::nnf::DispatchOp consumer, unsigned index) {
  tensor::CollapseShapeOp collapse = collapsedInput(consumer, index);
  if (!collapse)
    return std::nullopt;
  SmallVector<ReassociationIndices> groups = collapse.getReassociationIndices();
  Operation *windows = collapse.getSrc().getDefiningOp();
  if (groups.size() != 3 || groups[0].size() != 1 || groups[1].size() != 3 ||
      groups[2].size() != 2 || !isWindowCopy(windows) ||
      !windows->hasOneUse() || windows->getBlock() != consumer->getBlock() ||
      !isContractionColumns(consumer.getBody().front().getArgument(index)))
    return std::nullopt;
  return WindowsIntoContraction{cast<linalg::GenericOp>(windows), collapse,
                                consumer, index};
}

/// Replaces the contraction region of `pair` by one that copies the windows
/// itself: the copy (into an empty tensor of its own), the collapse, then
/// the region's ops. Code generation tiles the contraction's output by
/// whole rows and copies each tile's windows where the contraction reads
/// them, so that the im2col tensor never goes to memory whole.
void mergeWindowsIntoContraction(IRRewriter &rewriter,
                                 const WindowsIntoContraction &pair) {
  auto [windows, collapse, consumer, index] = pair;
  auto [merged, body] =
      createDispatch(rewriter, consumer, consumer.getResultTypes(),
                     mergedInputs(windows.getDpsInputs(), consumer, index));
  IRMapping mapping;
  mapping.map(windows.getDpsInputs()[0], body->getArgument(0));
  Value init = windows.getDpsInits()[0];
  auto initType = cast<RankedTensorType>(init.getType());
  rewriter.setInsertionPointToEnd(body);
  mapping.map(init, tensor::EmptyOp::create(rewriter, windows.getLoc(),
                                            initType.getShape(),
                                            initType.getElementType()));
  Operation *copy = rewriter.clone(*windows, mapping);
  mapping.map(collapse.getSrc(), copy->getResult(0));
  Operation *columns = rewriter.clone(*collapse, mapping);
  cloneContractionRegion(rewriter, body, mapping, consumer, index,
                         columns->getResult(0), 1);
  rewriter.replaceOp(consumer, merged.getResults());
  rewriter.eraseOp(collapse);
  rewriter.eraseOp(windows);
}

/// Merges into each contraction region under `root` the producer of one of
/// its inputs that `find` accepts (the first), with `merge`.
template <typename Merge>
void mergeIntoContractions(
    Operation *root, IRRewriter &rewriter,
    std::optional<Merge> (*find)(nnforge::nnf::DispatchOp, unsigned),
    void (*merge)(IRRewriter &, const Merge &)) {
  SmallVector<Merge> found;
  root->walk([&](nnforge::nnf::DispatchOp consumer) {
    for (unsigned index = 0; index < consumer.getInputs().size(); ++index)
      if (std::optional<Merge> candidate = find(consumer, index)) {
        found.push_back(*candidate);
        break;
      }
  });
  for (const Merge &candidate : found)
    merge(rewriter, candidate);
}

struct NNFFormDispatchRegionsPass
    : nnforge::impl::NNFFormDispatchRegionsBase<NNFFormDispatchRegionsPass> {
  void runOnOperation() override {
    MLIRContext *context = &getContext();
    RewritePatternSet patterns(context);
    linalg::populateFoldReshapeOpsByCollapsingPatterns(
        patterns, collapsesIntoContractionShape);
    // The collapsed shapes of fills and empty tensors (a contraction's
    // accumulator, the collapsed epilogue's destination) as fills and empty
    // tensors of their own.
    linalg::FillOp::getCanonicalizationPatterns(patterns, context);
    patterns.add<GeneralizeCollapsedBroadcast, SplatDestinationAsFill>(context);
    tensor::populateFoldTensorEmptyPatterns(patterns);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      return signalPassFailure();

    SmallVector<Group> groups;
    llvm::DenseSet<Operation *> taken;
    getOperation()->walk([&](Block *block) {
      for (Operation &op : llvm::reverse(*block)) {
        auto anchor = dyn_cast<linalg::LinalgOp>(&op);
        if (!anchor || taken.contains(&op) || !isFusable(anchor) ||
            !hasOnlyParallelLoops(anchor) || anchor.getNumLoops() == 0 ||
            !llvm::all_of(anchor.getIndexingMapsArray(), keepsLoopOrder) ||
            op.getParentOfType<nnforge::nnf::DispatchOp>())
          continue;
        std::optional<Group> group =
            growGroup(anchor, GroupKind::Contraction, taken);
        if (!group && anchor.getNumLoops() >= 2)
          group = growGroup(anchor, GroupKind::Rows, taken);
        if (!group)
          continue;
        for (Operation *member : group->members)
          taken.insert(member);
        groups.push_back(std::move(*group));
      }
    });
    IRRewriter rewriter(context);
    for (const Group &group : groups)
      buildDispatch(rewriter, group);

    mergeIntoContractions(getOperation(), rewriter, rowsIntoContraction,
                          mergeRowsIntoContraction);
    mergeIntoContractions(getOperation(), rewriter, windowsIntoContraction,
                          mergeWindowsIntoContraction);
  }
};

struct NNFInlineDispatchRegionsPass
    : nnforge::impl::NNFInlineDispatchRegionsBase<
          NNFInlineDispatchRegionsPass> {
  void runOnOperation() override {
    SmallVector<nnforge::nnf::DispatchOp> dispatches;
    getOperation()->walk(
        [&](nnforge::nnf::DispatchOp dispatch) { dispatches.push_back(dispatch); });
    IRRewriter rewriter(&getContext());
    for (nnforge::nnf::DispatchOp dispatch : dispatches) {
      Block &body = dispatch.getBody().front();
      auto yield = cast<nnforge::nnf::YieldOp>(body.getTerminator());
      SmallVector<Value> results(yield.getValues());
      rewriter.eraseOp(yield);
      rewriter.inlineBlockBefore(&body, dispatch, dispatch.getInputs());
      rewriter.replaceOp(dispatch, results);
    }
  }
};

/// The attribute marking the functions nnf-outline-dispatch-regions made.
constexpr StringLiteral kDispatchFunctionAttr = "nnf.dispatch_function";

/// Moves the tensor constants that hold data (not splats) out of `dispatch`,
/// in front of it, as inputs: nnf-form-dispatch-regions clones constants
/// in, and regions that differ only in their weights are then equivalent.
/// A constant some op writes into (a destination) stays: as a function
/// argument it would be copied on every call.
void passDataConstantsIn(nnforge::nnf::DispatchOp dispatch) {
  Block &body = dispatch.getBody().front();
  for (Operation &op : llvm::make_early_inc_range(body)) {
    auto constant = dyn_cast<arith::ConstantOp>(op);
    if (!constant || !isa<RankedTensorType>(constant.getType()))
      continue;
    auto dense = dyn_cast<DenseElementsAttr>(constant.getValue());
    if (dense && dense.isSplat())
      continue;
    bool written = llvm::any_of(constant->getUses(), [](OpOperand &use) {
      auto destinationStyle = dyn_cast<DestinationStyleOpInterface>(use.getOwner());
      return destinationStyle && destinationStyle.isDpsInit(&use);
    });
    if (written)
      continue;
    constant->moveBefore(dispatch);
    BlockArgument argument =
        body.addArgument(constant.getType(), constant.getLoc());
    constant.getResult().replaceAllUsesWith(argument);
    dispatch.getInputsMutable().append(ValueRange{constant.getResult()});
  }
}

/// Whether `value` may bufferize to a strided view (a slice, or a reshape
/// of one): as the argument of a function whose arguments have the identity
/// layout, it would be copied on every call.
bool mayBeStrided(Value value) {
  Operation *producer = value.getDefiningOp();
  if (!producer)
    return false;
  if (isa<tensor::ExtractSliceOp>(producer))
    return true;
  if (isa<tensor::ExpandShapeOp, tensor::CollapseShapeOp>(producer))
    return mayBeStrided(producer->getOperand(0));
  return false;
}

struct NNFOutlineDispatchRegionsPass
    : nnforge::impl::NNFOutlineDispatchRegionsBase<
          NNFOutlineDispatchRegionsPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    // The regions in classes of equivalent ones, each class's first region
    // its representative.
    SmallVector<SmallVector<nnforge::nnf::DispatchOp>> classes;
    module->walk([&](nnforge::nnf::DispatchOp dispatch) {
      if (llvm::any_of(dispatch.getInputs(), mayBeStrided))
        return;
      passDataConstantsIn(dispatch);
      for (SmallVector<nnforge::nnf::DispatchOp> &found : classes) {
        nnforge::nnf::DispatchOp first = found.front();
        if (first->getResultTypes() == dispatch->getResultTypes() &&
            OperationEquivalence::isRegionEquivalentTo(
                &first.getBody(), &dispatch.getBody(),
                OperationEquivalence::IgnoreLocations)) {
          found.push_back(dispatch);
          return;
        }
      }
      classes.push_back({dispatch});
    });
    SymbolTable symbols(module);
    IRRewriter rewriter(&getContext());
    for (auto [index, found] : llvm::enumerate(classes)) {
      nnforge::nnf::DispatchOp first = found.front();
      auto parent = first->getParentOfType<FunctionOpInterface>();
      Block &body = first.getBody().front();
      auto type = FunctionType::get(&getContext(), body.getArgumentTypes(),
                                    first->getResultTypes());
      rewriter.setInsertionPointToEnd(module.getBody());
      std::string name = (parent ? parent.getName().str() : std::string("module")) +
                         "_dispatch_" + std::to_string(index);
      auto callee = func::FuncOp::create(rewriter, first.getLoc(), name, type);
      callee.setPrivate();
      callee->setAttr(kDispatchFunctionAttr, rewriter.getUnitAttr());
      symbols.insert(callee);
      // The first region's body moves; the others are erased with their op.
      rewriter.inlineRegionBefore(first.getBody(), callee.getBody(),
                                  callee.getBody().end());
      auto yield =
          cast<nnforge::nnf::YieldOp>(callee.getBody().front().getTerminator());
      rewriter.setInsertionPoint(yield);
      rewriter.replaceOpWithNewOp<func::ReturnOp>(yield, yield.getValues());
      for (nnforge::nnf::DispatchOp dispatch : found) {
        rewriter.setInsertionPoint(dispatch);
        auto call = func::CallOp::create(rewriter, dispatch.getLoc(), callee,
                                         dispatch.getInputs());
        for (NamedAttribute attribute : dispatch->getDiscardableAttrs())
          call->setAttr(attribute.getName(), attribute.getValue());
        rewriter.replaceOp(dispatch, call.getResults());
      }
    }
  }
};

} // namespace
