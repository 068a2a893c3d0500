"""nnforge inside other frameworks: `torch.compile(model, backend="nnforge")`."""
