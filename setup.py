"""Gemstone TFX pipeline: trains, validates, evaluates and ships a gemstone image classifier.

Install with `make` (a Python 3.10 virtualenv from requirements.lock); the
dependencies are pinned there, not here, so that every machine gets the same
tree. `install_requires` names only what the code imports directly.

The project's data ships inside the package (`package_data`): the curated
schemas and the variety -> family map in schema/, which `gemstone/schema` links
to, so that a wheel installed anywhere finds them through the package
`gemstone.schema`, as a checkout does.
"""
from setuptools import find_packages, setup

setup(
    name="gemstone-tfx",
    version="0.1.0",
    description="A TFX production pipeline for gemstone image classification",
    python_requires=">=3.9,<3.11",
    packages=find_packages(include=["gemstone*", "pipeline*", "components*", "modules*"]),
    package_data={"gemstone.schema": ["families.csv", "*/schema.pbtxt"]},
    install_requires=[
        "tfx[kfp]==1.16.0",
        "apache-beam[gcp]==2.61.0",
        "pillow",
        "imagehash",
        "tqdm",
        "matplotlib",
    ],
    entry_points={"console_scripts": ["gemstone=gemstone.apps.cli:main"]},
)
