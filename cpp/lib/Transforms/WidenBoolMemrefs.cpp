//===- WidenBoolMemrefs.cpp - store sub-byte memrefs as i8 memrefs --------===//
//
// MLIR's memref-to-LLVM lowering asserts that integer elements are at least a
// byte wide, so a load or store of an `i1` (or `i3`, `i4`...) memref aborts
// it. After bufferization this pass retypes every memref of a signless
// integer narrower than a byte to the memref of `i8` with the same shape,
// layout and memory space: loads truncate, stores zero-extend, globals widen
// their initial value, and every other op carrying such a memref (functions,
// calls, scf ops and region-free ops) is retyped. Memrefs of signed or
// unsigned sub-byte integers, which arith cannot extend or truncate, make
// the pass fail instead of reaching the lowering's assertion. The pass keeps
// its first name (`nnf-widen-bool-memrefs`): booleans are the common case.
//
//===----------------------------------------------------------------------===//

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Func/Transforms/FuncConversions.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/SCF/Transforms/Patterns.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Transforms/DialectConversion.h"
#include "nnforge/Passes.h"

namespace nnforge {
#define GEN_PASS_DEF_NNFWIDENBOOLMEMREFS
#include "nnforge/Passes.h.inc"
} // namespace nnforge

using namespace mlir;

namespace {

/// The elements MLIR's memref-to-LLVM lowering cannot load or store:
/// integers narrower than a byte.
bool isSubByteInteger(Type type) {
  auto integer = dyn_cast<IntegerType>(type);
  return integer && integer.getWidth() < 8;
}

/// The elements this pass widens: signless sub-byte integers.
bool isWidenedElement(Type type) {
  return isSubByteInteger(type) && type.isSignlessInteger();
}

/// Maps memrefs of signless sub-byte integers to memrefs of `i8` (same
/// shape, layout and memory space, so the byte layout of an `i1` memref is
/// that of a numpy bool array) and every other type to itself. Memrefs of
/// signed or unsigned sub-byte integers do not convert: arith cannot widen
/// their values, so ops carrying them fail to legalize.
class WidenBoolTypeConverter : public TypeConverter {
public:
  WidenBoolTypeConverter() {
    addConversion([](Type type) { return type; });
    addConversion([](MemRefType type) -> Type {
      Type element = type.getElementType();
      if (!isSubByteInteger(element))
        return type;
      if (!isWidenedElement(element))
        return Type(); // no conversion: the op fails to legalize
      return MemRefType::get(type.getShape(),
                             IntegerType::get(type.getContext(), 8),
                             type.getLayout(), type.getMemorySpace());
    });
    addConversion([](UnrankedMemRefType type) -> Type {
      Type element = type.getElementType();
      if (!isSubByteInteger(element))
        return type;
      if (!isWidenedElement(element))
        return Type(); // no conversion: the op fails to legalize
      return UnrankedMemRefType::get(IntegerType::get(type.getContext(), 8),
                                     type.getMemorySpace());
    });
  }
};

/// `memref.load` of `iN` (N < 8) -> load of `i8`, then `arith.trunci` to `iN`.
struct WidenLoad : OpConversionPattern<memref::LoadOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(memref::LoadOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    if (!isWidenedElement(op.getType()))
      return rewriter.notifyMatchFailure(op, "element is at least a byte");
    auto byteLoad = memref::LoadOp::create(rewriter, op.getLoc(),
                                           adaptor.getMemref(),
                                           adaptor.getIndices());
    // Keep nontemporal / alignment hints.
    byteLoad->setAttrs(op->getAttrs());
    rewriter.replaceOpWithNewOp<arith::TruncIOp>(op, op.getType(),
                                                 byteLoad.getResult());
    return success();
  }
};

/// `memref.store` of `iN` -> `arith.extui` to `i8` (true is 1), then store.
struct WidenStore : OpConversionPattern<memref::StoreOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(memref::StoreOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    if (!isWidenedElement(op.getValueToStore().getType()))
      return rewriter.notifyMatchFailure(op, "element is at least a byte");
    Value byte = arith::ExtUIOp::create(rewriter, op.getLoc(),
                                        rewriter.getI8Type(),
                                        adaptor.getValue());
    auto byteStore =
        memref::StoreOp::create(rewriter, op.getLoc(), byte,
                                adaptor.getMemref(), adaptor.getIndices());
    byteStore->setAttrs(op->getAttrs());
    rewriter.eraseOp(op);
    return success();
  }
};

