"""``python -m piff ...`` is the same as the ``piff`` console script."""
import sys

from piff.cli import main

sys.exit(main())
