"""The audit log: append-only, hash-chained, written in the same transaction as the change
it records. `doorstep audit verify` recomputes the chain and names the first broken link."""
