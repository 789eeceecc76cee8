"""`negenc ARGV` timed from inside each process, after its imports (run by eval_scaling.py under torchrun).

    python -m torch.distributed.run ... benchmarks/_timed_negenc.py TIMES.json ARGV...

The main process (RANK 0) writes {"seconds": ...}: model loading, the run and the merge, without the
process start and imports that the launch's wall time also holds.
"""

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from negation_encoder.cli import main  # noqa: E402

start = time.perf_counter()
code = main(sys.argv[2:])
if os.environ.get("RANK", "0") == "0":
    Path(sys.argv[1]).write_text(json.dumps({"seconds": time.perf_counter() - start}))
sys.exit(code)
