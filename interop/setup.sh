#!/usr/bin/env bash
# Create the virtual environment of one external NIR reader (or all): bash interop/setup.sh READER
# READER: norse | spikingjelly | sinabs | snntorch | lava | all.  See interop/README.md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
readers=(norse spikingjelly sinabs snntorch lava)
[ $# -eq 1 ] || { echo "usage: bash interop/setup.sh {${readers[*]// /|}|all}" >&2; exit 2; }
if [ "$1" = all ]; then
    status=0
    for r in "${readers[@]}"; do bash "$0" "$r" || { echo "setup of $r failed" >&2; status=1; }; done
    exit $status
fi
[ -f "$here/setup_$1.sh" ] || { echo "unknown reader '$1' (one of ${readers[*]}, all)" >&2; exit 2; }
# shellcheck source=interop/common.sh
. "$here/common.sh"
. "$here/setup_$1.sh"
