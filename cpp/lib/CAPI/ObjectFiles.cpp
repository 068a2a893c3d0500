//===- ObjectFiles.cpp - CPU object files, for Python ---------------------===//

#include "nnforge-c/ObjectFiles.h"

#include "mlir/CAPI/IR.h"
#include "nnforge/Target/CPU/ObjectFiles.h"

#include <algorithm>
#include <cstring>

int nnforgeCompileObjectFiles(MlirOperation module, const char *cpu,
                              const char *features, int threads,
                              const char *prefix, char *message,
                              size_t capacity) {
  nnforge::CpuTarget target{cpu ? cpu : "", features ? features : ""};
  llvm::Expected<llvm::SmallVector<std::string>> paths =
      nnforge::compileToObjectFiles(unwrap(module), target,
                                    static_cast<unsigned>(std::max(threads, 1)),
                                    prefix);
  if (paths)
    return static_cast<int>(paths->size());
  std::string text = llvm::toString(paths.takeError());
  if (capacity > 0) {
    size_t length = std::min(text.size(), capacity - 1);
    std::memcpy(message, text.data(), length);
    message[length] = '\0';
  }
  return 0;
}
