"""dgm-lab's benchmark runner (``python -m benchmarks``): every figure is the ratio of a dgm-lab
cost to a baseline measured in the same run, the two sides alternated (A B A B ...)."""
