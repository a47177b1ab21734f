"""``python -m magicflow.cli``: the same as the ``magicflow`` command."""

import sys

from magicflow.cli import main

sys.exit(main())
