"""tfx-flywheel: custom TFX components and pipelines for a model's whole production life."""

from setuptools import find_packages, setup

setup(
    name="tfx-flywheel",
    version="0.1.0",
    description="TFX components and pipelines: ingest, validate, train, evaluate, push, monitor.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.11",
    packages=find_packages(include=["components", "components.*", "pipelines", "pipelines.*", "schemas", "schemas.*"]),
    package_data={
        "schemas": ["*/*.pbtxt", "*/*.json"],
        "components": ["*/testdata/**/*", "*/README.md"],
    },
    include_package_data=True,
    install_requires=["tfx[kfp]==1.16.0", "dill"],
    extras_require={
        "dev": ["pytest", "jupytext", "ruff"],
        "test": ["pytest", "jupytext"],
        "notebooks": ["jupytext", "nbclient", "ipykernel"],
    },
    entry_points={"console_scripts": ["flywheel=pipelines.cli:main"]},
)
