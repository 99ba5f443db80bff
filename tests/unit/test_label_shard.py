"""label.shard: fixed batches, rank shards, part journals merged in source order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fastsam_core.export.jsonl import append_lines, journal_line, open_journal
from fastsam_core.label.shard import (
    Rank,
    global_batches,
    journal_paths,
    merged_lines,
    rank_from_env,
    remove_parts,
    shard_batches,
)


@pytest.mark.parametrize("num_items", [0, 1, 5, 8])
@pytest.mark.parametrize("batch", [1, 3, 4])
@pytest.mark.parametrize("world", [1, 2, 3])
def test_shards_cover_every_batch_once(num_items: int, batch: int, world: int) -> None:
    batches = global_batches(num_items, batch)
    assert [i for b in batches for i in b] == list(range(num_items))
    assert all(len(b) == batch for b in batches[:-1])
    shards = [shard_batches(batches, Rank(r, world)) for r in range(world)]
    assert sorted(map(tuple, sum(shards, []))) == sorted(map(tuple, batches))
    assert shards[0][:1] == batches[:1]  # batch b on rank b % world


def test_bad_batch_and_environment() -> None:
    with pytest.raises(ValueError, match="--batch must be >= 1, got 0"):
        global_batches(3, 0)
    env = {"RANK": "2", "WORLD_SIZE": "2"}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        with pytest.raises(ValueError, match="RANK=2 outside WORLD_SIZE=2"):
            rank_from_env()
        mp.setenv("RANK", "1")
        mp.setenv("LOCAL_RANK", "1")
        assert rank_from_env() == Rank(1, 2, 1)
        assert rank_from_env().journal == "results.rank1.jsonl"
    assert Rank().journal == "results.jsonl"


def _line(i: int) -> dict:
    return journal_line(i + 1, f"img{i}.jpg", f"img{i}", {"annotations": []})


def test_merge_orders_dedups_and_drops_truncated(tmp_path: Path) -> None:
    stems = [f"img{i}" for i in range(6)]
    journals = {"results.jsonl": [4], "results.rank0.jsonl": [2, 0],
                "results.rank1.jsonl": [1, 3, 2], "results.rank10.jsonl": [9]}  # fmt: skip
    for name, ids in journals.items():
        with open_journal(tmp_path / name, resume=False) as handle:
            append_lines(handle, [_line(i) for i in ids])
    with (tmp_path / "results.rank1.jsonl").open("a") as handle:
        handle.write(json.dumps(_line(5))[:20])  # a kill mid-line
    (tmp_path / "results.rankX.jsonl").write_text(json.dumps(_line(5)) + "\n")  # not a part
    paths = [p.name for p in journal_paths(tmp_path)]
    assert paths == ["results.jsonl", "results.rank0.jsonl", "results.rank1.jsonl",
                     "results.rank10.jsonl"]  # fmt: skip
    merged = merged_lines(tmp_path, stems)
    assert [line["stem"] for line in merged] == ["img0", "img1", "img2", "img3", "img4"]
    remove_parts(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.jsonl", "results.rankX.jsonl"]
