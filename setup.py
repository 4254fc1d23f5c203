"""Package discovery only (metadata lives in pyproject.toml).

setuptools' declarative `find` cannot map the `hardware-sim/` folder (a name DESIGN.md
fixes) to the importable `hardware_sim` package together with its subpackages, so the
mapping is computed here.
"""

from setuptools import find_packages, setup

sim = ["hardware_sim"] + [f"hardware_sim.{p}" for p in find_packages(where="hardware-sim")]
setup(
    packages=find_packages(include=["agent", "agent.*", "drivers", "drivers.*", "allocator", "allocator.*"]) + sim,
    package_dir={"hardware_sim": "hardware-sim"},
)
