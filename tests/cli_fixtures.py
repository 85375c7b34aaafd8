"""Checkpoints and fast options shared by the CLI tests."""

from pathlib import Path

import torch

from ann2snn.zoo import load_mnist_cnn

FACTORY = "ann2snn.zoo.mnist_cnn:MnistCNN"
#: Small enough that one combination takes well under a second on 2 CPU cores.
FAST = ["--limit", "10", "--calib-size", "50", "--check-samples", "2", "--batch-size", "10", "--quiet"]


def write_checkpoints(folder: Path) -> dict[str, Path]:
    """The seed CNN as a plain state_dict, a DataParallel state_dict (``module.`` keys), a
    truncated (corrupt) file and a whole pickled model."""
    folder.mkdir(parents=True, exist_ok=True)
    model = load_mnist_cnn()
    state = model.state_dict()
    paths = {name: folder / f"{name}.pt" for name in ("plain", "dataparallel", "corrupt", "whole")}
    torch.save(state, paths["plain"])
    torch.save({f"module.{k}": v for k, v in state.items()}, paths["dataparallel"])
    paths["corrupt"].write_bytes(paths["plain"].read_bytes()[:4000])
    torch.save(model, paths["whole"])
    return paths
