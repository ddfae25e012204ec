"""equivox: from PDB entries to figures comparing equivariant and plain 3D CNNs.

Data flows one way through the modules named after the pipeline stages:
pisces -> download -> atoms -> origins -> voxelize/views -> train -> analyses -> figures.
"""
__version__ = "0.1.0"
