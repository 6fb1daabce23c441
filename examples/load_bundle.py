"""Load a model bundle (a directory: manifest.json, weights, normaliser) and step its model.

    python examples/load_bundle.py [BUNDLE_DIR]

Without a directory it first saves one (the kinematic parameters and an untrained residual)
into a temporary folder, to show both halves. Bundles come from ``python -m tools.sysid fit``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from vehicle_models import ModelBundle, ResidualConfig, ResidualEnsemble, load_bundle, load_params, save_bundle
from vehicle_models.semi_parametric import DEFAULT_OUTPUT_FIELDS


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", nargs="?", type=Path)
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        path = args.bundle
        if path is None:
            residual = ResidualEnsemble(4, len(DEFAULT_OUTPUT_FIELDS), ResidualConfig(ensemble_size=1), seed=0)
            example = ModelBundle(version="example-1", params=load_params("passenger_car"), residual=residual,
                                  notes="examples/load_bundle.py")
            path = save_bundle(example, Path(tmp) / "example")
            print(f"saved an example bundle to {path}")
        bundle = load_bundle(path)
        print(f"bundle {bundle.version}: kind {bundle.kind}, wheelbase {bundle.params.wheelbase:.3f} m, "
              f"fit metrics {sorted(bundle.fit_metrics) or 'none'}")
        model = bundle.build(dt=0.05, dtype=torch.float32)  # a Dynamics, as the planners use it
        states = torch.tensor([[0.0, 0.0, 0.0, 10.0, 0.0], [0.0, 0.0, 0.1, 10.0, 0.0]])
        actions = torch.zeros(2, 2)
        print("one step of 0.05 s from two states (x, y, steer, v, yaw):")
        for row in model.step(states, actions).tolist():
            print("  " + ", ".join(f"{v:.4f}" for v in row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
