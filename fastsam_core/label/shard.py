"""Who labels what: fixed global batches, one deterministic shard per torchrun rank, part
journals merged back in source order (issue 15 item 3).

Batches are fixed for a source list and a batch size: batch b holds the images b*B .. b*B+B-1
in source order, and rank r of W takes batches b with b % W == r. Every image is therefore
segmented in the same batch (same padding, same forward) whatever the number of ranks and
however often the run was resumed, so the merged results equal a single-process run's bit for
bit. A batch with any image not yet journalled is recomputed whole; only its missing lines are
written.

Journals: a single process appends to `results.jsonl`; rank r of W > 1 appends to
`results.rank{r}.jsonl`. At the end rank 0 merges `results.jsonl` and every part (whatever world
size wrote them) into `results.jsonl`, one line per image in source order, and deletes the
parts.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JOURNAL = "results.jsonl"
# Rank 0 waits at the end for the slowest rank; a crashed rank ends the job through torchrun.
_BARRIER_TIMEOUT = datetime.timedelta(hours=24)


@dataclass(frozen=True)
class Rank:
    """This process's place in the job: rank r of world W (0 of 1 without torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def journal(self) -> str:
        """The journal this rank appends to."""
        return JOURNAL if self.world == 1 else f"results.rank{self.rank}.jsonl"


def rank_from_env() -> Rank:
    """RANK / WORLD_SIZE / LOCAL_RANK as torchrun sets them (0 of 1 when unset)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError as err:
        raise ValueError(
            f"torchrun environment: RANK/WORLD_SIZE/LOCAL_RANK not integers ({err})"
        ) from err
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"torchrun environment: RANK={rank} outside WORLD_SIZE={world}")
    return Rank(rank, world, local)


def init_distributed(rank: Rank, device_type: str) -> None:
    """Join the torchrun process group (env:// rendezvous) when WORLD_SIZE > 1: gloo on CPU,
    NCCL on CUDA. Nothing happens for a single process."""
    if rank.world == 1:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        return
    backend = "nccl" if device_type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, init_method="env://", timeout=_BARRIER_TIMEOUT)


def sum_over_ranks(values: list[int], rank: Rank, device_type: str) -> list[int]:
    """`values` summed over every rank (a barrier: returns when all ranks got here)."""
    if rank.world == 1:
        return values
    import torch
    import torch.distributed as dist

    device = torch.device("cuda", rank.local_rank) if device_type == "cuda" else "cpu"
    total = torch.tensor(values, dtype=torch.int64, device=device)
    dist.all_reduce(total)
    return [int(v) for v in total.tolist()]


def close_distributed() -> None:
    """Leave the process group, if one was joined."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def global_batches(num_items: int, batch_size: int) -> list[list[int]]:
    """[[0, .., B-1], [B, .., 2B-1], ...]: source indices per batch, the last one shorter."""
    if batch_size < 1:
        raise ValueError(f"--batch must be >= 1, got {batch_size}")
    return [list(range(s, min(s + batch_size, num_items))) for s in range(0, num_items, batch_size)]


def shard_batches(batches: list[list[int]], rank: Rank) -> list[list[int]]:
    """This rank's batches: batch b goes to rank b % world."""
    return batches[rank.rank :: rank.world]


def journal_paths(out_dir: Path) -> list[Path]:
    """`results.jsonl` and every part journal in `out_dir`, whatever world size wrote them."""
    parts = sorted(out_dir.glob("results.rank*.jsonl"), key=lambda p: p.name)
    return [out_dir / JOURNAL, *(p for p in parts if p.name[12:-6].isdigit())]


def journalled(out_dir: Path) -> dict[str, dict[str, Any]]:
    """stem -> line of every complete line in `out_dir`'s journals (first one wins)."""
    from fastsam_core.export.jsonl import read_journal

    lines: dict[str, dict[str, Any]] = {}
    for path in journal_paths(out_dir):
        for line in read_journal(path)[0]:
            lines.setdefault(str(line.get("stem")), line)
    return lines


def merged_lines(out_dir: Path, stems: list[str]) -> list[dict[str, Any]]:
    """The lines of this run's images (`stems`, source order), one per image, from every
    journal in `out_dir`; images without a line (failed) are left out."""
    lines = journalled(out_dir)
    return [lines[s] for s in stems if s in lines]


def remove_parts(out_dir: Path) -> None:
    """Delete the part journals once merged."""
    for path in journal_paths(out_dir)[1:]:
        path.unlink(missing_ok=True)
