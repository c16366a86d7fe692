"""Training: the loop (``train``), checkpoints, DDP set-up and the training objective."""
