"""Sub-commands of the ``piff`` CLI (see ``piff.cli``)."""
