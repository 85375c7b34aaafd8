"""samna.speck2e stand-in (see samna/__init__.py)."""

from samna import Missing

validate_configuration = Missing("samna.speck2e.validate_configuration")
