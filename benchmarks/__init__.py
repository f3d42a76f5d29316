"""remit benchmarks: ``python -m benchmarks.run`` (or ``scripts/bench``). See benchmarks/run.py."""
