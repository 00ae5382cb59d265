"""seqcast benchmarks: figures printed and written to benchmarks/results/, never pass/fail."""
