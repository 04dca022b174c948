"""Quality monitoring across sweeps: what each sweep measured of its inputs, and how its
scores, rates and inputs shift against a reference sweep."""
