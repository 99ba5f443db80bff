import sys

from fastsam_core.cli import main

sys.exit(main())
