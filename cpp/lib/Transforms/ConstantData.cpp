//===- ConstantData.cpp - the bytes behind constant tensors ----------------===//

#include "nnforge/Transforms/ConstantData.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "mlir/IR/Operation.h"
#include "llvm/ADT/DenseSet.h"

#include <vector>

using namespace mlir;

namespace {
/// Prefix of the blobs `newConstantData` makes (the only ones released).
constexpr llvm::StringLiteral kPrefix = "nnf_";
/// Vector loads of a whole cache line.
constexpr size_t kAlignment = 64;
/// Smaller constants stay inline dense elements (readable in the IR).
constexpr size_t kBlobMinBytes = 64 * 1024;
/// The discardable attributes of `recordTransposeSource`.
constexpr llvm::StringLiteral kTransposeSource = "nnf.transpose_source";
constexpr llvm::StringLiteral kTransposePermutation =
    "nnf.transpose_permutation";

size_t byteSize(ShapedType type) {
  return type.getNumElements() * (type.getElementTypeBitWidth() / 8);
}
} // namespace

std::optional<ArrayRef<char>> nnforge::rawConstantBytes(Attribute value) {
  if (auto dense = dyn_cast<DenseElementsAttr>(value)) {
    if (dense.isSplat())
      return std::nullopt; // one element stands for all: not the packed data
    return dense.getRawData();
  }
  if (auto resource = dyn_cast<DenseResourceElementsAttr>(value)) {
    AsmResourceBlob *blob = resource.getRawHandle().getBlob();
    if (!blob)
      return std::nullopt;
    return blob->getData();
  }
  return std::nullopt;
}

bool nnforge::isStoredAsBlob(ShapedType type) {
  return byteSize(type) >= kBlobMinBytes;
}

Attribute nnforge::newUnfilledConstantBlob(ShapedType type, StringRef name,
                                           MutableArrayRef<char> &bytes) {
  AsmResourceBlob blob =
      HeapAsmResourceBlob::allocate(byteSize(type), kAlignment);
  bytes = blob.getMutableData();
  return DenseResourceElementsAttr::get(type, (kPrefix + name).str(),
                                        std::move(blob));
}

Attribute nnforge::newConstantData(
    ShapedType type, StringRef name,
    llvm::function_ref<void(MutableArrayRef<char>)> fill) {
  if (!isStoredAsBlob(type)) {
    std::vector<char> bytes(byteSize(type));
    fill(bytes);
    return DenseElementsAttr::getFromRawBuffer(type, bytes);
  }
  MutableArrayRef<char> bytes;
  Attribute value = newUnfilledConstantBlob(type, name, bytes);
  fill(bytes);
  return value;
}

bool nnforge::isReleasable(Attribute value) {
  auto resource = dyn_cast<DenseResourceElementsAttr>(value);
  return resource && resource.getRawHandle().getKey().starts_with(kPrefix);
}

void nnforge::recordTransposeSource(Operation *constant, Attribute source,
                                    ArrayRef<int64_t> permutation) {
  if (!isa<DenseResourceElementsAttr>(source) || isReleasable(source))
    return;
  Builder builder(constant->getContext());
  constant->setAttr(kTransposeSource, source);
  constant->setAttr(kTransposePermutation,
                    builder.getDenseI64ArrayAttr(permutation));
}

std::optional<nnforge::TransposeSource>
nnforge::transposeSource(Operation *constant) {
  auto source = dyn_cast_or_null<TypedAttr>(constant->getAttr(kTransposeSource));
  auto permutation = dyn_cast_or_null<DenseI64ArrayAttr>(
      constant->getAttr(kTransposePermutation));
  if (!source || !permutation || constant->getNumResults() != 1)
    return std::nullopt;
  auto sourceType = dyn_cast<ShapedType>(source.getType());
  auto type = dyn_cast<ShapedType>(constant->getResult(0).getType());
  if (!sourceType || !type || !sourceType.hasStaticShape() ||
      !type.hasStaticShape() || !type.getElementType().isIntOrFloat() ||
      type.getElementTypeBitWidth() % 8 != 0 ||
      sourceType.getElementType() != type.getElementType() ||
      sourceType.getRank() != type.getRank() ||
      static_cast<int64_t>(permutation.size()) != type.getRank())
    return std::nullopt;
  SmallVector<bool> seen(type.getRank(), false);
  for (auto [d, from] : llvm::enumerate(permutation.asArrayRef())) {
    if (from < 0 || from >= type.getRank() || seen[from] ||
        sourceType.getDimSize(from) != type.getDimSize(d))
      return std::nullopt;
    seen[from] = true;
  }
  std::optional<ArrayRef<char>> bytes = rawConstantBytes(source);
  if (!bytes || bytes->size() != byteSize(sourceType))
    return std::nullopt;
  return TransposeSource{source, SmallVector<int64_t>(permutation.asArrayRef())};
}

void nnforge::releaseUnusedConstants(Operation *module,
                                     ArrayRef<Attribute> values) {
  if (values.empty() || module->getParentOp())
    return;
  llvm::DenseSet<Attribute> used;
  module->walk([&](Operation *op) {
    for (NamedAttribute attribute : op->getAttrs())
      used.insert(attribute.getValue());
  });
  for (Attribute value : values) {
    auto resource = dyn_cast<DenseResourceElementsAttr>(value);
    if (!resource || used.contains(value) ||
        !resource.getRawHandle().getKey().starts_with(kPrefix))
      continue;
    if (auto *entry = resource.getRawHandle().getResource())
      entry->setBlob(AsmResourceBlob());
  }
}
