"""The `doorstep` command line: one module per command group."""
