//===- ObjectFiles.cpp - LLVM-dialect modules to x86-64 object files ------===//

#include "nnforge/Target/CPU/ObjectFiles.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/Operation.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/OpenMP/OpenMPToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Export.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/SmallString.h"
#include "llvm/Bitcode/BitcodeReader.h"
#include "llvm/Bitcode/BitcodeWriter.h"
#include "llvm/IR/DiagnosticInfo.h"
#include "llvm/IR/DiagnosticPrinter.h"
#include "llvm/IR/IRBuilder.h"
#include "llvm/IR/LLVMContext.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/Module.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Passes/PassBuilder.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm/Target/TargetOptions.h"
#include "llvm/TargetParser/Host.h"
#include "llvm/TargetParser/SubtargetFeature.h"
#include "llvm/TargetParser/Triple.h"
#include "llvm/Transforms/Utils/Cloning.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>

using namespace llvm;

namespace {

// Partitions per thread: taken from a queue, so that a thread that drew
// cheap ones takes more (instruction counts before -O3 predict code
// generation time only roughly).
constexpr unsigned kPartitionsPerThread = 4;

// The system nnforge's CPU code is for. A module without a triple has no
// known C library: LLVM then expands every memcpy into a byte loop.
constexpr StringLiteral kTriple = "x86_64-unknown-linux-gnu";

std::string hostFeatures() {
  SubtargetFeatures features;
  for (const auto &feature : sys::getHostCPUFeatures())
    features.AddFeature(feature.getKey(), feature.getValue());
  return features.getString();
}

/// Collects the errors LLVM reports while it compiles (an inline assembly it
/// cannot assemble), which would otherwise end the process: with partitions
/// compiled on other threads, before the message is even seen.
class ErrorCollector : public DiagnosticHandler {
public:
  bool handleDiagnostics(const DiagnosticInfo &info) override {
    if (info.getSeverity() == DS_Error) {
      raw_string_ostream out(messages);
      DiagnosticPrinterRawOStream printer(out);
      info.print(printer);
      out << "\n";
    }
    return true;
  }
  std::string messages;
};

/// A target machine for `target` (-O3, position-independent code: the
/// objects go into shared libraries). Thread-safe.
Expected<std::unique_ptr<TargetMachine>>
createMachine(const nnforge::CpuTarget &target) {
  static std::once_flag initialized;
  std::call_once(initialized, [] {
    InitializeNativeTarget();
    InitializeNativeTargetAsmPrinter();
    InitializeNativeTargetAsmParser(); // inline assembly
  });
  Triple triple(kTriple);
  std::string error;
  const Target *found = TargetRegistry::lookupTarget(triple, error);
  if (!found)
    return createStringError(inconvertibleErrorCode(),
                             "no LLVM target for " + kTriple + ": " + error);
  bool host = target.cpu.empty();
  std::string cpu = host ? sys::getHostCPUName().str() : target.cpu;
  std::string features = host ? hostFeatures() : target.features;
  std::unique_ptr<TargetMachine> machine(found->createTargetMachine(
      triple, cpu, features, TargetOptions(), Reloc::PIC_, std::nullopt,
      CodeGenOptLevel::Aggressive));
  if (!machine)
    return createStringError(inconvertibleErrorCode(),
                             "LLVM cannot generate code for the CPU " + cpu);
  return machine;
}

/// Adds `_mlir_<name>(ptr)` for each function `module` defines and exports,
/// as MLIR's ExecutionEngine does (`nnforge.runtime.Executable` calls it):
/// the parameter points to an array of pointers, one to each argument,
/// then one to where the result (if any) is stored.
void addPackedEntryPoints(Module &module) {
  LLVMContext &context = module.getContext();
  IRBuilder<> builder(context);
  SmallVector<Function *> exported;
  for (Function &function : module)
    if (!function.isDeclaration() && !function.hasLocalLinkage())
      exported.push_back(&function);
  auto *packedType =
      FunctionType::get(builder.getVoidTy(), builder.getPtrTy(), false);
  for (Function *function : exported) {
    Function *packed =
        Function::Create(packedType, GlobalValue::ExternalLinkage,
                         "_mlir_" + function->getName(), module);
    builder.SetInsertPoint(BasicBlock::Create(context, "entry", packed));
    Value *pointers = packed->getArg(0);
    auto pointerAt = [&](unsigned index) {
      return builder.CreateLoad(
          builder.getPtrTy(),
          builder.CreateConstGEP1_64(builder.getPtrTy(), pointers, index));
    };
    SmallVector<Value *> arguments;
    for (Argument &argument : function->args())
      arguments.push_back(builder.CreateLoad(argument.getType(),
                                             pointerAt(argument.getArgNo())));
    CallInst *result = builder.CreateCall(function, arguments);
    if (!result->getType()->isVoidTy())
      builder.CreateStore(result, pointerAt(arguments.size()));
    builder.CreateRetVoid();
  }
}

/// Points the translated module's calls of the OpenMP runtime
/// (`__kmpc_<name>`) at nnforge's runtime, which implements them as
/// `nnforge_kmpc_<name>` (cpp/runtime/openmp.c): a model never binds to the
/// entry points of another OpenMP runtime loaded in the process.
void callNNForgeOpenMPEntryPoints(Module &module) {
  for (Function &function : module)
    if (function.isDeclaration() && function.getName().starts_with("__kmpc_"))
      function.setName("nnforge_" + function.getName().drop_front(2));
}

/// LLVM's -O3 pipeline, every vectorizer and unroller on (as MLIR's
/// ExecutionEngine runs it).
void optimize(Module &module, TargetMachine &machine) {
  LoopAnalysisManager loops;
  FunctionAnalysisManager functions;
  CGSCCAnalysisManager sccs;
  ModuleAnalysisManager modules;
  PipelineTuningOptions tuning;
  tuning.LoopUnrolling = true;
  tuning.LoopInterleaving = true;
  tuning.LoopVectorization = true;
  tuning.SLPVectorization = true;
  PassBuilder builder(&machine, tuning);
  builder.registerModuleAnalyses(modules);
  builder.registerCGSCCAnalyses(sccs);
  builder.registerFunctionAnalyses(functions);
  builder.registerLoopAnalyses(loops);
  builder.crossRegisterProxies(loops, functions, sccs, modules);
  builder.buildPerModuleDefaultPipeline(OptimizationLevel::O3)
      .run(module, modules);
}

/// Optimizes `module` and writes its object file to `path`.
Error compileModule(Module &module, const nnforge::CpuTarget &target,
                    StringRef path) {
  auto collector = std::make_unique<ErrorCollector>();
  ErrorCollector &errors = *collector;
  module.getContext().setDiagnosticHandler(std::move(collector));
  Expected<std::unique_ptr<TargetMachine>> machine = createMachine(target);
  if (!machine)
    return machine.takeError();
  optimize(module, **machine);
  std::error_code code;
  raw_fd_ostream out(path, code, sys::fs::OF_None);
  if (code)
    return createStringError(code, "cannot write " + path + ": " +
                                       code.message());
  legacy::PassManager codegen;
  if ((*machine)->addPassesToEmitFile(codegen, out, nullptr,
                                      CodeGenFileType::ObjectFile))
    return createStringError(inconvertibleErrorCode(),
                             "LLVM cannot write object files for " + kTriple);
  codegen.run(module);
  if (!errors.messages.empty())
    return createStringError(inconvertibleErrorCode(),
                             StringRef(errors.messages).rtrim());
  out.close();
  if (out.has_error())
    return createStringError(out.error(), "cannot write " + path + ": " +
                                              out.error().message());
  return Error::success();
}

/// `module` split into `count` modules of about equal code size, as
/// bitcode: each function defined in one of them (the largest first, each
/// into the partition with the least code so far), each constant local to
/// the module copied into every partition, every other global defined in
/// the first. (LLVM's SplitModule keeps the functions that share a local
/// constant together: OpenMP's source locations put nearly all of a model
/// into one partition.) Functions and variables local to the module that
/// another partition may refer to become hidden globals.
SmallVector<SmallString<0>> partition(Module &module, unsigned count) {
  for (GlobalValue &value : module.global_values()) {
    auto *variable = dyn_cast<GlobalVariable>(&value);
    if (!value.hasLocalLinkage() || (variable && variable->isConstant()))
      continue;
    if (!value.hasName())
      value.setName("nnforge.local");
    value.setLinkage(GlobalValue::ExternalLinkage);
    value.setVisibility(GlobalValue::HiddenVisibility);
  }
  SmallVector<Function *> functions;
  for (Function &function : module)
    if (!function.isDeclaration())
      functions.push_back(&function);
  llvm::stable_sort(functions, [](Function *a, Function *b) {
    return a->getInstructionCount() > b->getInstructionCount();
  });
  SmallVector<uint64_t> sizes(count, 0);
  DenseMap<const GlobalValue *, unsigned> owner;
  for (Function *function : functions) {
    unsigned smallest = llvm::min_element(sizes) - sizes.begin();
    owner[function] = smallest;
    sizes[smallest] += function->getInstructionCount() + 1;
  }
  SmallVector<SmallString<0>> bitcodes(count);
  for (unsigned index = 0; index < count; ++index) {
    ValueToValueMapTy values;
    std::unique_ptr<Module> part =
        CloneModule(module, values, [&](const GlobalValue *value) {
          if (isa<Function>(value))
            return owner.lookup(value) == index;
          return value->hasLocalLinkage() || index == 0;
        });
    raw_svector_ostream out(bitcodes[index]);
    WriteBitcodeToFile(*part, out);
  }
  return bitcodes;
}

/// `compileModule` on a partition serialized as bitcode, in an LLVM
/// context of its own (a context is not to be shared between threads).
Error compilePartition(StringRef bitcode, const nnforge::CpuTarget &target,
                       StringRef path) {
  LLVMContext context;
  Expected<std::unique_ptr<Module>> module =
      parseBitcodeFile(MemoryBufferRef(bitcode, path), context);
  if (!module)
    return module.takeError();
  return compileModule(**module, target, path);
}

} // namespace

