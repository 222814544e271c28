"""ArcFlowFSDP on 2 CPU ranks (gloo): sharding, gradients, grad norm and step skipping, mixed
precision. The checks run in ``fsdp_worker.py`` under torchrun; tools/train.py under FSDP is
tested end to end in test_train.py."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_two_rank_fsdp_shards_blocks_and_logs_the_global_grad_norm():
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd.append(str(Path(__file__).with_name("fsdp_worker.py")))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
