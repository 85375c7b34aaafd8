"""Multi-step speed of the quantised seed CNN (8-bit, default conversion) with float32 state, integer
(float64) state and 16-bit saturation, side by side, 100 images, T = 16; and the spikes that differ
(the analog first layer gets non-integer currents, so float32 and float64 round it differently).
The three paths run in turn, best of 5 rounds, so a load on the machine hits them alike; the
ratio is against the float32 path (the goal: within 1.5x).

Usage: ``PYTHONPATH=. python benchmarks/integer_speed.py``
"""

import copy
import time

from ann2snn.zoo import load_embedded, load_mnist_cnn
from converter import Converter, quantize
from simulator import IFNeuron, simulate

ann, calib = load_mnist_cnn(), load_embedded("calib")
q = quantize(Converter(mode="99.9%", dataloader=calib.loader(500))(ann), 8)
f = copy.deepcopy(q)
for m in f.modules():
    if isinstance(m, IFNeuron):
        m.integer = False
s16 = copy.deepcopy(q)
for m in s16.modules():
    if isinstance(m, IFNeuron):
        m.state_bits = 16
x = load_embedded("test").images[:100]
paths = (("float32 state", f), ("integer (float64) state", q), ("integer + 16-bit saturation", s16))
best = dict.fromkeys(name for name, _ in paths)
for _ in range(5):
    for name, net in paths:
        t = time.perf_counter()
        simulate(net, x, 16)
        elapsed = time.perf_counter() - t
        best[name] = elapsed if best[name] is None else min(best[name], elapsed)
print("| path | s (100 images, T=16, multi-step, best of 5) | x float32 |\n|---|---:|---:|")
for name, _ in paths:
    print(f"| {name} | {best[name]:.2f} | {best[name] / best['float32 state']:.2f} |")
a, b = simulate(f, x, 16, record=True).spikes, simulate(q, x, 16, record=True).spikes
print("spikes differing float32 vs integer:", sum(int((a[k] != b[k]).sum()) for k in a))
