//===- Supervisor.cpp - nnforge-opt's work in a supervised child ----------===//
//
// The parent forks before doing anything else (no threads yet), forwards the
// signals that ask the tool to stop, and waits. What the child is doing lives
// in an anonymous shared mapping: the stage (parsing/verifying, running the
// pipeline), the input and output files, and per thread the innermost pass it
// runs. The child keeps LLVM's signal handler, which removes a half-written
// output file, but installs no stack-trace printer: the assertion's own line
// and the parent's error are the whole report.
//
//===----------------------------------------------------------------------===//

#include "Supervisor.h"

#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/Operation.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Pass/Pass.h"
#include "llvm/Support/Threading.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace nnforge {
namespace {

// Threads whose running pass is recorded (MLIR's pool has one per core); the
// passes of further threads go unrecorded.
constexpr unsigned kMaxThreads = 256;
constexpr size_t kTextSize = 512;

// Signals that ask the tool to stop: forwarded to the child, and the parent
// then ends the same way (no error of its own).
constexpr int kStopSignals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};

enum class Stage : int { Starting, Parsing, Pipeline };

void copyText(char (&to)[kTextSize], llvm::StringRef from) {
  size_t size = std::min(from.size(), kTextSize - 1);
  std::memcpy(to, from.data(), size);
  to[size] = '\0';
}

} // namespace

class Progress {
public:
  std::atomic<int> stage{static_cast<int>(Stage::Starting)};
  std::atomic<bool> outputOpened{false};
  bool splitInput = false;
  char input[kTextSize] = "";
  char output[kTextSize] = "";
  // The thread running the pass manager, and its top-level passes (done).
  std::atomic<uint64_t> pipelineThread{0};
  std::atomic<unsigned> topLevelPasses{0};
  std::atomic<unsigned> topLevelDone{0};
  // Per thread, the innermost pass it runs ("" when none).
  std::atomic<unsigned> threads{0};
  char passes[kMaxThreads][kTextSize] = {};
};

void noteFiles(Progress &progress, llvm::StringRef input, llvm::StringRef output,
               bool splitInput) {
  copyText(progress.input, input == "-" ? llvm::StringRef("<stdin>") : input);
  copyText(progress.output, output);
  progress.splitInput = splitInput;
  progress.outputOpened = true;
}

void noteParsing(Progress &progress) {
  progress.stage = static_cast<int>(Stage::Parsing);
}

void notePipeline(Progress &progress, unsigned topLevelPasses) {
  progress.pipelineThread = llvm::get_threadid();
  progress.topLevelPasses = topLevelPasses;
  progress.topLevelDone = 0;
  progress.stage = static_cast<int>(Stage::Pipeline);
}

namespace {

// A thread's passes, innermost last; "" for a pass manager's adaptors (no
// argument), which only run nested pipelines.
struct ThreadPasses {
  int slot = -1;
  std::vector<std::string> running;
};
thread_local ThreadPasses threadPasses;

class ProgressInstrumentation : public mlir::PassInstrumentation {
public:
  explicit ProgressInstrumentation(Progress &progress) : progress(progress) {}

  void runBeforePass(mlir::Pass *pass, mlir::Operation *op) override {
    threadPasses.running.push_back(describe(pass, op));
    publish();
  }
  void runAfterPass(mlir::Pass *, mlir::Operation *) override { leave(); }
  void runAfterPassFailed(mlir::Pass *, mlir::Operation *) override { leave(); }

private:
  static std::string describe(mlir::Pass *pass, mlir::Operation *op) {
    if (pass->getArgument().empty())
      return "";
    std::string text;
    llvm::raw_string_ostream os(text);
    os << "pass '" << pass->getArgument() << "' on '" << op->getName();
    if (auto name = op->getAttrOfType<mlir::StringAttr>(
            mlir::SymbolTable::getSymbolAttrName()))
      os << " @" << name.getValue();
    os << "'";
    return text;
  }

  void leave() {
    if (!threadPasses.running.empty())
      threadPasses.running.pop_back();
    publish();
    if (threadPasses.running.empty() &&
        llvm::get_threadid() == progress.pipelineThread)
      ++progress.topLevelDone;
  }

  // Writes this thread's innermost pass with an argument to its slot.
  void publish() {
    if (threadPasses.slot < 0)
      threadPasses.slot = static_cast<int>(
          std::min(progress.threads.fetch_add(1), kMaxThreads));
    if (threadPasses.slot >= static_cast<int>(kMaxThreads))
      return;
    llvm::StringRef innermost;
    for (const std::string &pass : llvm::reverse(threadPasses.running))
      if (!pass.empty()) {
        innermost = pass;
        break;
      }
    copyText(progress.passes[threadPasses.slot], innermost);
  }

