"""Dataset labelling behind `fastsam label` (issue 15): `dataset` decodes in DataLoader workers,
`shard` splits fixed batches over torchrun ranks and merges their journals, `prompts_file` reads
per-image prompts, `run` is one rank's loop (network, prompts, journal lines)."""
