"""The smallest residual SNN in Norse and Sinabs, before and after the portable layout.

    python interop/residual_repro.py [--reader sinabs --reader norse] [--T 12] [--samples 3]

Run from the repository root in the main ``.venv`` (the readers' venvs: ``interop/setup.sh``).
The network, :class:`Block`: Input (4) → Linear → IF → {Linear → IF → Linear} + skip → IF →
Output, with the skip a ``simulator.Scale(0.5)`` (what the converter puts on a residual edge;
the portable profile writes it as a diagonal Affine) or a Linear projection, seeded weights in
[0, 0.6), constant inputs in [0, 1). Each is written in the portable profile without and with
:func:`exporters.profiles.depth_first_layout` (``apply_profile(..., layout=False/True)``), run
by the reader, and compared with our simulator under the reader's rules (``interop.harness``):
for each file one line with nirtorch 2.6's execution order (:func:`interop.harness.nirtorch_order`),
the sources it runs after the node they feed, the node whose value the executor returns, the
spikes that differ and the first step at which the output differs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nir  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from interop import harness  # noqa: E402


class Block(nn.Module):
    """``if3(c(if2(b(h))) + skip(h))`` with ``h = if1(a(x))``: one residual join, the skip a
    ``Scale(0.5)`` (``"scale"``), a ``Linear`` (``"linear"``) or the identity (``"identity"``)."""

    def __init__(self, skip: str = "scale") -> None:
        from simulator import IFNeuron, Scale

        super().__init__()
        self.a, self.b, self.c = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4)
        self.if1, self.if2, self.if3 = IFNeuron(), IFNeuron(), IFNeuron()
        self.skip = {"scale": Scale(torch.full((4,), 0.5)), "linear": nn.Linear(4, 4), "identity": None}[skip]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.if1(self.a(x))
        return self.if3(self.c(self.if2(self.b(h))) + (h if self.skip is None else self.skip(h)))


def block(skip: str = "scale") -> Block:
    """:class:`Block` with seeded weights in [0, 0.6)."""
    g = torch.Generator().manual_seed(11)
    model = Block(skip)
    for p in model.parameters():
        p.data = torch.rand(p.shape, generator=g) * 0.6
    return model


def write(model: nn.Module, path: Path, layout: bool) -> nir.NIRGraph:
    """The portable graph of ``model`` (input ``(4,)``), with or without the layout, written to ``path``."""
    from exporters.nir_export import to_nir
    from exporters.profiles import apply_profile

    graph = apply_profile(to_nir(model, input_shape=(4,)), "portable", layout=layout)
    nir.write(path, graph)
    return graph


def inputs(samples: int) -> torch.Tensor:
    return torch.rand(samples, 4, generator=torch.Generator().manual_seed(3))


def measure(reader: str, path: Path, x: torch.Tensor, T: int, dtype: str = "float64") -> dict:
    """Run ``reader`` and our simulator on the file; the comparison and the first differing step."""
    spec = harness.READERS[reader]
    run = harness.run_reader(reader, path, x, T, dtype)
    if run.rc != 0:
        return {"loads": False, "reason": run.reason}
    result = harness.ours(path, spec.semantics, x, T, dtype)
    comparison = harness.compare(result, run)
    out = result.outputs.double().numpy()
    first = None
    if run.output.shape == out.shape:
        bad = np.nonzero(np.any(out != run.output, axis=tuple(range(1, out.ndim))))[0]
        first = int(bad[0]) if len(bad) else None
    return {"loads": True, "comparison": comparison, "first_step": first}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reader", action="append", choices=["sinabs", "norse"])
    parser.add_argument("--skip", action="append", choices=["scale", "linear", "identity"])
    parser.add_argument("--T", type=int, default=12)
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    args = parser.parse_args(argv)
    x = inputs(args.samples)
    with tempfile.TemporaryDirectory() as tmp:
        for skip in args.skip or ["scale", "linear"]:
            model = block(skip)
            for layout in (False, True):
                path = Path(tmp) / f"{skip}_{layout}.nir"
                graph = write(model, path, layout)
                order = harness.nirtorch_order(graph)
                print(
                    f"skip={skip} layout={layout}: nirtorch order {' '.join(order)}; late sources "
                    f"{harness.late_sources(graph) or 'none'}; returns {order[-1]!r}"
                )
                for reader in args.reader or ["sinabs", "norse"]:
                    if not harness.venv_python(reader).exists():
                        print(f"  {reader}: no venv (bash interop/setup.sh {reader})")
                        continue
                    m = measure(reader, path, x, args.T, args.dtype)
                    if not m["loads"]:
                        print(f"  {reader}: does not run: {m['reason']}")
                        continue
                    c = m["comparison"]
                    print(
                        f"  {harness.reader_version(reader)}: {c.differing} of {c.total} spikes differ, output max "
                        f"diff {c.output_diff:g}, first differing output step {m['first_step']}"
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
