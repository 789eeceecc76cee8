"""Run by test_distributed.py under `torchrun --nproc_per_node 2`: train and export."""

import json
import sys

from negation_encoder.training import TrainConfig, train

cfg = TrainConfig.from_dict(json.loads(sys.argv[1]))
train(cfg, progress=False)
