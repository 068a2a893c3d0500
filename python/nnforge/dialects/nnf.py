"""The `nnf` dialect: op builders generated from `dialects/NNF/NNFOps.td`.

Build ops inside an `nnforge.context()`; result types are inferred, e.g.
`nnf.linear(x, w, bias=b, activation=nnf.ActivationKind.relu)`.
"""

from ._nnf_enum_gen import *  # noqa: F401,F403
from ._nnf_ops_gen import *  # noqa: F401,F403
