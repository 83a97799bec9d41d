"""The public API: every name `flywheel` exports is what it says, whichever of the API's modules were loaded."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import flywheel
import flywheel.api


def test_every_public_name_is_a_function_or_a_class_after_every_api_module_is_loaded():
    """A module of flywheel.api named like a public function would replace it on the package once imported."""
    for module in pkgutil.iter_modules(flywheel.api.__path__):
        importlib.import_module(f"flywheel.api.{module.name}")
    wrong = {name: type(getattr(flywheel, name)).__name__ for name in flywheel.__all__
             if not (inspect.isfunction(getattr(flywheel, name)) or inspect.isclass(getattr(flywheel, name)))}
    assert wrong == {}