  Progress &progress;
};

pid_t childPid = 0;
volatile sig_atomic_t stopRequested = 0;

void forwardStop(int signal) {
  stopRequested = 1;
  if (childPid > 0)
    kill(childPid, signal);
}

const char *signalName(int signal) {
  switch (signal) {
  case SIGABRT: return "SIGABRT";
  case SIGSEGV: return "SIGSEGV";
  case SIGBUS: return "SIGBUS";
  case SIGFPE: return "SIGFPE";
  case SIGILL: return "SIGILL";
  case SIGTRAP: return "SIGTRAP";
  case SIGKILL: return "SIGKILL";
  case SIGSYS: return "SIGSYS";
  case SIGXCPU: return "SIGXCPU";
  case SIGXFSZ: return "SIGXFSZ";
  default: return nullptr;
  }
}

// What the child was doing, and whose defect a crash there is.
std::pair<std::string, std::string> describeStage(const Progress &progress) {
  std::string input = progress.input[0] ? progress.input : "the input";
  switch (static_cast<Stage>(progress.stage.load())) {
  case Stage::Starting:
    return {"while starting", "a defect in MLIR or nnforge-opt"};
  case Stage::Parsing:
    return {"while parsing/verifying " + input,
            "an upstream MLIR defect; the input is invalid or unsupported"};
  case Stage::Pipeline:
    break;
  }
  std::vector<std::string> running;
  unsigned threads = std::min(progress.threads.load(), kMaxThreads);
  for (unsigned slot = 0; slot < threads; ++slot)
    if (progress.passes[slot][0])
      running.emplace_back(progress.passes[slot]);
  if (!running.empty()) {
    std::string where = running.size() == 1 ? "in " : "in one of ";
    for (size_t i = 0; i < running.size(); ++i)
      where += (i ? ", " : "") + running[i];
    return {where + " of " + input,
            "a defect in the pass; the input may be invalid or unsupported"};
  }
  if (progress.topLevelDone < progress.topLevelPasses)
    return {"in the pass manager running the pipeline on " + input,
            "a defect in MLIR"};
  if (progress.splitInput)
    return {"after the pass pipeline on a split of " + input +
                " (printing it, or parsing/verifying the next split)",
            "a defect in MLIR; the input may be invalid or unsupported"};
  return {"while printing the result of " + input,
          "a defect in MLIR; the input may be invalid or unsupported"};
}

void reportCrash(const Progress &progress, int signal) {
  auto [where, cause] = describeStage(progress);
  const char *name = signalName(signal);
  std::string what = name ? name : "signal " + std::to_string(signal);
  llvm::errs() << "nnforge-opt: error: ";
  if (signal == SIGKILL)
    llvm::errs() << "the tool's process was killed (SIGKILL) " << where
                 << " (killed from outside, as for lack of memory)\n";
  else
    llvm::errs() << "MLIR " << (signal == SIGABRT ? "aborted" : "crashed")
                 << " (" << what << ") " << where << " (" << cause << ")\n";
}

// The child's half-written output (LLVM's signal handler removes it, but not
// on SIGKILL); only a regular file, never /dev/null.
void removeOutput(const Progress &progress) {
  struct stat status;
  if (progress.outputOpened && std::strcmp(progress.output, "-") != 0 &&
      stat(progress.output, &status) == 0 && S_ISREG(status.st_mode))
    unlink(progress.output);
}

} // namespace

std::unique_ptr<mlir::PassInstrumentation>
createProgressInstrumentation(Progress &progress) {
  return std::make_unique<ProgressInstrumentation>(progress);
}

int runSupervised(llvm::function_ref<int(Progress &)> work) {
  void *memory = mmap(nullptr, sizeof(Progress), PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) {
    Progress unshared;
    return work(unshared);
  }
  Progress *progress = new (memory) Progress();

  // A caller that ignores SIGCHLD would have the child reaped unseen.
  std::signal(SIGCHLD, SIG_DFL);
  // A stop request arriving before the handlers are in place waits for them.
  sigset_t stops, previous;
  sigemptyset(&stops);
  for (int signal : kStopSignals)
    sigaddset(&stops, signal);
  sigprocmask(SIG_BLOCK, &stops, &previous);
  pid_t parent = getpid();
  childPid = fork();
  if (childPid <= 0) {
    sigprocmask(SIG_SETMASK, &previous, nullptr);
    if (childPid == 0) {
      // Never outlive the parent (a caller's time limit kills only it).
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent)
        _exit(1);
    }
    return work(*progress);
  }

  for (int signal : kStopSignals) {
    struct sigaction current;
    if (sigaction(signal, nullptr, &current) == 0 &&
        current.sa_handler == SIG_IGN)
      continue; // ignored by this process: the child ignores it too
    struct sigaction action = {};
    action.sa_handler = forwardStop;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    sigaction(signal, &action, nullptr);
  }
  sigprocmask(SIG_SETMASK, &previous, nullptr);

  int status = 0;
  while (waitpid(childPid, &status, 0) < 0) {
    if (errno != EINTR) {
      llvm::errs() << "nnforge-opt: error: waiting for the tool's process: "
                   << std::strerror(errno) << "\n";
      return 1;
    }
  }
  if (WIFEXITED(status))
    return WEXITSTATUS(status);
  int signal = WTERMSIG(status);
  if (stopRequested || signal == SIGPIPE ||
      llvm::is_contained(kStopSignals, signal)) {
    // Stopped on request: end the way the child did.
    removeOutput(*progress);
    std::signal(signal, SIG_DFL);
    sigset_t only;
    sigemptyset(&only);
    sigaddset(&only, signal);
    sigprocmask(SIG_UNBLOCK, &only, nullptr);
    raise(signal);
    return 128 + signal;
  }
  removeOutput(*progress);
  reportCrash(*progress, signal);
  return 1;
}

} // namespace nnforge
