//===- NNFOps.cpp - nnf operations ----------------------------------------===//
//
// Result type inference doubles as the verifier: each op checks its operands
// while computing its result type, so the same precise message reaches users
// of the parser and of the builders (C++ and Python).
//
//===----------------------------------------------------------------------===//

#include "nnforge/Dialect/NNF/NNFOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/IR/TypeUtilities.h"

using namespace mlir;
using namespace nnforge::nnf;

namespace {

/// Collects the checks of one op's operands; every failure is reported as
/// `'nnf.<op>' op <message>` at the op's location (when there is one).
class OperandChecker {
public:
  OperandChecker(std::optional<Location> loc, StringRef opName)
      : loc(loc), opName(opName) {}

  LogicalResult fail(const Twine &message) const {
    return emitOptionalError(loc, "'", opName, "' op ", message);
  }

  /// The ranked floating-point tensor type of `value`, or a failure naming it.
  FailureOr<RankedTensorType> floatTensor(Value value, StringRef name) const {
    auto type = dyn_cast<RankedTensorType>(value.getType());
    if (!type || !isa<Float32Type, Float16Type, BFloat16Type>(
                     type.getElementType())) {
      (void)fail(Twine(name) + " must be a ranked tensor of f32, f16 or bf16, "
                 "got " + typeString(value.getType()));
      return failure();
    }
    return type;
  }

  /// Checks that `type` has `rank` dimensions.
  LogicalResult rank(RankedTensorType type, StringRef name,
                     int64_t rank) const {
    if (type.getRank() == rank)
      return success();
    return fail(Twine(name) + " must have rank " + Twine(rank) + ", got " +
                typeString(type));
  }

  /// Checks that `type` has the element type of `reference`.
  LogicalResult sameElementType(RankedTensorType type, StringRef name,
                                RankedTensorType reference,
                                StringRef referenceName) const {
    if (type.getElementType() == reference.getElementType())
      return success();
    return fail(Twine(name) + " element type " +
                typeString(type.getElementType()) + " differs from " +
                referenceName + " element type " +
                typeString(reference.getElementType()));
  }

  /// Checks that two dimensions agree where both are static.
  LogicalResult sameDim(int64_t lhs, const Twine &lhsName, int64_t rhs,
                        const Twine &rhsName) const {
    if (ShapedType::isDynamic(lhs) || ShapedType::isDynamic(rhs) || lhs == rhs)
      return success();
    return fail(lhsName + " is " + Twine(lhs) + " but must equal " + rhsName +
                ", which is " + Twine(rhs));
  }

  /// Normalizes a possibly negative `axis` of a rank-`rank` tensor.
  FailureOr<int64_t> axis(IntegerAttr axisAttr, int64_t rank) const {
    if (!axisAttr) {
      (void)fail("requires attribute 'axis'");
      return failure();
    }
    int64_t axis = axisAttr.getInt();
    if (axis < -rank || axis >= rank) {
      (void)fail("axis " + Twine(axis) + " is out of range for rank " +
                 Twine(rank) + " (expected -" + Twine(rank) + " <= axis < " +
                 Twine(rank) + ")");
      return failure();
    }
    return axis < 0 ? axis + rank : axis;
  }

  template <typename T>
  static std::string typeString(T typeOrAttr) {
    std::string text;
    llvm::raw_string_ostream os(text);
    os << typeOrAttr;
    return text;
  }

private:
  std::optional<Location> loc;
  StringRef opName;
};


/// Checks an optional per-channel bias `[channels]`.
LogicalResult checkBias(const OperandChecker &check, Value bias,
                        RankedTensorType input, int64_t channels,
                        StringRef channelsName) {
  if (!bias)
    return success();
  FailureOr<RankedTensorType> type = check.floatTensor(bias, "bias");
  if (failed(type) || failed(check.rank(*type, "bias", 1)) ||
      failed(check.sameElementType(*type, "bias", input, "input")))
    return failure();
  return check.sameDim(type->getDimSize(0), "bias dim 0", channels,
                       channelsName);
}

} // namespace

bool nnforge::nnf::areRefinementsOf(TypeRange inferred, TypeRange actual) {
  if (inferred.size() != actual.size())
    return false;
  for (auto [lhs, rhs] : llvm::zip(inferred, actual))
    if (getElementTypeOrSelf(lhs) != getElementTypeOrSelf(rhs) ||
        failed(verifyCompatibleShape(lhs, rhs)))
      return false;
  return true;
}

//===----------------------------------------------------------------------===//
// LinearOp
//===----------------------------------------------------------------------===//

