"""tfx-flywheel: custom TFX components and pipelines for a model's whole production life."""

from setuptools import find_packages, setup

# The top-level folders are the layout users see; they install under one import name, flywheel.*,
# so nothing called `components` or `pipelines` lands in site-packages.
PACKAGE_DIRS = {"flywheel": "flywheel", "flywheel.components": "components", "flywheel.pipelines": "pipelines",
                "flywheel.schemas": "schemas"}
DASK = ["dask==2026.11.0", "distributed==2026.11.0"]
# pyCANON: the tests' oracle for k-anonymity and l-diversity (1.0.1.post2, the last release that accepts numpy 1
# and pandas 1; later ones pin numpy 2.0.2 and pandas 2.3.3 exactly).
ORACLES = ["pycanon==1.0.1.post2"]


def _packages() -> list[str]:
    found = []
    for name, folder in PACKAGE_DIRS.items():
        found += [name] + [f"{name}.{sub}" for sub in find_packages(folder)]
    return found


setup(
    name="tfx-flywheel",
    version="0.1.0",
    description="TFX components and pipelines: ingest, validate, train, evaluate, push, monitor.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.11",
    packages=_packages(),
    package_dir=PACKAGE_DIRS,
    package_data={
        "flywheel.schemas": ["*/*.pbtxt", "*/*.json"],
        "flywheel.components": ["*/testdata/**/*", "*/README.md"],
    },
    include_package_data=True,
    # uvloop and httptools: uvicorn's fast event loop and HTTP parser (it picks them up when installed);
    # orjson: the server's JSON; msgspec: its typed decoder of the common predict body. None of them has
    # dependencies of its own.
    install_requires=["tfx[kfp]==1.16.0", "dill", "httpx", "prometheus_client==0.26.0", "starlette==1.7.0",
                      "uvicorn==0.54.0", "uvloop==0.23.0", "httptools==0.9.0", "orjson==3.13.0",
                      "msgspec==0.22.0", "google-crc32c==1.9.0"],
    # dask: a dask.distributed cluster to run the Beam jobs on (flywheel.dask_runner); the tests start one.
    extras_require={
        "dask": DASK,
        "dev": ["pytest", "pytest-xdist", "jupytext", "ruff", "jsonschema", *DASK, *ORACLES],
        "test": ["pytest", "pytest-xdist", "jupytext", "jsonschema", *DASK, *ORACLES],
        "notebooks": ["jupytext", "nbclient", "ipykernel"],
    },
    entry_points={"console_scripts": ["flywheel=flywheel.cli:run"]},
)
