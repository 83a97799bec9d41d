"""Artifacts the Kubeflow Pipelines UI renders: `system.HTML` and `system.Markdown`.

KFP's v2 backend names an output's ML-Metadata type after the `title` of its artifact schema, and the
UI shows an artifact of type `system.HTML` or `system.Markdown` (in the run's Visualizations) by
reading the file at the artifact's URI. TFX's compiler writes a custom artifact type's TYPE_NAME as
that title, so these two classes are `system.HTML` and `system.Markdown` in the compiled spec and in
ML-Metadata. They are ValueArtifacts: the file at the URI is the document itself, not a folder
(TFX's local runner creates only its parent folder; under KFP the executor writes the file).

TFX's container entrypoint turns a schema title back into a class by importing the title as a class
path, which `system.HTML` is not: `flywheel.kfp_executor` registers these classes before it runs.
"""

from __future__ import annotations

import os

from tfx.dsl.io import fileio
from tfx.types import artifact as tfx_artifact
from tfx.types.value_artifact import ValueArtifact

HTML_TYPE_NAME = "system.HTML"
MARKDOWN_TYPE_NAME = "system.Markdown"


def _encode(kind: str, value: str) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"{kind}: expected the document as str, got {type(value).__name__}")
    return value.encode("utf-8")


class HTML(ValueArtifact):
    """A self-contained HTML document, shown by the KFP UI; the file at `uri` is the document (UTF-8)."""

    TYPE_NAME = HTML_TYPE_NAME

    def encode(self, value: str) -> bytes:
        return _encode(HTML_TYPE_NAME, value)

    def decode(self, serialized_value: bytes) -> str:
        return serialized_value.decode("utf-8")


class Markdown(ValueArtifact):
    """A Markdown document, shown by the KFP UI; the file at `uri` is the document (UTF-8)."""

    TYPE_NAME = MARKDOWN_TYPE_NAME

    def encode(self, value: str) -> bytes:
        return _encode(MARKDOWN_TYPE_NAME, value)

    def decode(self, serialized_value: bytes) -> str:
        return serialized_value.decode("utf-8")


def _write(artifact: tfx_artifact.Artifact, kind: type, text: str) -> str:
    if not isinstance(artifact, kind):
        raise TypeError(f"ui_artifacts: expected a {kind.TYPE_NAME} artifact, got {type(artifact).__name__} "
                        f"{getattr(artifact, 'uri', artifact)!r}")
    if not artifact.uri:
        raise ValueError(f"ui_artifacts: the {kind.TYPE_NAME} artifact has no uri")
    fileio.makedirs(os.path.dirname(artifact.uri))
    artifact.value = text  # ValueArtifact.write: the file at uri, through fileio
    return artifact.uri


def write_html(artifact: tfx_artifact.Artifact, html: str) -> str:
    """Writes `html` as the file at the HTML artifact's uri (creating its folder); returns the uri."""
    return _write(artifact, HTML, html)


def write_markdown(artifact: tfx_artifact.Artifact, markdown: str) -> str:
    """Writes `markdown` as the file at the Markdown artifact's uri (creating its folder); returns the uri."""
    return _write(artifact, Markdown, markdown)

