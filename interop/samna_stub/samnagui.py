"""samnagui stand-in (see samna/__init__.py)."""


def __getattr__(attr):
    raise AttributeError(f"samnagui.{attr}: samna stand-in (interop/samna_stub), no GUI")
