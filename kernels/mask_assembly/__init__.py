"""Fast backends of `fastsam_core.ops.masks` mask assembly (issue #5); same contract as the
reference.

* `plan.py`: what every backend shares: per-mask output regions and the bilinear taps per axis.
* `compiled.py`: separable plain-PyTorch version (eager, or `torch.compile`d) for CPU and GPU.
* `triton.py`: fused Triton kernel for CUDA GPUs (and the Triton interpreter on CPU).
"""
