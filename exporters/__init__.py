"""Export converted SNNs to NIR (``.nir``, HDF5) and import them back, built on :mod:`simulator`.

The semantics contract (what our metadata means, and the nir versions we support) is in
:mod:`exporters.semantics`; importing this package warns when the installed nir is outside
:data:`exporters.semantics.NIR_SUPPORTED`.
"""

from exporters.nir_export import EXPORTERS, ExportError, export_nir, to_nir
from exporters.nir_import import IMPORTERS, NIRImportError, from_nir, import_nir, read_nir
from exporters.profiles import PROFILES, ProfileError, apply_profile
from exporters.semantics import check_nir_version, graph_metadata
from exporters.verify import RoundTripReport, SelfCheck, compare_spike_counts, verify_file

check_nir_version()

__all__ = [
    "EXPORTERS",
    "IMPORTERS",
    "ExportError",
    "NIRImportError",
    "PROFILES",
    "ProfileError",
    "RoundTripReport",
    "SelfCheck",
    "compare_spike_counts",
    "apply_profile",
    "export_nir",
    "from_nir",
    "graph_metadata",
    "import_nir",
    "read_nir",
    "to_nir",
    "verify_file",
]
