"""``python -m neuronscope``: the same command line as the ``neuronscope`` script."""

import sys

from .cli import main

sys.exit(main())
