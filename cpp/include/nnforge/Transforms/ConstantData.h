//===- ConstantData.h - the bytes behind constant tensors ------------------===//
//
// Passes that rewrite weights at compile time read them through this.
//
//===----------------------------------------------------------------------===//

#ifndef NNFORGE_TRANSFORMS_CONSTANTDATA_H
#define NNFORGE_TRANSFORMS_CONSTANTDATA_H

#include "mlir/IR/Attributes.h"
#include "llvm/ADT/ArrayRef.h"

#include <optional>

namespace nnforge {

/// The raw, packed bytes of a non-splat constant of byte-sized elements
/// (inline dense elements or a `dense_resource` blob), or nothing when the
/// constant is some other kind of attribute or its blob is not loaded.
std::optional<llvm::ArrayRef<char>> rawConstantBytes(mlir::Attribute value);

} // namespace nnforge

#endif // NNFORGE_TRANSFORMS_CONSTANTDATA_H
