"""The gradient stage (`python -m densenet gradcheck`), one module per check:

whole_model   the model under test against a float64 CPU copy, per conv/linear layer
dense_layer   torch.autograd.gradcheck of one dense layer, per grad_output layout
determinism   two seeded K-step trainings, bitwise equal or not
batch         the fixed batch the checks share
stage         the stage's main: runs the checks, decides the verdict, writes gradcheck.json
"""
