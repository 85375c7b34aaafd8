# Sourced by interop/setup.sh: new_venv READER creates $ANN2SNN_INTEROP_VENVS/READER with the
# CPU torch first (an unpinned torch would pull a multi-GB CUDA build) and activates it.
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venvs="${ANN2SNN_INTEROP_VENVS:-$repo/.venv-interop}"

new_venv() {
    local dir="$venvs/$1"
    rm -rf "$dir"
    python3 -m venv "$dir"
    # shellcheck disable=SC1091
    . "$dir/bin/activate"
    pip install --quiet --upgrade pip
    pip install --quiet torch==2.13.0 numpy h5py
}
