"""Training tools that stand on the detector: training a package on phantoms, calibrating its
score, and measuring a package on held-out phantoms."""
