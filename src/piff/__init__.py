"""piff: physics-informed generative flow for real-time flood-depth mapping.

A re-creation of PIFF (arXiv 2511.09130): hydrodynamic ground truth (``piff.hydro``),
the dataset format (``piff.data``), the generative bridge and networks (``piff.model``)
and the training / sampling / evaluation code driven by the Snakemake workflow.
"""

__version__ = "0.1.0"
