"""Stage 4, record: the decision log (entries, chains, sinks, verification)."""
