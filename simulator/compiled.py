"""C kernels for the CPU, compiled here at their first use (``simulate(cpu_kernels="compiled")``).

Three kernels, each used where it covers the layer (else the layer runs as with PyTorch):

- :func:`scan_if`: an IF layer's steps (reset by subtraction, ``>=`` or ``>``, no clamp),
  bitwise the same spikes, potentials and counts as :func:`simulator.kernels.scan_flat` (the
  same float32 operations in the same order), with each block of neurons' potentials kept in
  registers and L1 over the chunk's steps instead of one PyTorch call per step and block.
- :func:`lookup_conv2d`: convolutions of binary spikes by table lookup, described below.
- :func:`fused_if`: an IF layer together with the lookup convolutions that make its current
  (one, or two summed at a residual join, where a per-channel :class:`~simulator.scale.Scale`
  of spikes counts as a 1 x 1 convolution by its diagonal): for each output pixel the current
  is summed in registers and the IF update applied at once, step after step, so neither the
  current nor a float copy of the spikes goes to memory (:class:`simulator.executor.Fusion`
  says which graph nodes it takes).

Convolutions by table lookup. An IF layer's spikes are 0 or 1, so at one kernel tap a group of 8 input channels can only
contribute one of 256 sums of its weights. This kernel precomputes those sums once per layer
(``table[tap, group, pattern, C_out]``, 256 x 8-channel patterns: the table method of
Arlazarov, Dinic, Kronrod & Faradzhev 1970, "the four Russians") and computes each output
pixel as the bias plus one table row per tap and group: ``KH * KW * C_in / 8`` vector additions
of ``C_out`` floats instead of ``KH * KW * C_in`` multiply-adds, 8 times fewer whatever the spike
rate, with no float copy of the spikes. The spikes are first packed 8 per byte.

The sums are float32 sums of the same weights as ``F.conv2d``'s, in another order: an output
differs from the dense one by float32 rounding (a few ``1e-7`` of its size; measured in
``benchmarks/compiled_kernels.py``), so a potential within rounding of the threshold can spike one
step apart. Each output pixel is summed by one thread in a fixed order, so the results do not
depend on the batch size or the number of threads.

The kernels are C, compiled at their first use with the system's C compiler (``$CC``, else ``gcc``
or ``cc``; ``-O3 -march=native -fopenmp``) into a cache folder (``$ANN2SNN_CACHE``, else
``$XDG_CACHE_HOME/ann2snn`` or ``~/.cache/ann2snn``), keyed by the source, the flags and the CPU.
A layer it does not cover runs densely (:func:`lookup_conv2d` returns ``None``): not on the
CPU, not float32, groups or dilation other than 1, a padding mode other than zeros, ``C_in`` not
a multiple of 8, ``C_out`` not a multiple of 16, a table over :data:`TABLE_LIMIT` bytes, or
forward hooks or pre-hooks on the layer (which the kernel would skip).
"""

from __future__ import annotations

import contextvars
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import weakref
from pathlib import Path
from typing import cast

import torch
from torch import nn

#: Largest table (bytes) a layer may have: ``KH * KW * C_in * C_out * 128`` (a 3 x 3, 64 -> 64
#: convolution: 4.5 MiB). Larger layers run densely: their tables leave the cache, and the
#: lookup was slower than oneDNN at 128 -> 128 channels (18 MiB) in ``benchmarks/compiled_kernels.py``.
TABLE_LIMIT = 16 * 2**20

