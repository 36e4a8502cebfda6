"""The benchmark (`python -m densenet bench`), one module per concern:

options        its command-line options
runners        the step runners and the interleaved timing rounds
data_pipeline  our device-resident augmentation against the torchvision baseline
timing         timers and peak-memory probes
table          the readable table printed after a run
probe          `--probe`: per-model step/eval/checkpoint times for cost prediction
benchmark      the bench's main: sections in order, JSON (atomic), stop on a signal
"""