LogicalResult LinearOp::inferReturnTypes(MLIRContext *,
                                         std::optional<Location> loc,
                                         Adaptor adaptor,
                                         SmallVectorImpl<Type> &results) {
  OperandChecker check(loc, getOperationName());
  FailureOr<RankedTensorType> input =
      check.floatTensor(adaptor.getInput(), "input");
  FailureOr<RankedTensorType> weight =
      check.floatTensor(adaptor.getWeight(), "weight");
  if (failed(input) || failed(weight))
    return failure();
  if (input->getRank() < 1)
    return check.fail("input must have rank >= 1, got " +
                      OperandChecker::typeString(*input));
  if (failed(check.rank(*weight, "weight", 2)) ||
      failed(check.sameElementType(*weight, "weight", *input, "input")))
    return failure();
  int64_t inputLast = input->getRank() - 1;
  if (failed(check.sameDim(weight->getDimSize(1), "weight dim 1",
                           input->getDimSize(inputLast),
                           "input dim " + Twine(inputLast) + " (K)")) ||
      failed(checkBias(check, adaptor.getBias(), *input,
                       weight->getDimSize(0), "weight dim 0 (N)")))
    return failure();

  SmallVector<int64_t> shape(input->getShape().drop_back());
  shape.push_back(weight->getDimSize(0));
  results.push_back(RankedTensorType::get(shape, input->getElementType()));
  return success();
}

//===----------------------------------------------------------------------===//
// Conv2DOp
//===----------------------------------------------------------------------===//

LogicalResult Conv2DOp::inferReturnTypes(MLIRContext *,
                                         std::optional<Location> loc,
                                         Adaptor adaptor,
                                         SmallVectorImpl<Type> &results) {
  OperandChecker check(loc, getOperationName());
  FailureOr<RankedTensorType> input =
      check.floatTensor(adaptor.getInput(), "input");
  FailureOr<RankedTensorType> filter =
      check.floatTensor(adaptor.getFilter(), "filter");
  if (failed(input) || failed(filter) ||
      failed(check.rank(*input, "input", 4)) ||
      failed(check.rank(*filter, "filter", 4)) ||
      failed(check.sameElementType(*filter, "filter", *input, "input")))
    return failure();

  // Builders that pass attributes by name (Python's) infer types before ODS
  // fills in default values: an absent attribute means its default.
  static constexpr int64_t kOnes[] = {1, 1}, kZeros[] = {0, 0, 0, 0};
  auto orDefault = [](DenseI64ArrayAttr attr, ArrayRef<int64_t> fallback) {
    return attr ? attr.asArrayRef() : fallback;
  };
  ArrayRef<int64_t> strides = orDefault(adaptor.getStridesAttr(), kOnes);
  ArrayRef<int64_t> padding = orDefault(adaptor.getPaddingAttr(), kZeros);
  ArrayRef<int64_t> dilations = orDefault(adaptor.getDilationsAttr(), kOnes);
  int64_t groups =
      adaptor.getGroupsAttr() ? adaptor.getGroupsAttr().getInt() : 1;
  if (strides.size() != 2 || llvm::any_of(strides, [](int64_t s) {
        return s < 1;
      }))
    return check.fail("strides must be 2 positive integers [h, w]");
  if (dilations.size() != 2 || llvm::any_of(dilations, [](int64_t d) {
        return d < 1;
      }))
    return check.fail("dilations must be 2 positive integers [h, w]");
  if (padding.size() != 4 || llvm::any_of(padding, [](int64_t p) {
        return p < 0;
      }))
    return check.fail(
        "padding must be 4 non-negative integers [top, left, bottom, right]");
  if (groups < 1)
    return check.fail("groups must be positive, got " + Twine(groups));

  int64_t channels = input->getDimSize(1);
  int64_t outChannels = filter->getDimSize(0);
  int64_t filterChannels = filter->getDimSize(1);
  if (!ShapedType::isDynamic(channels) && channels % groups != 0)
    return check.fail("input channels (" + Twine(channels) +
                      ") must be divisible by groups (" + Twine(groups) + ")");
  if (!ShapedType::isDynamic(outChannels) && outChannels % groups != 0)
    return check.fail("filter dim 0, output channels (" + Twine(outChannels) +
                      "), must be divisible by groups (" + Twine(groups) +
                      ")");
  if (!ShapedType::isDynamic(channels) &&
      failed(check.sameDim(filterChannels, "filter dim 1", channels / groups,
                           "input channels / groups")))
    return failure();
  if (failed(checkBias(check, adaptor.getBias(), *input, outChannels,
                       "filter dim 0 (output channels)")))
    return failure();

  SmallVector<int64_t> shape = {input->getDimSize(0), outChannels};
  for (int i = 0; i < 2; ++i) {
    int64_t size = input->getDimSize(2 + i);
    int64_t kernel = filter->getDimSize(2 + i);
    if (ShapedType::isDynamic(size) || ShapedType::isDynamic(kernel)) {
      shape.push_back(ShapedType::kDynamic);
      continue;
    }
    int64_t padded = size + padding[i] + padding[i + 2];
    int64_t window = dilations[i] * (kernel - 1) + 1;
    if (padded < window)
      return check.fail(StringRef(i == 0 ? "height" : "width") +
                        " of the padded input (" + Twine(padded) +
                        ") is smaller than the dilated filter (" +
                        Twine(window) + ")");
    shape.push_back((padded - window) / strides[i] + 1);
  }
  results.push_back(RankedTensorType::get(shape, input->getElementType()));
  return success();
}

