"""A stand-in for SynSense's closed ``samna`` driver, for the Sinabs interop venv only.

Sinabs' dynapcnn backend (``sinabs.backend.dynapcnn``) imports ``samna`` and ``samnagui`` at
module level, but the code the Speck check compares against (``DynapcnnNetwork`` with
``discretize=True``, ``memory_summary``, the core mapping ``get_valid_mapping`` through
``Speck2FConfigBuilder.map_layers_to_cores``, the software forward pass) never calls them. Every
name here is a :class:`Missing` that raises when it is *used* (called), so no configuration or
device code can pass silently through the stub. Never on the product's path:
``interop/readers/run_sinabs_speck.py`` puts this folder on ``sys.path`` itself.
"""

from __future__ import annotations


class Missing:
    """Any samna name: attribute access gives another ``Missing``; calling one raises."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Missing:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return Missing(f"{self._name}.{attr}")

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f"{self._name}: samna stand-in (interop/samna_stub), no driver")

    def __repr__(self) -> str:
        return f"<samna stand-in {self._name}>"


def __getattr__(attr: str) -> Missing:
    if attr.startswith("__"):
        raise AttributeError(attr)
    return Missing(f"samna.{attr}")
