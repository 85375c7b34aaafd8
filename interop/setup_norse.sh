# Sourced by interop/setup.sh (after common.sh): the Norse reader's venv.
# norse 1.1.0 asks for torchvision (only its model zoo and tasks import it, not norse.torch's
# NIR import), so it and nirtorch are installed without dependencies.
new_venv norse
pip install --quiet "nir==1.0.8"
pip install --quiet --no-deps "nirtorch==2.6" "norse==1.1.0"
python -c "import norse.torch, nir, nirtorch, importlib.metadata as m; print('norse', m.version('norse'), 'nir', m.version('nir'), 'nirtorch', m.version('nirtorch'), 'torch', m.version('torch'))"