/// A vector type with `i8` in place of sub-byte integer elements.
VectorType byteVector(VectorType type) {
  return type.cloneWith(std::nullopt, IntegerType::get(type.getContext(), 8));
}

/// `vector.transfer_read` of `iN` from a widened memref -> a read of `i8`
/// lanes, then `arith.trunci`. (LLVM packs vectors of sub-byte integers
/// into bits in memory, so the read must not stay an `iN` vector read.)
struct WidenTransferRead : OpConversionPattern<vector::TransferReadOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(vector::TransferReadOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    VectorType type = op.getVectorType();
    if (!isWidenedElement(type.getElementType()) ||
        !isa<MemRefType>(adaptor.getBase().getType()))
      return rewriter.notifyMatchFailure(op, "not a sub-byte read of a memref");
    Location loc = op.getLoc();
    Value padding = arith::ExtUIOp::create(rewriter, loc, rewriter.getI8Type(),
                                           adaptor.getPadding());
    auto read = vector::TransferReadOp::create(
        rewriter, loc, byteVector(type), adaptor.getBase(),
        adaptor.getIndices(), adaptor.getPermutationMapAttr(), padding,
        adaptor.getMask(), adaptor.getInBoundsAttr());
    rewriter.replaceOpWithNewOp<arith::TruncIOp>(op, type, read.getResult());
    return success();
  }
};

/// `vector.transfer_write` of `iN` into a widened memref -> `arith.extui`
/// of the lanes, then a write of `i8`.
struct WidenTransferWrite : OpConversionPattern<vector::TransferWriteOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(vector::TransferWriteOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    VectorType type = op.getVectorType();
    if (!isWidenedElement(type.getElementType()) ||
        !isa<MemRefType>(adaptor.getBase().getType()))
      return rewriter.notifyMatchFailure(op, "not a sub-byte write to a memref");
    Value bytes = arith::ExtUIOp::create(rewriter, op.getLoc(), byteVector(type),
                                         adaptor.getValueToStore());
    vector::TransferWriteOp::create(rewriter, op.getLoc(), bytes,
                                    adaptor.getBase(), adaptor.getIndices(),
                                    adaptor.getPermutationMapAttr(),
                                    adaptor.getMask(), adaptor.getInBoundsAttr());
    rewriter.eraseOp(op);
    return success();
  }
};

/// `vector.load` / `vector.store` of `iN`: as the transfers above.
struct WidenVectorLoad : OpConversionPattern<vector::LoadOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(vector::LoadOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    VectorType type = op.getVectorType();
    if (!isWidenedElement(type.getElementType()))
      return rewriter.notifyMatchFailure(op, "not a sub-byte load");
    auto load = vector::LoadOp::create(rewriter, op.getLoc(), byteVector(type),
                                       adaptor.getBase(), adaptor.getIndices());
    rewriter.replaceOpWithNewOp<arith::TruncIOp>(op, type, load.getResult());
    return success();
  }
};

struct WidenVectorStore : OpConversionPattern<vector::StoreOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(vector::StoreOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    VectorType type = op.getVectorType();
    if (!isWidenedElement(type.getElementType()))
      return rewriter.notifyMatchFailure(op, "not a sub-byte store");
    Value bytes = arith::ExtUIOp::create(rewriter, op.getLoc(), byteVector(type),
                                         adaptor.getValueToStore());
    vector::StoreOp::create(rewriter, op.getLoc(), bytes, adaptor.getBase(),
                            adaptor.getIndices());
    rewriter.eraseOp(op);
    return success();
  }
};

/// `memref.global` of `iN` -> `i8` global whose dense initial value is
/// widened the same way stores are (zero-extended: true is 1).
struct WidenGlobal : OpConversionPattern<memref::GlobalOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(memref::GlobalOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    auto byteType =
        dyn_cast_or_null<MemRefType>(getTypeConverter()->convertType(op.getType()));
    if (!byteType || byteType == op.getType())
      return rewriter.notifyMatchFailure(op, "not a global of a sub-byte integer");

    Attribute initialValue = op.getInitialValueAttr();
    // A declaration or an uninitialized global has no value to widen.
    if (initialValue && !isa<UnitAttr>(initialValue)) {
      auto bits = dyn_cast<DenseIntElementsAttr>(initialValue);
      if (!bits)
        return rewriter.notifyMatchFailure(
            op, "initial value is not a dense integer attribute");
      initialValue = bits.mapValues(
          rewriter.getI8Type(), [](const APInt &bit) { return bit.zext(8); });
    }
    rewriter.modifyOpInPlace(op, [&] {
      op.setType(byteType);
      if (initialValue)
        op.setInitialValueAttr(initialValue);
    });
    return success();
  }
};

