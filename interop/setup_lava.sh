# Sourced by interop/setup.sh (after common.sh): the Lava venv for the Loihi 2 check
# (interop/lava.py, interop/readers/run_lava.py). lava-nc 0.10.0 requires Python >=3.10,<3.11
# (pip on 3.11: "Ignored the following versions that require a different python version:
# 0.10.0 Requires-Python <3.11,>=3.10"), so this venv is made with python3.10 ($LAVA_PYTHON).
# Only lava-nc runs the check; lava-dl 0.6.0 (its NIR reader) installs too, but pulls a CUDA
# torch 2.3.1: LAVA_DL=1 adds it.
dir="$venvs/lava"
rm -rf "$dir"
"${LAVA_PYTHON:-python3.10}" -m venv "$dir"
# shellcheck disable=SC1091
. "$dir/bin/activate"
pip install --quiet --upgrade pip
pip install --quiet "lava-nc==0.10.0" h5py
pip install --quiet --no-deps "nir==1.0.8"
[ "${LAVA_DL:-0}" = 1 ] && pip install --quiet "lava-dl==0.6.0"
python -c "import lava, nir, importlib.metadata as m; print('lava-nc', m.version('lava-nc'), 'nir', m.version('nir'))"
