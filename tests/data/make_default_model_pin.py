"""Regenerate tests/data/default_model_pin.json, the pinned output of the shipped default model.

    python tests/data/make_default_model_pin.py

Run it (and commit the JSON, saying why in the commit message) only when a change of the samples
is intended: a new shipped model, or a deliberate change of the noise streams. A refactor must
leave the pin unchanged (tests/test_pretrained.py::test_default_model_output_is_pinned).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

PIN = Path(__file__).with_name("default_model_pin.json")
# (solver, steps, guidance): the network alone under the default solver and one SDE solver (so that the noise
# path is pinned too), and the default sampler with the model's recommended autoguidance (None)
CASES = (("ode-heun", 4, 1.0), ("euler", 4, 1.0), ("ode-heun", 4, None))
SAMPLES, SEED = 2, 0
PIXELS = ((0, 0), (5, 17), (31, 40), (63, 63))     # (y, x) indices of the pinned values


def pinned_values() -> dict:
    """{solver: {variable: {"mean": [per sample], "std": [...], "pixels": [[per sample per pixel]]}}}."""
    from sciscore.generate import load_model

    model = load_model(device="cpu")
    out = {}
    for solver, steps, guidance in CASES:
        ds = model.generate(SAMPLES, solver=solver, steps=steps, seed=SEED, batch_size=SAMPLES, guidance=guidance)
        out[f"{solver}-{steps}" + ("-guided" if guidance is None else "")] = {
            v: {"mean": ds[v].mean(("y", "x")).values.astype(float).tolist(),
                "std": ds[v].std(("y", "x")).values.astype(float).tolist(),
                "pixels": [[float(ds[v].values[i, y, x]) for y, x in PIXELS] for i in range(SAMPLES)]}
            for v in model.variables}
    return out


def main() -> int:
    torch.set_num_threads(1)   # as in the test suite (tests/conftest.py)
    record = {"command": "python tests/data/make_default_model_pin.py", "samples": SAMPLES, "seed": SEED,
              "pixels": [list(p) for p in PIXELS], "values": pinned_values()}
    PIN.write_text(json.dumps(record) + "\n")
    print(f"wrote {PIN}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    raise SystemExit(main())