//===----------------------------------------------------------------------===//
// SoftmaxOp
//===----------------------------------------------------------------------===//

LogicalResult SoftmaxOp::inferReturnTypes(MLIRContext *,
                                          std::optional<Location> loc,
                                          Adaptor adaptor,
                                          SmallVectorImpl<Type> &results) {
  OperandChecker check(loc, getOperationName());
  FailureOr<RankedTensorType> input =
      check.floatTensor(adaptor.getInput(), "input");
  if (failed(input) || failed(check.axis(adaptor.getAxisAttr(), input->getRank())))
    return failure();
  results.push_back(*input);
  return success();
}

//===----------------------------------------------------------------------===//
// LayerNormOp
//===----------------------------------------------------------------------===//

LogicalResult LayerNormOp::inferReturnTypes(MLIRContext *,
                                            std::optional<Location> loc,
                                            Adaptor adaptor,
                                            SmallVectorImpl<Type> &results) {
  OperandChecker check(loc, getOperationName());
  FailureOr<RankedTensorType> input =
      check.floatTensor(adaptor.getInput(), "input");
  if (failed(input))
    return failure();
  FailureOr<int64_t> axis =
      check.axis(adaptor.getAxisAttr(), input->getRank());
  if (failed(axis))
    return failure();
  if (FloatAttr epsilon = adaptor.getEpsilonAttr();
      epsilon && epsilon.getValueAsDouble() < 0)
    return check.fail("epsilon must be non-negative");

  ArrayRef<int64_t> normalized = input->getShape().drop_front(*axis);
  for (auto [operand, name] : {std::pair{adaptor.getScale(), "scale"},
                               std::pair{adaptor.getBias(), "bias"}}) {
    if (!operand)
      continue;
    FailureOr<RankedTensorType> type = check.floatTensor(operand, name);
    if (failed(type) ||
        failed(check.rank(*type, name, normalized.size())) ||
        failed(check.sameElementType(*type, name, *input, "input")))
      return failure();
    for (auto [i, size] : llvm::enumerate(normalized))
      if (failed(check.sameDim(type->getDimSize(i),
                               Twine(name) + " dim " + Twine(i), size,
                               "input dim " + Twine(*axis + i))))
        return failure();
  }
  results.push_back(*input);
  return success();
}

//===----------------------------------------------------------------------===//
// AttentionOp
//===----------------------------------------------------------------------===//

