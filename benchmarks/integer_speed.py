"""Multi-step speed of the quantised seed CNN (8-bit, default conversion) with float32 state, integer
(float64) state and 16-bit saturation, side by side, 100 images, T = 16; and the spikes that differ
(the analog first layer gets non-integer currents, so float32 and float64 round it differently).

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
print("| path | s (100 images, T=16, multi-step, best of 3) |\n|---|---|")
for name, net in (("float32 state", f), ("integer (float64) state", q), ("integer + 16-bit saturation", s16)):
    best = 1e9
    for _ in range(3):
        t = time.perf_counter()
        simulate(net, x, 16)
        best = min(best, time.perf_counter() - t)
    print(f"| {name} | {best:.2f} |")
a, b = simulate(f, x, 16, record=True).spikes, simulate(q, x, 16, record=True).spikes
print("spikes differing float32 vs integer:", sum(int((a[k] != b[k]).sum()) for k in a))
