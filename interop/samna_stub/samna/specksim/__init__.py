"""samna.specksim stand-in (see samna/__init__.py)."""
