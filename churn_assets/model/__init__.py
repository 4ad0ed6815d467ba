"""Model domain: training, the registry and its gate, the Dagster assets."""
import os

# LightGBM's OpenMP threads spin at every barrier by default. With TrainConfig.num_threads > 1
# and another process holding a core (ops side by side, a shared machine), a 2-thread fit of
# 10k rows took 20-39 s instead of 1.8 s; passive waiting keeps it at ~2.3 s. libgomp reads
# this once, when lightgbm first loads it, so it is set before any model import (override:
# set OMP_WAIT_POLICY yourself).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
