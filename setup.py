"""Packaging that pyproject.toml cannot say: the repository's top-level ``profiles/`` directory is
installed as the package data directory ``cpumodel/profiles/``, so an installed wheel finds the
shipped profiles (``cpumodel.resolve.SHIPPED``). Everything else is in pyproject.toml."""

from setuptools import find_namespace_packages, setup

setup(
    packages=[*find_namespace_packages(include=["cpumodel", "cpumodel.*"], exclude=["*.__pycache__"]),
              "cpumodel.profiles"],
    package_dir={"cpumodel.profiles": "profiles"},
)
