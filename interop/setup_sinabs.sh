# Sourced by interop/setup.sh (after common.sh): the Sinabs reader's venv.
# sinabs 3.1.3 pins nir <= 1.0.4 and asks for samna (Speck/DynapCNN hardware drivers) and
# matplotlib. `import sinabs` needs matplotlib (sinabs.network imports pylab), pbr (its version
# string) and nirtorch (sinabs.from_nir calls the deprecated nirtorch.load, still in nirtorch
# 2.6), not samna. So: sinabs and nirtorch without dependencies, nir 1.0.4 as sinabs asks,
# pbr and matplotlib by hand.
new_venv sinabs
pip install --quiet "nir==1.0.4" pbr matplotlib
pip install --quiet --no-deps "nirtorch==2.6" "sinabs==3.1.3"
python -c "import sinabs, nir, nirtorch, importlib.metadata as m; print('sinabs', m.version('sinabs'), 'nir', m.version('nir'), 'nirtorch', m.version('nirtorch'), 'torch', m.version('torch'))"
