//===- ConstantData.h - the bytes behind constant tensors ------------------===//
//
// Passes that rewrite weights at compile time read them through this, and
// write the rewritten weights as `dense_resource` blobs that are freed once
// no op uses them (an inline `DenseElementsAttr` lives, uniqued, as long as
// its context: a weight transposed, then packed, then padded stayed in
// memory four times). A constant that is a transposed copy records its
// source, so that a pass rewriting it again (packing) can free the copy
// first and read the source instead: only one rewritten copy of a weight
// is in memory at a time.
//
//===----------------------------------------------------------------------===//

#ifndef NNFORGE_TRANSFORMS_CONSTANTDATA_H
#define NNFORGE_TRANSFORMS_CONSTANTDATA_H

#include "mlir/IR/Attributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/SmallVector.h"
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

/// Whether `newConstantData` makes a constant of `type` a blob (64 KiB or
/// more), rather than inline dense elements.
bool isStoredAsBlob(mlir::ShapedType type);

/// A blob constant of `type` (`isStoredAsBlob`), named as `newConstantData`
/// names it, whose bytes the caller writes later, through `bytes`: until
/// then its pages are untouched, so not resident.
mlir::Attribute newUnfilledConstantBlob(mlir::ShapedType type,
                                        llvm::StringRef name,
                                        llvm::MutableArrayRef<char> &bytes);

/// Whether `value` is data nnforge's passes made (which
/// `releaseUnusedConstants` frees).
bool isReleasable(mlir::Attribute value);

/// Where a constant's data came from: `source` permuted by `permutation`
/// (dimension d of the constant is dimension `permutation[d]` of source).
struct TransposeSource {
  mlir::Attribute source;
  llvm::SmallVector<int64_t> permutation;
};

/// Records on `constant` (an `arith.constant` whose value is `source`
/// transposed by `permutation`) where its data came from, as discardable
/// attributes (`nnf.transpose_source`, `nnf.transpose_permutation`). Only
/// for `dense_resource` sources that stay in memory anyway (not
/// `isReleasable`: the record keeps its source in use), which the IR
/// names rather than repeats.
void recordTransposeSource(mlir::Operation *constant, mlir::Attribute source,
                           llvm::ArrayRef<int64_t> permutation);

/// The source `constant` records (`recordTransposeSource`), if its data can
/// still be read and matches the constant's type; else nothing.
std::optional<TransposeSource> transposeSource(mlir::Operation *constant);

/// Frees the blobs of `values` (constants made by `newConstantData`) that
/// no op nested in `module` refers to any more. `module` must be a
/// top-level op (the blobs are shared by everything in its context), else
/// nothing is freed.
void releaseUnusedConstants(mlir::Operation *module,
                            llvm::ArrayRef<mlir::Attribute> values);

} // namespace nnforge

#endif // NNFORGE_TRANSFORMS_CONSTANTDATA_H