Expected<SmallVector<std::string>>
nnforge::compileToObjectFiles(mlir::Operation *module, const CpuTarget &target,
                              unsigned threads, StringRef prefix) {
  mlir::DialectRegistry registry;
  mlir::registerBuiltinDialectTranslation(registry);
  mlir::registerLLVMDialectTranslation(registry);
  mlir::registerOpenMPDialectTranslation(registry);
  module->getContext()->appendDialectRegistry(registry);

  LLVMContext context;
  std::string diagnostics;
  std::unique_ptr<Module> translated;
  {
    mlir::ScopedDiagnosticHandler collect(
        module->getContext(), [&](mlir::Diagnostic &diagnostic) {
          raw_string_ostream(diagnostics)
              << diagnostic.getLocation() << ": " << diagnostic << "\n";
          return mlir::success();
        });
    translated = mlir::translateModuleToLLVMIR(module, context);
  }
  if (!translated)
    return createStringError(inconvertibleErrorCode(),
                             "the module cannot be translated to LLVM IR: " +
                                 StringRef(diagnostics).rtrim());
  Expected<std::unique_ptr<TargetMachine>> machine = createMachine(target);
  if (!machine)
    return machine.takeError();
  translated->setTargetTriple(Triple(kTriple));
  translated->setDataLayout((*machine)->createDataLayout());
  callNNForgeOpenMPEntryPoints(*translated);
  addPackedEntryPoints(*translated);

  unsigned definitions = count_if(
      translated->functions(), [](Function &f) { return !f.isDeclaration(); });
  unsigned partitions =
      threads <= 1 ? 1
                   : std::clamp(threads * kPartitionsPerThread, 1u,
                                std::max(definitions, 1u));
  auto pathOf = [&](unsigned index) {
    return (prefix + Twine(index) + ".o").str();
  };
  if (partitions == 1) {
    if (Error error = compileModule(*translated, target, pathOf(0)))
      return std::move(error);
    return SmallVector<std::string>{pathOf(0)};
  }

  SmallVector<SmallString<0>> bitcodes = partition(*translated, partitions);
  translated.reset();
  SmallVector<std::string> paths, failures(bitcodes.size());
  for (unsigned index = 0; index < bitcodes.size(); ++index)
    paths.push_back(pathOf(index));
  std::atomic<unsigned> next{0};
  std::vector<std::thread> workers;
  for (unsigned worker = 0; worker < std::min<unsigned>(threads, partitions);
       ++worker)
    workers.emplace_back([&] {
      for (unsigned index = next++; index < bitcodes.size(); index = next++)
        if (Error error =
                compilePartition(bitcodes[index], target, paths[index]))
          failures[index] = toString(std::move(error));
    });
  for (std::thread &worker : workers)
    worker.join();
  for (const std::string &failure : failures)
    if (!failure.empty())
      return createStringError(inconvertibleErrorCode(), failure);
  return paths;
}
