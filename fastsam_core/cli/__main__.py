"""`python -m fastsam_core.cli ...`: the `fastsam` command, e.g. under
`torchrun --nproc-per-node N -m fastsam_core.cli label ...`."""

import sys

from fastsam_core.cli import main

sys.exit(main())
