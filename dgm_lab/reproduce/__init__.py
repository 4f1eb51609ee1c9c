"""dgm-reproduce: the baselines registry (experiments/baselines.yaml), runs of its rows through
dgm-train, their stored results and the generated table in experiments/README.md."""
