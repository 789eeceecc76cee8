"""Run by test_sharding.py (and benchmarks/eval_scaling.py) under `torchrun`: `negenc` commands in turn.

    torchrun --nproc_per_node N tests/_dist_eval.py '[["t2i", "negscore", ...], ["seg", "eval", ...]]'

Every process runs every command, as `torchrun -m negation_encoder ...` would, but in one process
group, so the launch cost is paid once. Exits with the first non-zero exit code.
"""

import json
import sys

from negation_encoder.cli import main

for argv in json.loads(sys.argv[1]):
    code = main(argv)
    if code:
        sys.exit(code)
