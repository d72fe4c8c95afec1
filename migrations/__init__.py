"""SQL migrations of the ledger, applied in order of their number."""
