"""Defaults of `GenerativeModel.generate`, `generate_file` and `sciscore generate`.

Plain constants without imports, so that `sciscore generate --help` shows them without importing torch.
"""

DEFAULT_SOLVER = "ode-heun"  # on the Karras grid its default is 18 steps (35-36 score evaluations): sde/solvers.py
DEFAULT_GRID = "karras"     # EDM's rho = 7 grid: fine steps at small noise, where the detail is made
DEFAULT_SAMPLES = 32
DEFAULT_BATCH_SIZE = 16     # per-field cost on a 2-core CPU was lowest at batch 16
