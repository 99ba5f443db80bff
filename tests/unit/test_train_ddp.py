"""DDP through torchrun (gloo, 2 CPU processes) equals one process with the doubled batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from fastsam_core.data.synthetic import make_synthetic_dataset
from fastsam_core.train.trainer import build_training_model

ARGS = [
    "--imgsz",
    "64",
    "--batch",
    "4",
    "--epochs",
    "2",
    "--warmup-epochs",
    "0.5",
    "--close-mosaic",
    "1",
    "--no-progress",
    "--freeze-bn",
]


def _run(cmd: list[str], cwd) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]


def _step_losses(run) -> list[list[float]]:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [
        [x[k] for k in ("box_loss", "seg_loss", "cls_loss", "dfl_loss")] for x in lines if "lr" in x
    ]


@pytest.mark.skipif(
    not torch.distributed.is_available(), reason="torch.distributed is not available"
)
def test_torchrun_two_cpu_processes_match_one_process(tmp_path):
    data = make_synthetic_dataset(
        tmp_path / "data", num_images=4, image_size=(64, 64), max_objects=2, seed=3
    )
    common = ["train", "--data", str(data), *ARGS]
    _run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "fastsam_core",
            *common,
            "--out",
            str(tmp_path / "ddp"),
        ],
        tmp_path,
    )
    _run(
        [sys.executable, "-m", "fastsam_core", *common, "--out", str(tmp_path / "single")], tmp_path
    )

    # Loss normalisers are summed over ranks, so the logged losses are the global batch's.
    ddp_losses, single_losses = _step_losses(tmp_path / "ddp"), _step_losses(tmp_path / "single")
    assert len(ddp_losses) == len(single_losses) == 2
    assert torch.allclose(
        torch.tensor(ddp_losses), torch.tensor(single_losses), rtol=1e-4, atol=1e-5
    )

    # Weights after 2 AdamW steps: the updates agree up to float rounding (measured 5e-7 relative).
    a = load_file(str(tmp_path / "ddp" / "last" / "model.safetensors"))
    b = load_file(str(tmp_path / "single" / "last" / "model.safetensors"))
    torch.manual_seed(0)  # the trainer's default seed: the same initial weights
    init = build_training_model(None, "n", 3, ("circle", "rectangle", "triangle"), 64)[
        0
    ].state_dict()
    keys = [k for k in b if b[k].is_floating_point()]
    update_ddp = torch.cat([(a[k] - init[k]).flatten() for k in keys])
    update_single = torch.cat([(b[k] - init[k]).flatten() for k in keys])
    assert update_single.norm() > 0.1  # training moved the weights
    rel = ((update_ddp - update_single).norm() / update_single.norm()).item()
    assert rel < 1e-4, f"DDP and single-process updates differ by {rel:.2e} (relative)"
    assert (tmp_path / "ddp" / "weights.safetensors").exists()
