"""samna.specksim.nodes stand-in (see samna/__init__.py)."""

from samna import Missing

SpecksimConvolutionalFilterNode = Missing("samna.specksim.nodes.SpecksimConvolutionalFilterNode")
SpecksimIAFFilterNode = Missing("samna.specksim.nodes.SpecksimIAFFilterNode")
SpecksimSumPoolingFilterNode = Missing("samna.specksim.nodes.SpecksimSumPoolingFilterNode")
