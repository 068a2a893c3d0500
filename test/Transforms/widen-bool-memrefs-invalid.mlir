// RUN: nnforge-opt %s --nnf-widen-bool-memrefs --split-input-file --verify-diagnostics

// Ops with regions other than func and scf ops are not retyped: the pass
// fails rather than leave an i1 memref for the LLVM lowering to abort on.

func.func @scope() -> memref<2xi1> {
  // expected-error @+1 {{failed to legalize operation 'memref.alloca_scope'}}
  %r = memref.alloca_scope -> memref<2xi1> {
    %m = memref.alloc() : memref<2xi1>
    memref.alloca_scope.return %m : memref<2xi1>
  }
  return %r : memref<2xi1>
}
