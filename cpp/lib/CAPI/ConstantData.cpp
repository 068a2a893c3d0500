//===- ConstantData.cpp - the bytes of constants, for Python --------------===//

#include "nnforge-c/ConstantData.h"

#include "mlir/CAPI/IR.h"
#include "nnforge/Transforms/ConstantData.h"

bool nnforgeConstantBytes(MlirAttribute attribute, const void **data,
                          intptr_t *size) {
  std::optional<llvm::ArrayRef<char>> bytes =
      nnforge::rawConstantBytes(unwrap(attribute));
  if (!bytes)
    return false;
  *data = bytes->data();
  *size = static_cast<intptr_t>(bytes->size());
  return true;
}

void nnforgeReleaseUnusedConstants(MlirOperation module,
                                   const MlirAttribute *values,
                                   intptr_t count) {
  llvm::SmallVector<mlir::Attribute> attributes;
  for (intptr_t index = 0; index < count; ++index)
    attributes.push_back(unwrap(values[index]));
  nnforge::releaseUnusedConstants(unwrap(module), attributes);
}
