"""samna.speck2f stand-in (see samna/__init__.py)."""

from samna import Missing

validate_configuration = Missing("samna.speck2f.validate_configuration")