/// Recreates any region-free, successor-free op with converted operand and
/// result types (alloc, dealloc, subview, cast, copy, reshapes, get_global,
/// metadata extraction, ...). Ops with regions are left to the structural
/// func / scf patterns; anything else with a sub-byte memref fails to legalize.
struct RetypeRegionFreeOp : ConversionPattern {
  RetypeRegionFreeOp(const TypeConverter &typeConverter, MLIRContext *context)
      : ConversionPattern(typeConverter, MatchAnyOpTypeTag(), /*benefit=*/1,
                          context) {}

  LogicalResult
  matchAndRewrite(Operation *op, ArrayRef<Value> operands,
                  ConversionPatternRewriter &rewriter) const override {
    if (op->getNumRegions() != 0 || op->getNumSuccessors() != 0)
      return rewriter.notifyMatchFailure(op, "has regions or successors");
    SmallVector<Type> resultTypes;
    if (failed(getTypeConverter()->convertTypes(op->getResultTypes(),
                                                resultTypes)))
      return rewriter.notifyMatchFailure(op, "result types do not convert");

    OperationState state(op->getLoc(), op->getName().getStringRef(), operands,
                         resultTypes,
                         llvm::to_vector(op->getDiscardableAttrs()));
    state.propertiesAttr = op->getPropertiesAsAttribute();
    Operation *retyped = rewriter.create(state);
    rewriter.replaceOp(op, retyped->getResults());
    return success();
  }
};

/// Whether `op` carries no memref of a sub-byte integer (in its signature,
/// operands, results or block arguments).
static bool isWidened(const TypeConverter &typeConverter, Operation *op) {
  if (auto global = dyn_cast<memref::GlobalOp>(op))
    return typeConverter.isLegal(global.getType());
  if (auto func = dyn_cast<func::FuncOp>(op))
    return typeConverter.isSignatureLegal(func.getFunctionType()) &&
           typeConverter.isLegal(&func.getBody());
  return typeConverter.isLegal(op);
}

/// Reports the first op defining a memref of signed or unsigned sub-byte
/// integers (a result, a block argument or a global), which arith cannot
/// widen; returns whether there was one.
static bool reportUnwidenable(Operation *root) {
  WalkResult result = root->walk([](Operation *op) {
    SmallVector<Type> types(op->getResultTypes());
    for (Region &region : op->getRegions())
      for (Block &block : region)
        llvm::append_range(types, block.getArgumentTypes());
    if (auto global = dyn_cast<memref::GlobalOp>(op))
      types.push_back(global.getType());
    for (Type type : types) {
      auto memref = dyn_cast<BaseMemRefType>(type);
      if (!memref || !isSubByteInteger(memref.getElementType()) ||
          isWidenedElement(memref.getElementType()))
        continue;
      op->emitOpError() << "carries " << type
                        << ": only signless integers narrower than a byte "
                           "can be stored as bytes (arith cannot extend "
                        << memref.getElementType() << ")";
      return WalkResult::interrupt();
    }
    return WalkResult::advance();
  });
  return result.wasInterrupted();
}

struct WidenBoolMemrefsPass
    : nnforge::impl::NNFWidenBoolMemrefsBase<WidenBoolMemrefsPass> {
  void runOnOperation() override {
    MLIRContext *context = &getContext();
    if (reportUnwidenable(getOperation()))
      return signalPassFailure();
    WidenBoolTypeConverter typeConverter;

    ConversionTarget target(*context);
    target.markUnknownOpDynamicallyLegal(
        [&](Operation *op) { return isWidened(typeConverter, op); });

    RewritePatternSet patterns(context);
    // The load / store / global patterns outrank the generic retyping, which
    // would otherwise build a load of i1 from an i8 memref.
    patterns.add<WidenLoad, WidenStore, WidenGlobal, WidenTransferRead,
                 WidenTransferWrite, WidenVectorLoad, WidenVectorStore>(
        typeConverter, context, /*benefit=*/2);
    patterns.add<RetypeRegionFreeOp>(typeConverter, context);
    populateFunctionOpInterfaceTypeConversionPattern<func::FuncOp>(
        patterns, typeConverter);
    populateReturnOpTypeConversionPattern(patterns, typeConverter);
    populateCallOpTypeConversionPattern(patterns, typeConverter);
    scf::populateSCFStructuralTypeConversionsAndLegality(typeConverter,
                                                         patterns, target);

    if (failed(applyPartialConversion(getOperation(), target,
                                      std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
