"""Package discovery: our folders `kernels/` and `weights_convert/` install as `fastsam_kernels` and
`fastsam_weights_convert`, names that cannot collide with PyPI's unrelated `kernels` package."""

from setuptools import find_packages, setup

PACKAGE_DIRS = {
    "fastsam_core": "fastsam_core",
    "fastsam_kernels": "kernels",
    "fastsam_weights_convert": "weights_convert",
}


def _packages(name: str, folder: str) -> list[str]:
    return [name] + [f"{name}.{sub}" for sub in find_packages(folder)]


setup(
    packages=[p for name, folder in PACKAGE_DIRS.items() for p in _packages(name, folder)],
    package_dir=PACKAGE_DIRS,
    package_data={"fastsam_core.serve": ["static/*"]},  # the `fastsam serve` page
)
