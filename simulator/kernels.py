"""The IF scan kernel: all T steps of one IF layer in one call, spikes written as ``bool``.

The update is exactly :func:`simulator.neuron.if_step` repeated (same operations in the same
order, so the results are bitwise identical to stepping), but each neuron's state is touched
in cache-sized blocks: on the CPU the neurons are cut into blocks of :data:`CPU_BLOCK` and
each block runs its T steps while its potentials stay in the L2 cache; on other devices
(CUDA) the whole layer is one block, so each step is four kernel launches and nothing in
the loop waits for the host.

Measured on the seed CNN's first IF layer (2.16 M neurons: 100 images, T = 50) on a shared,
loaded 2-core machine: a loop over t with separate ops on the whole layer 1.42 s; blocked
with bool arithmetic 0.78 s; ``torch.compile`` (inductor) 3.8 s after 85 s of compilation.
Side by side at 1 thread: this kernel 0.58 s, ``numba`` (``@njit`` loop over neurons, same
results) 0.80 s, so numba is not used. Comparing into a float scratch block is vectorised
(comparing into ``bool`` is 8x slower in PyTorch), and the float-to-bool copy is cheap.
"""

from __future__ import annotations

import torch

from simulator import compiled

#: Neurons per block on the CPU. 32,768 float32 potentials (128 KiB) and their inputs stay in
#: L2, and it is PyTorch's grain size, so each op runs on one thread without OpenMP start-up
#: (larger blocks were up to 6x slower on a loaded 2-core machine).
CPU_BLOCK = 32_768


def scalar_or_flat(
    t: torch.Tensor, shape: torch.Size, dtype: torch.dtype, order: tuple[int, ...] | None = None
) -> torch.Tensor:
    """``t`` in ``dtype`` as a 0-d tensor if it holds one value, else expanded to ``shape``
    and flattened (``[M]``), in the memory order ``order`` of ``shape``'s dimensions when given
    (``(0, 2, 3, 1)``: channels-last, see :func:`channels_last_order`). On the CPU a tensor
    whose values are all equal is also collapsed to 0-d (a host check, done once per run, never
    on CUDA)."""
    t = t.to(dtype)
    if t.numel() == 1:
        return t.reshape(())
    if t.device.type == "cpu" and bool((t == t.reshape(-1)[0]).all()):
        return t.reshape(-1)[0].clone()
    return in_memory_order(t.expand(shape), order).reshape(-1).contiguous()


def in_memory_order(t: torch.Tensor, order: tuple[int, ...] | None) -> torch.Tensor:
    """``t`` with its dimensions permuted to ``order`` (a view); ``t`` itself for ``None``."""
    return t if order is None else t.permute(order)


def channels_last_order(t: torch.Tensor) -> tuple[int, ...] | None:
    """``(0, 2, 3, 1)`` when ``t`` (``[B, C, H, W]``) is stored channels-last and not also
    contiguous (then ``t.permute(0, 2, 3, 1)`` is contiguous: the neurons in memory order), else
    ``None``. The simulator keeps 2-d feature maps channels-last on the CPU, where oneDNN's
    convolutions prefer that layout (the CIFAR-10 VGG's simulation 14 % faster, the ResNet-20's
    2 %: docs/benchmarks.md, "CPU layout")."""
    if t.dim() != 4 or t.is_contiguous() or not t.is_contiguous(memory_format=torch.channels_last):
        return None
    return (0, 2, 3, 1)


def _piece(t: torch.Tensor, sl: slice) -> torch.Tensor:
    return t if t.dim() == 0 else t[sl]


def scan_flat(
    x: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    v_threshold: torch.Tensor,
    v_reset: torch.Tensor,
    subtract: bool,
    strict: bool,
    block: int | None = None,
    bounds: tuple[float, float] | None = None,
    count: torch.Tensor | None = None,
) -> None:
    """Run ``out.shape[0]`` IF steps on flattened neurons, in place.

    Args:
        x: input current already multiplied by ``r``, ``[T, M]``, or ``[1, M]`` for a current
            that is the same at every step (read at every step, never expanded); in ``v``'s
            dtype or a narrower float one (float32 into float64: each value converted exactly).
        v: membrane potentials ``[M]`` (contiguous); updated in place to the final potential.
        out: ``bool`` spikes ``[T, M]``, written in place.
        v_threshold, v_reset: 0-d or ``[M]`` tensors in ``v``'s dtype.
        subtract: reset by subtraction (else to ``v_reset``).
        strict: spike on ``v > v_threshold`` (else ``>=``).
        block: neurons per block; default :data:`CPU_BLOCK` on the CPU, all on other devices.
        bounds: ``(low, high)``: clamp ``v`` to it right after adding the input, before the
            comparison (a saturating M-bit state); ``None``: no clamp.
        count: spike counts ``[M]`` (contiguous, an integer dtype): each block's spikes are
            added in place while the block is in cache (no pass over the whole layer); ``None``:
            not counted.

    Under ``simulate(cpu_kernels="compiled")`` the steps run in C where
    :func:`simulator.compiled.scan_if` covers them (bitwise the same results).
    """
    steps, m = out.shape
    if compiled.ENABLED.get() and compiled.scan_if(x, v, out, v_threshold, subtract, strict, bounds, count):
        return
    if block is None:
        block = CPU_BLOCK if v.device.type == "cpu" else max(m, 1)
    compare = torch.gt if strict else torch.ge
    constant = x.shape[0] == 1
    fired = torch.empty(min(block, m), dtype=v.dtype, device=v.device)  # 0./1., reused per block
    for start in range(0, m, block):
        sl = slice(start, start + block)
        vb, th, vr = v[sl], _piece(v_threshold, sl), _piece(v_reset, sl)
        xb, ob, s = x[:, sl], out[:, sl], fired[: vb.shape[0]]
        for t in range(steps):
            vb.add_(xb[0 if constant else t])
            if bounds is not None:
                vb.clamp_(*bounds)
            compare(vb, th, out=s)  # float output: vectorised (a bool output is 8x slower)
            ob[t].copy_(s)
            if subtract:
                vb.addcmul_(s, th, value=-1)  # v - s * V_th, exact
            else:
                torch.where(ob[t], vr, vb, out=vb)
        if count is not None:
            cb = count[sl]
            wide = torch.int32 if steps > 255 else torch.uint8  # a uint8 sum of at most 255 spikes is exact
            cb.add_(ob[0] if steps == 1 else ob.view(torch.uint8).sum(0, dtype=wide))
