//===- ConstantData.h - the bytes behind constant tensors ------------------===//
//
// Passes that rewrite weights at compile time read them through this, and
// write the rewritten weights as `dense_resource` blobs that are freed once
// no op uses them (an inline `DenseElementsAttr` lives, uniqued, as long as
// its context: a weight transposed, then packed, then padded stayed in
// memory four times).
//
//===----------------------------------------------------------------------===//

#ifndef NNFORGE_TRANSFORMS_CONSTANTDATA_H
#define NNFORGE_TRANSFORMS_CONSTANTDATA_H

#include "mlir/IR/Attributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/STLFunctionalExtras.h"

#include <optional>

namespace mlir {
class Operation;
} // namespace mlir

namespace nnforge {

/// The raw, packed bytes of a non-splat constant of byte-sized elements
/// (inline dense elements or a `dense_resource` blob), or nothing when the
/// constant is some other kind of attribute or its blob is not loaded.
std::optional<llvm::ArrayRef<char>> rawConstantBytes(mlir::Attribute value);

/// A new constant of `type` (static shape, byte-sized elements) whose bytes
/// `fill` writes: from 64 KiB, a `dense_resource` blob named after `name`
/// (made unique) and the prefix `nnf_`, which `releaseUnusedConstants`
/// frees; smaller, inline dense elements.
mlir::Attribute
newConstantData(mlir::ShapedType type, llvm::StringRef name,
                llvm::function_ref<void(llvm::MutableArrayRef<char>)> fill);

/// Frees the blobs of `values` (constants made by `newConstantData`) that
/// no op nested in `module` refers to any more. `module` must be a
/// top-level op (the blobs are shared by everything in its context), else
/// nothing is freed.
void releaseUnusedConstants(mlir::Operation *module,
                            llvm::ArrayRef<mlir::Attribute> values);

} // namespace nnforge

#endif // NNFORGE_TRANSFORMS_CONSTANTDATA_H
