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

// -----

// Signed and unsigned sub-byte integers cannot be widened by arith: the pass
// fails instead of leaving them for memref-to-LLVM's assertion.

// expected-error @+1 {{'func.func' op carries 'memref<4xui4>': only signless integers narrower than a byte can be stored as bytes (arith cannot extend 'ui4')}}
func.func @unsigned_nibbles(%m: memref<4xui4>, %i: index) -> ui4 {
  %v = memref.load %m[%i] : memref<4xui4>
  return %v : ui4
}
