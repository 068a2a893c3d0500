//===- ConstantData.cpp - the bytes behind constant tensors ----------------===//

#include "nnforge/Transforms/ConstantData.h"

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

Attribute nnforge::newConstantData(
    ShapedType type, StringRef name,
    llvm::function_ref<void(MutableArrayRef<char>)> fill) {
  size_t size = type.getNumElements() * (type.getElementTypeBitWidth() / 8);
  if (size < kBlobMinBytes) {
    std::vector<char> bytes(size);
    fill(bytes);
    return DenseElementsAttr::getFromRawBuffer(type, bytes);
  }
  AsmResourceBlob blob = HeapAsmResourceBlob::allocate(size, kAlignment);
  fill(blob.getMutableData());
  return DenseResourceElementsAttr::get(type, (kPrefix + name).str(),
                                        std::move(blob));
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
