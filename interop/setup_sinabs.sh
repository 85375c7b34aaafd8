# Sourced by interop/setup.sh (after common.sh): the Sinabs reader's venv.
# sinabs 3.1.3 asks for nir <= 1.0.4, samna (Speck/DynapCNN hardware drivers) and matplotlib.
# `import sinabs` needs matplotlib (sinabs.network imports pylab), pbr (its version string) and
# nirtorch (sinabs.from_nir calls the deprecated nirtorch.load, still in nirtorch 2.6), not samna.
# nir 1.0.4 cannot read files written by nir 1.0.8 (its IF node has no v_reset: nir.read raises
# "IF.__init__() got an unexpected keyword argument 'v_reset'"), so by default nir 1.0.8 is
# installed over sinabs's pin; SINABS_NIR=1.0.4 bash interop/setup.sh sinabs keeps the pin.
new_venv sinabs
pip install --quiet "nir==${SINABS_NIR:-1.0.8}" pbr matplotlib
pip install --quiet --no-deps "nirtorch==2.6" "sinabs==3.1.3"
python -c "import sinabs, nir, nirtorch, importlib.metadata as m; print('sinabs', m.version('sinabs'), 'nir', m.version('nir'), 'nirtorch', m.version('nirtorch'), 'torch', m.version('torch'))"
