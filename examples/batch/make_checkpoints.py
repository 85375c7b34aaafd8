"""Write three checkpoints of the shipped seed CNN for the batch example (examples/batch/job.toml):
a plain state_dict, the same weights as a DataParallel state_dict (every key prefixed with
``module.``), and a truncated copy that no loader can read.

    python examples/batch/make_checkpoints.py   # writes examples/batch/checkpoints/*.pt
"""

from pathlib import Path

import torch

from ann2snn.zoo import load_mnist_cnn

if __name__ == "__main__":
    folder = Path(__file__).resolve().parent / "checkpoints"
    folder.mkdir(exist_ok=True)
    state = load_mnist_cnn().state_dict()
    torch.save(state, folder / "seed.pt")
    torch.save({f"module.{k}": v for k, v in state.items()}, folder / "seed_dataparallel.pt")
    (folder / "broken.pt").write_bytes((folder / "seed.pt").read_bytes()[:10_000])
    print(f"wrote seed.pt, seed_dataparallel.pt and broken.pt in {folder}")
