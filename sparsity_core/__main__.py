import sys

from sparsity_core.cli import main

sys.exit(main())
