"""Package discovery: our folders `kernels/` and `weights_convert/` install as `fastsam_kernels` and
`fastsam_weights_convert`, names that cannot collide with PyPI's unrelated `kernels` package."""

import os

from setuptools import find_packages, setup

PACKAGE_DIRS = {
    "fastsam_core": "fastsam_core",
    "fastsam_kernels": "kernels",
    "fastsam_weights_convert": "weights_convert",
}


def _packages(name: str, folder: str) -> list[str]:
    return [name] + [f"{name}.{sub}" for sub in find_packages(folder)]


# The PyTorch install (default) and the torch-free ONNX runtime alone (FASTSAM_RUNTIME_ONLY=1, with
# the `runtime` extra: numpy + pillow + onnxruntime, no torch; README "Without PyTorch").
FULL_REQUIRES = ["torch>=2.2", "numpy>=1.24", "safetensors>=0.4", "pillow>=9.0", "tqdm>=4.60"]
RUNTIME_REQUIRES = ["numpy>=1.24", "pillow>=9.0", "tqdm>=4.60"]
RUNTIME_ONLY = os.environ.get("FASTSAM_RUNTIME_ONLY", "") not in ("", "0")

setup(
    install_requires=RUNTIME_REQUIRES if RUNTIME_ONLY else FULL_REQUIRES,
    packages=[p for name, folder in PACKAGE_DIRS.items() for p in _packages(name, folder)],
    package_dir=PACKAGE_DIRS,
    package_data={"fastsam_core.serve": ["static/*"]},  # the `fastsam serve` page
)
