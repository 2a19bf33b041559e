"""The algorithm layer: one module per learning method, above policies, data and simulation, below the CLI."""
