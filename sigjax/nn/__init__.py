"""The networks: activations (one registry, with the float64 forms theory integrates),
initializers, the model protocol and its families (MLP, residual MLP), losses and optimizers.

Nothing here knows about sweeps: every piece is a pure function of its inputs, and `engine`
builds the compiled programs from them.
"""
