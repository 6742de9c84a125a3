"""Source-format readers: an SOP or a JSON workflow in, one normalized `SourceGraph` out.

This is where a new SOP version lands: a module that reads it into a `SourceGraph`, and a
branch in `read_source` that recognises it. Nothing here orders steps or builds the plan
(that is `aef.transform`).
"""

from __future__ import annotations

from typing import Any

from aef.errors import ValidationFailed
from aef.sop_formats.graph import SourceEdge, SourceGraph, SourceLoop, SourceNode
from aef.sop_formats.sop import read_sop
from aef.sop_formats.workflow import read_workflow

__all__ = ["SourceEdge", "SourceGraph", "SourceLoop", "SourceNode", "read_source"]


def read_source(document: dict[str, Any]) -> SourceGraph:
    """Recognise the format (`public.nodes`: SOP; `execution.workflow`: JSON workflow) and
    read it. Raises `ValidationFailed` for a document of neither or both formats."""
    public = document.get("public")
    execution = document.get("execution")
    is_sop = isinstance(public, dict) and "nodes" in public
    is_workflow = isinstance(execution, dict) and "workflow" in execution
    if is_sop and is_workflow:
        raise ValidationFailed(
            "the document has both public.nodes (SOP) and execution.workflow "
            "(JSON workflow); cannot tell which to run"
        )
    if is_sop:
        return read_sop(document)
    if is_workflow:
        return read_workflow(document)
    raise ValidationFailed(
        "unrecognised document: expected an SOP (public.nodes) or a JSON workflow "
        "(execution.workflow.nodes)"
    )
