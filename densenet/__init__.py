"""DenseNet on CIFAR, paper-faithful, for the reproducibility harness.

Runs inside containers: imports only the standard library, torch and numpy (torchvision
lazily, for the official download), on Python >= 3.8 and torch >= 1.8. Writes cell
directories (metrics.csv, summary.json, env.json, checkpoint.pt, gradcheck.json) that
report/ reads; the two packages never import each other.
"""

__version__ = "0.1.0"
