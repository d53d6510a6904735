"""JAX as a plug-in of the gradient-flow interpreter: its API tables, its events, its semantics and facts."""