SOURCE = r"""
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include <stdlib.h>
typedef float vf __attribute__((vector_size(64), aligned(4)));
typedef int32_t vi __attribute__((vector_size(64), aligned(4)));
typedef int8_t vb __attribute__((vector_size(16), aligned(1)));

/* bool spikes [N, H, W, C] (C % 8 == 0) -> bits [N, H + 2 PH, W + 2 PW, C / 8], zero border */
void pack_bits(const uint8_t* s, int64_t N, int H, int W, int C, int PH, int PW, uint8_t* m, int threads) {
  const int Hp = H + 2 * PH, Wp = W + 2 * PW, G = C / 8;
  #pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t n = 0; n < N; n++) {
    uint8_t* mn = m + (size_t)n * Hp * Wp * G;
    if (PH || PW) memset(mn, 0, (size_t)Hp * Wp * G);
    for (int y = 0; y < H; y++) {
      const uint8_t* sp = s + ((size_t)n * H + y) * W * C;
      uint8_t* row = mn + ((size_t)(y + PH) * Wp + PW) * G;
      for (int i = 0; i < W * G; i++) {
        uint64_t x;
        memcpy(&x, sp + 8 * (size_t)i, 8);
        row[i] = (uint8_t)(((x & 0x0101010101010101ULL) * 0x0102040810204080ULL) >> 56);
      }
    }
  }
}

/* One convolution of spikes by table lookup: the packed bits of its input and its table. */
typedef struct {
  const uint8_t* m;   /* bits [N, Hp, Wp, G] of the input spikes (N = T * B, time-major) */
  const float* tab;   /* [KH * KW, G, 256, Cout] */
  int64_t Hp, Wp;
  int32_t G, KH, KW, SH, SW;
} term_t;

/* The lookups of term q at one output pixel, for the output channels from c0: moff[l], the byte
   of the bits (from the pixel's first), and toff[l], the table rows of that tap and group.
   Returns their number, KH KW G. */
static int term_offsets(const term_t* q, int Cout, int c0, int64_t* moff, const float** toff) {
  int l = 0;
  for (int ky = 0; ky < q->KH; ky++)
    for (int kx = 0; kx < q->KW; kx++)
      for (int g = 0; g < q->G; g++, l++) {
        moff[l] = ((int64_t)ky * q->Wp + kx) * q->G + g;
        toff[l] = q->tab + ((size_t)((ky * q->KW + kx) * q->G + g) * 256) * Cout + c0;
      }
  return l;
}

/* The bits of term q's input at output pixel (oy, ox) of sample n (an index into its N). */
#define PIXEL_BITS(q, n, oy, ox) \
  ((q)->m + (((size_t)(n) * (q)->Hp + (size_t)(oy) * (q)->SH) * (q)->Wp + (size_t)(ox) * (q)->SW) * (q)->G)

/* Add the L lookups of a pixel (its bits at mp) into four interleaved sums a, b, c, d of V vectors
   each, the last L % 4 into a. */
#define ADD_LOOKUPS(V, mp, mo, to, L, Cout, a, b, c, d) \
  do { \
    int l_ = 0; \
    for (; l_ + 3 < (L); l_ += 4) { \
      const float* p0 = (to)[l_] + (size_t)(mp)[(mo)[l_]] * (Cout); \
      const float* p1 = (to)[l_ + 1] + (size_t)(mp)[(mo)[l_ + 1]] * (Cout); \
      const float* p2 = (to)[l_ + 2] + (size_t)(mp)[(mo)[l_ + 2]] * (Cout); \
      const float* p3 = (to)[l_ + 3] + (size_t)(mp)[(mo)[l_ + 3]] * (Cout); \
      for (int k_ = 0; k_ < (V); k_++) { \
        vf x0, x1, x2, x3; \
        memcpy(&x0, p0 + 16 * k_, 64); memcpy(&x1, p1 + 16 * k_, 64); \
        memcpy(&x2, p2 + 16 * k_, 64); memcpy(&x3, p3 + 16 * k_, 64); \
        a[k_] += x0; b[k_] += x1; c[k_] += x2; d[k_] += x3; \
      } \
    } \
    for (; l_ < (L); l_++) { \
      const float* p0 = (to)[l_] + (size_t)(mp)[(mo)[l_]] * (Cout); \
      for (int k_ = 0; k_ < (V); k_++) { vf x0; memcpy(&x0, p0 + 16 * k_, 64); a[k_] += x0; } \
    } \
  } while (0)

/* out[n, oy, ox, c0 : c0 + 16 V] = bias + the lookups of term q (ADD_LOOKUPS), for all n < N */
#define LOOKUP(V) \
static void lookup_##V(const term_t* q, int64_t N, const float* bias, float* out, int Ho, int Wo, int Cout, int c0, \
                       const int64_t* moff, const float* const* toff, int L, int threads) { \
  _Pragma("omp parallel for schedule(static) num_threads(threads)") \
  for (int64_t n = 0; n < N; n++) \
    for (int oy = 0; oy < Ho; oy++) \
      for (int ox = 0; ox < Wo; ox++) { \
        vf a[V], b[V], c[V], d[V]; \
        for (int v = 0; v < V; v++) { memcpy(&a[v], bias + c0 + 16 * v, 64); b[v] = c[v] = d[v] = (vf){0}; } \
        const uint8_t* mp = PIXEL_BITS(q, n, oy, ox); \
        ADD_LOOKUPS(V, mp, moff, toff, L, Cout, a, b, c, d); \
        float* o = out + (((size_t)n * Ho + oy) * Wo + ox) * Cout + c0; \
        for (int v = 0; v < V; v++) { vf r = (a[v] + b[v]) + (c[v] + d[v]); memcpy(o + 16 * v, &r, 64); } \
      } \
}
LOOKUP(1) LOOKUP(2) LOOKUP(3) LOOKUP(4)

/* IF steps, reset by subtraction: v += x[t]; s = v >= th (strict: v > th); v -= s * th; count += s.
   x [Tx, M] (Tx = 1: the same current at every step), v [M], out [T, M] bool, th [M] or a scalar
   (th == NULL), count [M] int32 or NULL. Same float32 operations as the PyTorch scan. */
void scan_if(const float* x, int64_t Tx, int64_t T, int64_t M, float* v, uint8_t* out, const float* th, float th0,
             int strict, int32_t* count, int threads) {
  const int64_t B = 1024;
  #pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t start = 0; start < M; start += B) {
    const int64_t end = start + B < M ? start + B : M;
    for (int64_t t = 0; t < T; t++) {
      const float* xt = x + (Tx == 1 ? 0 : t * M);
      uint8_t* ot = out + t * M;
      if (th) {
        for (int64_t i = start; i < end; i++) {
          float u = v[i] + xt[i];
          float s = strict ? (u > th[i]) : (u >= th[i]);
          ot[i] = (uint8_t)s;
          v[i] = u - s * th[i];
          if (count) count[i] += (int32_t)s;
        }
      } else {
        for (int64_t i = start; i < end; i++) {
          float u = v[i] + xt[i];
          float s = strict ? (u > th0) : (u >= th0);
          ot[i] = (uint8_t)s;
          v[i] = u - s * th0;
          if (count) count[i] += (int32_t)s;
        }
      }
    }
  }
}

/* out [N, Ho, Wo, Cout] = bias + the convolution q, by table lookup, in blocks of 64 channels */
void lookup_conv(const term_t* q, int64_t N, const float* bias, float* out, int Ho, int Wo, int Cout, int threads) {
  int64_t* moff = (int64_t*)malloc(sizeof(int64_t) * q->KH * q->KW * q->G);
  const float** toff = (const float**)malloc(sizeof(float*) * q->KH * q->KW * q->G);
  for (int c0 = 0; c0 < Cout; c0 += 64) {
    const int L = term_offsets(q, Cout, c0, moff, toff), k = (Cout - c0) / 16;
#define CALL_LOOKUP(V) lookup_##V(q, N, bias, out, Ho, Wo, Cout, c0, moff, toff, L, threads)
    if (k == 1) CALL_LOOKUP(1);
    else if (k == 2) CALL_LOOKUP(2);
    else if (k == 3) CALL_LOOKUP(3);
    else CALL_LOOKUP(4);
#undef CALL_LOOKUP
  }
  free(moff);
  free((void*)toff);
}

/* A convolution (or several, summed) and the IF layer it feeds, in one pass: for each output
   pixel and block of 16 V channels, V stays in registers over the T steps and the current
   never goes to memory. v, count: [B, Ho, Wo, Cout]; th: the same shape, or NULL (th0);
   out: bool [T, B, Ho, Wo, Cout]. Each step: I = bias + lookups; u = v + I; s = u >= th (or >);
   v = u - s th; count += s (the IF scan's float32 operations). */
#define FUSED(V) \
static void fused_##V(const term_t* terms, int nterms, int64_t T, int64_t B, int Ho, int Wo, int Cout, int c0, \
                      const float* bias, float* v, const float* th, float th0, int strict, uint8_t* out, \
                      int32_t* count, int threads, const int64_t* moff, const float* const* toff, const int* nl) { \
  _Pragma("omp parallel for schedule(static) num_threads(threads)") \
  for (int64_t row = 0; row < B * Ho; row++) { \
    const int64_t b = row / Ho; const int oy = (int)(row % Ho); \
    for (int ox = 0; ox < Wo; ox++) { \
      const size_t at = (((size_t)b * Ho + oy) * Wo + ox) * Cout + c0; \
      vf vv[V], tv[V]; vi cnt[V]; \
      for (int k = 0; k < V; k++) { \
        memcpy(&vv[k], v + at + 16 * k, 64); \
        if (th) memcpy(&tv[k], th + at + 16 * k, 64); else tv[k] = (vf){0} + th0; \
        cnt[k] = (vi){0}; \
      } \
      for (int64_t t = 0; t < T; t++) { \
        vf a[V], e[V], f[V], h[V]; \
        for (int k = 0; k < V; k++) { memcpy(&a[k], bias + c0 + 16 * k, 64); e[k] = f[k] = h[k] = (vf){0}; } \
        for (int i = 0, l0 = 0; i < nterms; l0 += nl[i], i++) { \
          const uint8_t* mp = PIXEL_BITS(&terms[i], t * B + b, oy, ox); \
          ADD_LOOKUPS(V, mp, moff + l0, toff + l0, nl[i], Cout, a, e, f, h); \
        } \
        uint8_t* o = out + ((size_t)t * B * Ho * Wo) * Cout + at; \
        for (int k = 0; k < V; k++) { \
          vf u = vv[k] + ((a[k] + e[k]) + (f[k] + h[k])); \
          vi fired = strict ? (u > tv[k]) : (u >= tv[k]); /* -1 or 0 */ \
          vf s = __builtin_convertvector(-fired, vf); \
          vv[k] = u - s * tv[k]; \
          cnt[k] -= fired; \
          vb bytes = __builtin_convertvector(-fired, vb); \
          memcpy(o + 16 * k, &bytes, 16); \
        } \
      } \
      for (int k = 0; k < V; k++) { \
        memcpy(v + at + 16 * k, &vv[k], 64); \
        if (count) { vi c; memcpy(&c, count + at + 16 * k, 64); c += cnt[k]; memcpy(count + at + 16 * k, &c, 64); } \
      } \
    } \
  } \
}
FUSED(1) FUSED(2) FUSED(3) FUSED(4)

void fused_if(const term_t* terms, int nterms, int64_t T, int64_t B, int Ho, int Wo, int Cout, const float* bias,
              float* v, const float* th, float th0, int strict, uint8_t* out, int32_t* count, int threads) {
  int total = 0;
  for (int i = 0; i < nterms; i++) total += terms[i].KH * terms[i].KW * terms[i].G;
  int* nl = (int*)malloc(sizeof(int) * (size_t)(nterms > 0 ? nterms : 1));
  int64_t* moff = (int64_t*)malloc(sizeof(int64_t) * (total ? total : 1));
  const float** toff = (const float**)malloc(sizeof(float*) * (total ? total : 1));
  for (int c0 = 0; c0 < Cout; c0 += 64) {
    for (int i = 0, l = 0; i < nterms; l += nl[i], i++) nl[i] = term_offsets(&terms[i], Cout, c0, moff + l, toff + l);
    const int k = (Cout - c0) / 16;
#define CALL_FUSED(V) \
  fused_##V(terms, nterms, T, B, Ho, Wo, Cout, c0, bias, v, th, th0, strict, out, count, threads, moff, toff, nl)
    if (k == 1) CALL_FUSED(1);
    else if (k == 2) CALL_FUSED(2);
    else if (k == 3) CALL_FUSED(3);
    else CALL_FUSED(4);
#undef CALL_FUSED
  }
  free(nl);
  free(moff);
  free((void*)toff);
}
"""

FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fPIC", "-shared"]

_library: ctypes.CDLL | None = None
_lock = threading.Lock()
#: Whether the kernels here are used: set by :func:`simulate` for its run (a context variable,
#: so simulations in other threads keep their own setting).
ENABLED: contextvars.ContextVar[bool] = contextvars.ContextVar("ann2snn_compiled_kernels", default=False)

#: ``(weights, table, bias)`` by convolution, rebuilt when its weights or bias change.
_tables: weakref.WeakKeyDictionary[nn.Conv2d, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = (
    weakref.WeakKeyDictionary()
)


class KernelsUnavailable(RuntimeError):
    """The kernels cannot be built here (no C compiler, or it failed); the message says why."""


def cache_folder() -> Path:
    """Where compiled kernels are kept: ``$ANN2SNN_CACHE``, else ``$XDG_CACHE_HOME/ann2snn``, else
    ``~/.cache/ann2snn``."""
    if os.environ.get("ANN2SNN_CACHE"):
        folder = Path(os.environ["ANN2SNN_CACHE"])
    else:
        folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ann2snn"
    return folder.expanduser().absolute()  # absolute: dlopen does not search the working folder


def _cpu_signature() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next((line for line in lines if line.startswith("flags")), "") + platform.processor()
    except OSError:
        return platform.machine() + platform.processor()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _intact(target: Path) -> bool:
    """Whether ``target`` is there with the SHA-256 recorded beside it when it was built (a
    truncated or damaged library would crash the process when loaded, not raise)."""
    stamp = target.with_suffix(".sha256")
    try:
        return target.is_file() and stamp.read_text().strip() == _digest(target)
    except OSError:
        return False


def _compile(compiler: str, flags: list[str], target: Path) -> None:
    """Compile :data:`SOURCE` into ``target`` atomically (built in a temporary folder beside it,
    flushed to disk, renamed), with its SHA-256 in ``target.sha256`` (written the same way, last).

    Raises:
        subprocess.CalledProcessError: the compiler failed.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        source, built, stamp = Path(tmp) / "ann2snn_kernels.c", Path(tmp) / target.name, Path(tmp) / "stamp"
        source.write_text(SOURCE)
        subprocess.run([compiler, *flags, str(source), "-o", str(built)], check=True, capture_output=True, text=True)
        stamp.write_text(_digest(built))
        for f in (built, stamp):
            with open(f, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(built, target)
        os.replace(stamp, target.with_suffix(".sha256"))


def library() -> ctypes.CDLL:
    """The compiled kernels, built at the first call (see the module's docstring).

    Raises:
        KernelsUnavailable: no C compiler on the PATH (``$CC``, ``gcc``, ``cc``), it failed on
            the source (its message included), or the cache folder cannot be written.

    A cached library is used only if its SHA-256 is the one recorded when it was built; a
    damaged one is rebuilt.
    """
    global _library
    with _lock:
        if _library is not None:
            return _library
        named = os.environ.get("CC")
        compiler = shutil.which(named) if named else shutil.which("gcc") or shutil.which("cc")
        if not compiler:
            raise KernelsUnavailable(
                "cpu_kernels='compiled' compiles C kernels at their first use and found no C compiler "
                + (
                    f"($CC={named!r} is not an executable on the PATH: give the compiler alone, without flags)"
                    if named
                    else "(no $CC, and no gcc or cc on the PATH)"
                )
                + ": install one, or use cpu_kernels='torch' (CLI: --cpu-kernels torch)"
            )
        errors = []
        for flags in (FLAGS + ["-fopenmp"], FLAGS):  # without OpenMP: one thread
            key = hashlib.sha256("\0".join([SOURCE, compiler, *flags, _cpu_signature()]).encode()).hexdigest()[:16]
            target = cache_folder() / f"ann2snn_kernels-{key}.so"
            try:
                if not _intact(target):  # missing, or damaged since it was built: build it (again)
                    _compile(compiler, flags, target)
                _library = ctypes.CDLL(str(target))
                break
            except subprocess.CalledProcessError as e:
                errors.append(f"{compiler} {' '.join(flags)}: {e.stderr.strip()[-500:]}")
            except OSError as e:
                errors.append(f"{target}: {e}")
        else:
            raise KernelsUnavailable("cpu_kernels='compiled' could not build its C kernels:\n" + "\n".join(errors))
        _library.pack_bits.restype = None
        _library.lookup_conv.restype = None
        _library.scan_if.restype = None
        _library.fused_if.restype = None
        return _library


def _hooked(module: nn.Module) -> bool:
    """Whether ``module`` has forward hooks or pre-hooks (the kernels would skip them)."""
    return bool(module._forward_hooks or module._forward_pre_hooks)


def covers(conv: nn.Module, spikes: torch.Tensor, dtype: torch.dtype) -> bool:
    """Whether :func:`lookup_conv2d` computes ``conv`` on these spikes (``[N, C, H, W]`` bool
    standing for ``dtype``) rather than declining (the module's docstring lists the cases)."""
    if type(conv) is not nn.Conv2d or spikes.dim() != 4 or spikes.device.type != "cpu" or dtype != torch.float32:
        return False
    if _hooked(conv):
        return False
    if conv.groups != 1 or conv.dilation != (1, 1) or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return False
    if conv.weight.dtype != torch.float32 or conv.weight.device.type != "cpu":
        return False
    c_out, c_in, kh, kw = conv.weight.shape
    return c_in % 8 == 0 and c_out % 16 == 0 and kh * kw * c_in * c_out * 128 <= TABLE_LIMIT


def table(weight: torch.Tensor) -> torch.Tensor:
    """The lookup table of a convolution's weights ``[C_out, C_in, KH, KW]`` (``C_in % 8 == 0``):
    ``[KH * KW, C_in / 8, 256, C_out]``, entry ``[tap, g, p]`` the sum of the weights of the input
    channels ``8 g + i`` whose bit ``i`` is set in ``p``, summed from the highest bit down."""
    c_out, c_in, kh, kw = weight.shape
    w = weight.detach().permute(2, 3, 1, 0).reshape(kh * kw, c_in // 8, 8, c_out)
    out = torch.zeros(kh * kw, c_in // 8, 256, c_out, dtype=weight.dtype)
    for bit in range(8):
        size = 1 << bit
        torch.add(out[:, :, :size], w[:, :, bit : bit + 1], out=out[:, :, size : 2 * size])
    return out


def _table_of(conv: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor]:
    """The cached table and bias of ``conv``, rebuilt when its weights or bias are not the ones the
    table was built from (compared exactly: weights changed in place through ``.data`` keep their
    version counter)."""
    w = conv.weight.detach()
    bias = torch.zeros(w.shape[0], dtype=torch.float32) if conv.bias is None else conv.bias.detach()
    cached = _tables.get(conv)
    if cached is None or not (torch.equal(cached[0], w) and torch.equal(cached[2], bias)):
        cached = _tables[conv] = (w.clone(), table(w).contiguous(), bias.clone().contiguous())
    return cached[1], cached[2]


class _Term(ctypes.Structure):
    """The C kernels' ``term_t``: one convolution of spikes by table lookup."""

    _fields_ = [
        ("m", ctypes.c_void_p),
        ("tab", ctypes.c_void_p),
        ("Hp", ctypes.c_int64),
        ("Wp", ctypes.c_int64),
        ("G", ctypes.c_int32),
        ("KH", ctypes.c_int32),
        ("KW", ctypes.c_int32),
        ("SH", ctypes.c_int32),
        ("SW", ctypes.c_int32),
    ]


def _packed(
    lib: ctypes.CDLL,
    spikes: torch.Tensor,
    tab: torch.Tensor,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    threads: int,
) -> tuple[_Term, torch.Tensor]:
    """The ``term_t`` of one convolution of ``spikes`` (``[N, C_in, H, W]`` bool) by the table
    ``tab``, and the packed bits ``[N, H + 2 PH, W + 2 PW, C_in / 8]`` it points into (keep them
    alive while the kernel runs)."""
    n, c_in, h, w = spikes.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    data = spikes.permute(0, 2, 3, 1).contiguous()  # [N, H, W, C]; no copy when channels-last
    bits = torch.empty(n, h + 2 * ph, w + 2 * pw, c_in // 8, dtype=torch.uint8)
    p = ctypes.c_void_p
    lib.pack_bits(p(data.data_ptr()), ctypes.c_int64(n), h, w, c_in, ph, pw, p(bits.data_ptr()), threads)
    return _Term(bits.data_ptr(), tab.data_ptr(), h + 2 * ph, w + 2 * pw, c_in // 8, kh, kw, sh, sw), bits


def _conv_term(conv: nn.Module, spikes: torch.Tensor, dtype: torch.dtype = torch.float32):
    """``(table, bias, kernel, stride, padding, (C_out, H_out, W_out))`` of a convolution of these
    spikes that :func:`covers` covers, else ``None``."""
    if not covers(conv, spikes, dtype):
        return None
    conv = cast(nn.Conv2d, conv)
    (kh, kw), (sh, sw) = conv.kernel_size, conv.stride
    ph, pw = cast(tuple[int, int], conv.padding)  # not a string: covers() declined those
    _, _, h, w = spikes.shape
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    if ho < 1 or wo < 1:
        return None
    tab, bias = _table_of(conv)
    return tab, bias, (kh, kw), (sh, sw), (ph, pw), (conv.out_channels, ho, wo)


def lookup_conv2d(spikes: torch.Tensor, conv: nn.Conv2d, dtype: torch.dtype = torch.float32) -> torch.Tensor | None:
    """``conv`` applied to 0/1 spikes by table lookup, or ``None`` where it declines (see
    :func:`covers`; the caller then runs the layer densely).

    Args:
        spikes: ``[N, C_in, H, W]`` bool (``N`` = steps x batch), any memory layout.
        conv: an ``nn.Conv2d`` (float32, on the CPU).
        dtype: the float dtype the spikes stand for (only float32 is covered).

    Returns:
        ``[N, C_out, H_out, W_out]`` float32, stored channels-last: ``F.conv2d`` of the spikes as
        floats, up to float32 rounding (the module's docstring).

    Raises:
        KernelsUnavailable: the kernel cannot be compiled here (:func:`library`).
    """
    term = _conv_term(conv, spikes, dtype)
    if term is None:
        return None
    lib, threads = library(), torch.get_num_threads()
    tab, bias, kernel, stride, padding, (c_out, ho, wo) = term
    struct, bits = _packed(lib, spikes, tab, kernel, stride, padding, threads)
    out = torch.empty(spikes.shape[0], ho, wo, c_out, dtype=torch.float32)
    p = ctypes.c_void_p
    lib.lookup_conv(
        ctypes.byref(struct), ctypes.c_int64(spikes.shape[0]), p(bias.data_ptr()), p(out.data_ptr()), ho, wo, c_out,
        threads,
    )  # fmt: skip
    return out.permute(0, 3, 1, 2)


def scan_if(
    x: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    v_threshold: torch.Tensor,
    subtract: bool,
    strict: bool,
    bounds: tuple[float, float] | None,
    count: torch.Tensor | None,
) -> bool:
    """Run :func:`simulator.kernels.scan_flat`'s steps in C when it covers them; returns
    ``False`` (and does nothing) where it does not: not on the CPU, not float32 currents and
    potentials, reset to a value, a clamp, or a count that is not int32.

    Args:
        x: currents ``[T, M]`` or ``[1, M]`` (the same at every step), float32.
        v: potentials ``[M]``, float32, contiguous; updated in place.
        out: ``bool`` spikes ``[T, M]``, contiguous, written.
        v_threshold: 0-d, or ``[M]`` contiguous, float32 (multiples of V_th are these values).
        subtract, strict, bounds, count: as for ``scan_flat``.

    Raises:
        KernelsUnavailable: the kernels cannot be compiled here (:func:`library`).
    """
    tensors = [x, v, v_threshold] + ([] if count is None else [count])
    if not subtract or bounds is not None or any(t.device.type != "cpu" for t in tensors):
        return False
    if x.dtype != torch.float32 or v.dtype != torch.float32 or v_threshold.dtype != torch.float32:
        return False
    if count is not None and (count.dtype != torch.int32 or not count.is_contiguous()):
        return False
    if not (x.is_contiguous() and v.is_contiguous() and out.is_contiguous() and v_threshold.is_contiguous()):
        return False
    steps, m = out.shape
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    scalar = v_threshold.dim() == 0
    library().scan_if(
        p(x.data_ptr()), i64(x.shape[0]), i64(steps), i64(m), p(v.data_ptr()), p(out.data_ptr()),
        None if scalar else p(v_threshold.data_ptr()), ctypes.c_float(float(v_threshold) if scalar else 0.0),
        int(strict), None if count is None else p(count.data_ptr()), torch.get_num_threads(),
    )  # fmt: skip
    return True


#: ``(scale, table)`` by :class:`~simulator.scale.Scale` module, rebuilt when its scale changes.
_scale_tables: weakref.WeakKeyDictionary[nn.Module, tuple[torch.Tensor, torch.Tensor]] = weakref.WeakKeyDictionary()


def _term(module: nn.Module, spikes: torch.Tensor):
    """``(table, bias, kernel, stride, padding, (C_out, H_out, W_out))`` of one term of a fused
    current: a covered convolution, or a per-channel :class:`~simulator.scale.Scale` of spikes
    (a 1 x 1 convolution by its diagonal); ``None`` for anything else."""
    from simulator.scale import Scale

    if isinstance(module, Scale):
        if spikes.dim() != 4 or _hooked(module):
            return None
        _, c, h, w = spikes.shape
        scale = module.scale
        if c % 16 or scale.dtype != torch.float32:
            return None
        if scale.numel() == c * h * w and scale.dim() == 3 and tuple(scale.shape) == (c, h, w):
            if not bool((scale == scale[:, :1, :1]).all()):  # per neuron, not per channel
                return None
            scale = scale[:, :1, :1]  # e.g. an imported NIR Scale, per neuron but the same per channel
        if scale.numel() != 1 and tuple(scale.shape) != (c, 1, 1):  # (C,) broadcasts along W, not C
            return None
        cached = _scale_tables.get(module)
        if cached is None or not torch.equal(cached[0], scale):
            weight = torch.diag(scale.reshape(-1).expand(c)).reshape(c, c, 1, 1)
            cached = _scale_tables[module] = (scale.clone(), table(weight).contiguous())
        return cached[1], torch.zeros(c, dtype=torch.float32), (1, 1), (1, 1), (0, 0), (c, h, w)
    return _conv_term(module, spikes)


def fused_if(terms: list[tuple[nn.Module, torch.Tensor]], steps: int, state, params, initial_state):
    """An IF layer whose input current is the sum of convolutions (or per-channel scales) of
    spikes, in one C pass: the current is never written to memory, and each neuron's potential
    stays in registers over the chunk's steps. ``None`` where the layer is not covered (see
    :func:`covers` for the convolutions; the IF layer as for :func:`scan_if`, and ``r = 1``).

    Args:
        terms: ``(module, spikes)`` pairs, each module an ``nn.Conv2d`` or a
            :class:`~simulator.scale.Scale`, its spikes ``[steps * B, C, H, W]`` bool (time-major).
        steps: time steps in the chunk.
        state: the layer's :class:`~simulator.neuron.IFState` before the chunk (``[B, C_out,
            H_out, W_out]``, float32 potentials, int32 counts); donated (may be updated in place).
            ``None`` before the first chunk: ``initial_state(like)`` gives it (like:
            ``[B, C_out, H_out, W_out]`` float32, as :meth:`IFNeuron.initial_state` takes it).
        params: the layer's :class:`~simulator.neuron.IFParams`.

    Returns:
        ``(spikes, state)``: ``[steps, B, C_out, H_out, W_out]`` bool (a channels-last view) and
        the :class:`~simulator.neuron.IFState` after the chunk.

    Raises:
        KernelsUnavailable: the kernels cannot be compiled here (:func:`library`).
    """
    from simulator.kernels import scalar_or_flat
    from simulator.neuron import IFState

    if not params.binary or params.reset != "subtract" or params.bounds is not None:
        return None
    if not bool((params.r == 1).all()):  # r = 1 (an imported NIR file gives one per neuron)
        return None
    built = [_term(module, spikes) for module, spikes in terms]
    if any(b is None for b in built) or len({b[5] for b in built}) != 1:
        return None
    c_out, ho, wo = built[0][5]
    batch = terms[0][1].shape[0] // steps
    shape = torch.Size((batch, c_out, ho, wo))
    if state is None:
        state = initial_state(torch.empty(shape))
    if state.v.dtype != torch.float32 or state.count.dtype != torch.int32 or state.v.device.type != "cpu":
        return None
    try:
        torch.broadcast_shapes(state.v.shape, shape)
    except RuntimeError:
        return None
    lib, threads = library(), torch.get_num_threads()
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    # (term_t, bits) per term: the list keeps the bits alive while the kernel runs
    packed = [
        _packed(lib, spikes, tab, kernel, stride, padding, threads)
        for (_, spikes), (tab, _, kernel, stride, padding, _) in zip(terms, built, strict=True)
    ]
    structs = (_Term * len(terms))(*(struct for struct, _ in packed))
    bias = built[0][1].to(torch.float32, copy=True)
    for b in built[1:]:
        bias += b[1]
    order = (0, 2, 3, 1)
    v = state.v.expand(shape).permute(order).contiguous()  # in place when already channels-last
    count = state.count.expand(shape).permute(order).contiguous()
    threshold = scalar_or_flat(params.v_threshold.to(v.device), shape, torch.float32, order)
    scalar = threshold.dim() == 0
    out = torch.empty(steps, batch, ho, wo, c_out, dtype=torch.bool)
    lib.fused_if(
        structs, len(terms), i64(steps), i64(batch), ho, wo, c_out, p(bias.data_ptr()), p(v.data_ptr()),
        None if scalar else p(threshold.data_ptr()), ctypes.c_float(float(threshold) if scalar else 0.0),
        int(params.spike_rule == ">"), p(out.data_ptr()), p(count.data_ptr()), threads,
    )  # fmt: skip
    back = (0, 3, 1, 2)
    return out.permute(0, 1, 4, 2, 3), IFState(v.permute(back), count.permute(back))
