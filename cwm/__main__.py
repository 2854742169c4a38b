"""``python -m cwm ...``: the same as the ``cwm`` command (also what ``accelerate launch -m cwm`` runs)."""
import sys

from cwm.cli.main import main

sys.exit(main())
