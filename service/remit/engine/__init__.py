"""Stage 2, evaluate: one walk over a decision's lines, its trace, and what derives from it."""
