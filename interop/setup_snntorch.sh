# Sourced by interop/setup.sh (after common.sh): the snnTorch reader's venv.
# snntorch 1.0.0 declares no dependencies; snntorch.import_nir uses nirtorch.nir_to_torch
# (nirtorch >= 2) and nir. nirtorch goes in without dependencies (it asks for an unpinned torch).
new_venv snntorch
pip install --quiet "nir==1.0.8"
pip install --quiet --no-deps "nirtorch==2.6" "snntorch==1.0.0"
python -c "import snntorch, snntorch.import_nir, nir, nirtorch, importlib.metadata as m; print('snntorch', m.version('snntorch'), 'nir', m.version('nir'), 'nirtorch', m.version('nirtorch'), 'torch', m.version('torch'))"
