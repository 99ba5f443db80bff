"""The labelling loop of one rank: decoded batches in, journal lines out (issue 15 items 1-2).

Batches come decoded from DataLoader workers (`label.dataset`); each goes through
`Predictor.predict_images` as one forward, prompts are applied per image, and the batch's lines
are appended to the journal in one write (`export.jsonl.append_lines`) once the whole batch is
done. So Ctrl-C or SIGKILL loses at most the batch in flight, and the journal, re-read on the
next run, is the manifest of finished images (`label.shard` for which batches are redone).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from fastsam_core.export.jsonl import append_lines, journal_line, open_journal
from fastsam_core.io.images import LoadedImage
from fastsam_core.label.dataset import Decoded, decode_batches
from fastsam_core.prompts.apply import prompt

if TYPE_CHECKING:
    from fastsam_core.predictor import Predictor
    from fastsam_core.prompts import Prompts

# Failures of one image (or its batch) that are reported and skipped; anything else propagates.
_IMAGE_FAILURES = (ValueError, TypeError, RuntimeError, torch.cuda.OutOfMemoryError)


@dataclass(frozen=True)
class LabelJob:
    """Everything a rank labels, resolved before the model loads.

    Attributes:
        items: every source item of the run, in source order (`io.images.expand_sources`).
        stems: unique output stem per item (the journal's manifest key).
        image_ids: COCO image id per item.
        prompts: per item its `Prompts`, or None for everything mode.
        batches: this rank's batches of source indices (`label.shard`).
        done: stems already journalled by an earlier run.
    """

    items: Sequence[Any]
    stems: Sequence[str]
    image_ids: Sequence[int]
    prompts: Sequence[Prompts | None]
    batches: list[list[int]]
    done: frozenset[str]

    def todo(self) -> list[list[int]]:
        """Batches with an image not yet journalled (recomputed whole: same batch, same result)."""
        return [b for b in self.batches if any(self.stems[i] not in self.done for i in b)]


@dataclass(frozen=True)
class LabelCounts:
    labelled: int = 0
    failed: int = 0


def label_shard(
    predictor: Predictor,
    job: LabelJob,
    journal: Path,
    workers: int,
    prefetch: int = 2,
    fresh: bool = False,
    progress: bool = True,
    desc: str = "label",
) -> LabelCounts:
    """Label `job`'s unfinished batches, appending one line per image to `journal`.

    Args:
        predictor: the network and options (`batch_size` is set to the job's batch size).
        journal: the JSONL this rank appends to (an incomplete last line is cut off first).
        workers: DataLoader decoding processes (0: decode in this process).
        prefetch: batches each worker decodes ahead.
        fresh: start `journal` empty instead of continuing it.
        progress: show a tqdm bar (images/s).
    Returns:
        Images journalled by this call, and images that failed (reported on stderr).
    """
    from tqdm import tqdm  # type: ignore[import-untyped]

    todo = job.todo()
    largest = max((len(b) for b in todo), default=1)
    options = predictor.resolve_options(batch_size=largest)  # one forward per batch
    needs_clip = any(p is not None and p.texts for p in job.prompts)
    clip_scorer = predictor.clip_scorer if needs_clip else None  # built once, fails early
    labelled = failed = 0
    bar = tqdm(
        total=sum(len(b) for b in todo), desc=desc, unit="img", disable=not progress or not todo
    )

    def report(name: str, message: str) -> None:
        nonlocal failed
        failed += 1
        tqdm.write(f"fastsam label: failed {name}: {message}", file=sys.stderr)

    handle = open_journal(journal, resume=not fresh)
    batches = decode_batches(job.items, todo, workers, prefetch, bgr=options.bgr)
    try:
        for decoded in batches:
            ok: list[tuple[Decoded, LoadedImage]] = []
            for d in decoded:
                if d.image is None:
                    report(d.name, str(d.error))
                else:
                    ok.append((d, d.image))
            try:
                results = predictor.predict_images([im for _, im in ok], options) if ok else []
            except _IMAGE_FAILURES as err:
                for d, _ in ok:
                    report(d.name, str(err))
                ok, results = [], []
            lines = []
            for (d, image), result in zip(ok, results):
                stem = job.stems[d.index]
                if stem in job.done:  # a finished image of a partly journalled batch
                    continue
                try:
                    chosen = job.prompts[d.index]
                    if chosen is not None:
                        result = prompt(result, prompts=chosen, clip_scorer=clip_scorer)
                    document = result.to("cpu").to_json()  # RLE encoded here
                except _IMAGE_FAILURES as err:
                    report(d.name, str(err))
                    continue
                image_id, frame = job.image_ids[d.index], image.frame  # frame: videos only
                lines.append(journal_line(image_id, d.name, stem, document, frame))
            append_lines(handle, lines)  # the whole batch in one write
            labelled += len(lines)
            bar.update(len(decoded))
    finally:
        bar.close()
        del batches  # stops the decoding workers
        handle.close()
    return LabelCounts(labelled, failed)