LogicalResult AttentionOp::inferReturnTypes(MLIRContext *,
                                            std::optional<Location> loc,
                                            Adaptor adaptor,
                                            SmallVectorImpl<Type> &results) {
  OperandChecker check(loc, getOperationName());
  FailureOr<RankedTensorType> query =
      check.floatTensor(adaptor.getQuery(), "query");
  FailureOr<RankedTensorType> key = check.floatTensor(adaptor.getKey(), "key");
  FailureOr<RankedTensorType> value =
      check.floatTensor(adaptor.getValue(), "value");
  if (failed(query) || failed(key) || failed(value))
    return failure();
  int64_t rank = query->getRank();
  if (rank < 2)
    return check.fail("query must have rank >= 2 ([..., L, D]), got " +
                      OperandChecker::typeString(*query));
  if (failed(check.rank(*key, "key", rank)) ||
      failed(check.rank(*value, "value", rank)) ||
      failed(check.sameElementType(*key, "key", *query, "query")) ||
      failed(check.sameElementType(*value, "value", *query, "query")))
    return failure();
  for (int64_t i = 0; i < rank - 2; ++i)
    if (failed(check.sameDim(key->getDimSize(i), "key dim " + Twine(i),
                             query->getDimSize(i), "query dim " + Twine(i))) ||
        failed(check.sameDim(value->getDimSize(i), "value dim " + Twine(i),
                             query->getDimSize(i), "query dim " + Twine(i))))
      return failure();
  if (failed(check.sameDim(key->getDimSize(rank - 1),
                           "key dim " + Twine(rank - 1) + " (D)",
                           query->getDimSize(rank - 1),
                           "query dim " + Twine(rank - 1) + " (D)")) ||
      failed(check.sameDim(value->getDimSize(rank - 2),
                           "value dim " + Twine(rank - 2) + " (S)",
                           key->getDimSize(rank - 2),
                           "key dim " + Twine(rank - 2) + " (S)")))
    return failure();
  if (std::optional<APFloat> scale = adaptor.getScale();
      scale && !(scale->convertToDouble() > 0))
    return check.fail("scale must be positive");

  if (Value mask = adaptor.getMask()) {
    auto maskType = cast<RankedTensorType>(mask.getType());
    Type maskElement = maskType.getElementType();
    if (!maskElement.isInteger(1) && maskElement != query->getElementType())
      return check.fail("mask element type must be i1 or the query element "
                        "type " +
                        OperandChecker::typeString(query->getElementType()) +
                        ", got " + OperandChecker::typeString(maskElement));
    if (maskType.getRank() > rank)
      return check.fail("mask rank (" + Twine(maskType.getRank()) +
                        ") exceeds query rank (" + Twine(rank) + ")");
    // The mask broadcasts (numpy rules) to the scores [..., L, S].
    SmallVector<int64_t> scores(query->getShape().drop_back());
    scores.push_back(key->getDimSize(rank - 2));
    int64_t offset = rank - maskType.getRank();
    for (auto [i, size] : llvm::enumerate(maskType.getShape()))
      if (size != 1 &&
          failed(check.sameDim(size, "mask dim " + Twine(i),
                               scores[offset + i],
                               "scores dim " + Twine(offset + i))))
        return failure();
  }

  SmallVector<int64_t> shape(query->getShape().drop_back());
  shape.push_back(value->getDimSize(rank - 1));
  results.push_back(RankedTensorType::get(shape, query->getElementType()));
  return success();
}

//===----------------------------------------------------------------------===//
// ActivationOp
//===----------------------------------------------------------------------===//

LogicalResult ActivationOp::inferReturnTypes(MLIRContext *,
                                             std::optional<Location> loc,
                                             Adaptor adaptor,
                                             SmallVectorImpl<Type> &results) {
  OperandChecker check(loc, getOperationName());
  FailureOr<RankedTensorType> input =
      check.floatTensor(adaptor.getInput(), "input");
  if (failed(input))
    return failure();
  results.push_back(*input);
  return success();
}

OpFoldResult ActivationOp::fold(FoldAdaptor) {
  if (getKind() == ActivationKind::none)
    return getInput();
  return {};
}

namespace {

/// activation(op{activation = none}) -> op{activation = kind}, for the ops
/// that carry a fused activation, when the activation is the op's only user.
template <typename FusingOp>
struct FuseActivationInto : OpRewritePattern<ActivationOp> {
  using OpRewritePattern<ActivationOp>::OpRewritePattern;

  LogicalResult matchAndRewrite(ActivationOp activation,
                                PatternRewriter &rewriter) const override {
    auto producer = activation.getInput().getDefiningOp<FusingOp>();
    if (!producer || producer.getActivation() != ActivationKind::none ||
        !producer->hasOneUse() ||
        producer.getType() != activation.getType())
      return failure();
    rewriter.modifyOpInPlace(
        producer, [&] { producer.setActivation(activation.getKind()); });
    rewriter.replaceOp(activation, producer.getResult());
    return success();
  }
};

} // namespace

void ActivationOp::getCanonicalizationPatterns(RewritePatternSet &patterns,
                                               MLIRContext *context) {
  patterns.add<FuseActivationInto<LinearOp>, FuseActivationInto<Conv2DOp>>(
      context);
}

LogicalResult DispatchOp::verify() {
  Block &body = getBody().front();
  if (body.getNumArguments() != getInputs().size())
    return emitOpError("has ")
           << getInputs().size() << " inputs but its region takes "
           << body.getNumArguments() << " arguments";
  for (auto [index, input, argument] :
       llvm::enumerate(getInputs(), body.getArguments()))
    if (input.getType() != argument.getType())
      return emitOpError("input #")
             << index << " is " << input.getType()
             << " but region argument #" << index << " is "
             << argument.getType();
  auto yield = dyn_cast<YieldOp>(body.getTerminator());
  if (!yield)
    return emitOpError("region must end with nnf.yield");
  if (yield.getValues().getTypes() != getResultTypes())
    return emitOpError("yields ")
           << yield.getValues().getTypes() << " but its results are "
           << getResultTypes();
  return success();
}

#define GET_OP_CLASSES
#include "nnforge/Dialect/NNF/NNFOps.cpp.inc"
