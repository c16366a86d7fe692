"""``piff sample``: predict the test maps of a dataset at several NFE (``piff.inference.sampling``)."""
from piff.inference.sampling import add_arguments, run  # noqa: F401
