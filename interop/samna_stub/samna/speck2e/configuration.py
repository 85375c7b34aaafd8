"""samna.speck2e.configuration stand-in (see samna/__init__.py)."""

from samna import Missing

SpeckConfiguration = Missing("samna.speck2e.configuration.SpeckConfiguration")
