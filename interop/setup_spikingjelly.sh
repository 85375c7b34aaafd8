# Sourced by interop/setup.sh after common.sh: the SpikingJelly 2.0 venv, with this package
# installed too, so that benchmarks/accuracy_vs_T.py and benchmarks/simulate_speed.py can run
# both converters in one process.
#
# spikingjelly 2.0.0 declares torch>=2.6, torchvision, torchaudio, tensorboard, scipy,
# SciencePlots, ... as hard requirements; left to pip, torchvision/torchaudio would replace the
# CPU torch with a multi-GB CUDA build. So it goes in with --no-deps, followed by what the
# modules we use (ann2snn, neuron, functional, nir_exchange) import: loguru, packaging,
# requests, tqdm, nir and nirtorch (its 'nir' extra: nir<2, nirtorch<2.7). None of those
# modules imports torchvision, torchaudio, scipy or tensorboard, so they stay out (pip's
# resolver then reports them as missing requirements of spikingjelly: expected).
new_venv spikingjelly
pip install --quiet --no-deps spikingjelly==2.0.0 "nirtorch>=2.6,<2.7"
pip install --quiet "loguru>=0.7,<1" packaging requests tqdm "nir>=1.0.8,<2"
# this package and its dependencies (torch is there already; nirtorch satisfied above)
# (setuptools' long build warnings go to a log, shown only if the install fails)
log="$(mktemp)"
pip install --quiet -e "$repo" >"$log" 2>&1 || { cat "$log" >&2; rm -f "$log"; exit 1; }
rm -f "$log"
python - <<'EOF'
import importlib.metadata as md
import importlib.util

import torch
from spikingjelly.activation_based import ann2snn, functional, neuron  # noqa: F401
from spikingjelly.activation_based.nir_exchange import import_from_nir  # noqa: F401

import converter  # noqa: F401  (this repository)

for absent in ("torchvision", "torchaudio"):
    assert importlib.util.find_spec(absent) is None, f"{absent} was installed: it would need a CUDA torch"

assert "+cpu" in torch.__version__ or not torch.version.cuda, f"not the CPU torch: {torch.__version__}"
print("spikingjelly", md.version("spikingjelly"), "torch", torch.__version__,
      "nir", md.version("nir"), "nirtorch", md.version("nirtorch"))
EOF
