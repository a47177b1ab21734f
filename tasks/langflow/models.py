"""What LangFlow's API speaks: flows, their components, analyses and run results."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue

API_PREFIX = "/api/v1"

INPUT_COMPONENT_TYPES: dict[str, str] = {"ChatInput": "chat", "TextInput": "text"}
"""Component type (``data.nodes[].data.type``) -> the run API's ``input_type`` it takes."""

OUTPUT_COMPONENT_TYPES: dict[str, str] = {"ChatOutput": "chat", "TextOutput": "text"}
"""Component type -> the run API's ``output_type`` that selects it."""

INPUT_TYPES = ("chat", "text", "any")
"""Values of the run API's ``input_type``."""

OUTPUT_TYPES = ("chat", "text", "any", "debug")
"""Values of the run API's ``output_type``."""

_NOTE_NODE_TYPES = frozenset({"noteNode"})  # sticky notes on the canvas: not components
_MAX_DETAIL_CHARS = 300
_REDACTED = "**********"
_TWEAK_WORDS = re.compile(r"\btweaks?\b", re.IGNORECASE)


class LangflowFlow(BaseModel):
    """One LangFlow flow, as the flows API lists it.

    Attributes:
        id: The flow's UUID (what the API takes).
        name: Its display name (unique per user; LangFlow renames duplicates).
        endpoint_name: Its custom endpoint name, if set (the run API takes it too).
        description: Its description.
        updated_at: When it was last saved (ISO 8601, as LangFlow sends it).
        folder_id: The project (folder) it belongs to.
        data: The graph (``nodes`` and ``edges``); None when listed without graphs.

    Example:
        >>> LangflowFlow(id="0b6c...", name="Support bot").resource
        'langflow:flow/Support bot'
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    name: str
    endpoint_name: str | None = None
    description: str | None = None
    updated_at: str | None = None
    folder_id: str | None = None
    data: dict[str, Any] | None = None

    @property
    def resource(self) -> str:
        """``langflow:flow/<name>``, how errors and changes name this flow."""
        return f"langflow:flow/{self.name}"


class LangflowComponent(BaseModel):
    """One component (node) of a flow graph.

    Attributes:
        id: The node id, e.g. ``ChatInput-x1Y2z`` (what tweaks are keyed by).
        type: The component type, e.g. ``ChatInput``.
        display_name: The name shown on the canvas.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    type: str
    display_name: str | None = None


class LangflowProblem(BaseModel):
    """Something that keeps a flow from running as a scheduled workflow.

    Attributes:
        kind: ``no-graph``, ``no-input``, ``no-output``, ``dangling-edge``,
            ``disconnected`` or ``cycle``.
        detail: Which components or edges, in words.
    """

    model_config = ConfigDict(frozen=True)

    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


class LangflowFlowAnalysis(BaseModel):
    """What a flow takes, what it returns, the order it runs in, and what is wrong with it.

    Attributes:
        flow_id: The flow's UUID.
        flow_name: The flow's name.
        inputs: Its input components (`INPUT_COMPONENT_TYPES`).
        outputs: Its output components (`OUTPUT_COMPONENT_TYPES`).
        order: Every component id in dependency order (sources first); components
            caught in a cycle are left out.
        problems: Why it cannot run unattended; empty when it can.
        default_input: The input component's preset text, if any.

    Example:
        >>> analysis = LangflowFlowAnalysis(flow_id="f", flow_name="n", inputs=[], outputs=[],
        ...     order=[], problems=[LangflowProblem(kind="no-input", detail="none")])
        >>> analysis.runnable
        False
    """

    model_config = ConfigDict(frozen=True)

    flow_id: str
    flow_name: str
    inputs: list[LangflowComponent]
    outputs: list[LangflowComponent]
    order: list[str]
    problems: list[LangflowProblem]
    default_input: str | None = None

    @property
    def runnable(self) -> bool:
        """True when the analysis found no problem."""
        return not self.problems

    @property
    def input_type(self) -> str:
        """The run API's ``input_type`` for this flow (its first input's, else ``chat``)."""
        return INPUT_COMPONENT_TYPES.get(self.inputs[0].type, "chat") if self.inputs else "chat"

    @property
    def output_type(self) -> str:
        """The run API's ``output_type``: the outputs' common kind, else ``any``."""
        kinds = {OUTPUT_COMPONENT_TYPES.get(output.type, "any") for output in self.outputs}
        return kinds.pop() if len(kinds) == 1 else "any"


class LangflowRunResult(BaseModel):
    """The answer of one flow run.

    Attributes:
        flow_id: The flow (id or endpoint name) that ran.
        session_id: The session LangFlow used (pass it again to continue a chat).
        output_text: The first output component's text, or None.
        output_texts: Every output component's text, by component id.
        outputs: The structured result, exactly as the run API returned ``outputs``.
        duration_seconds: Wall time of the run request.
    """

    model_config = ConfigDict(frozen=True)

    flow_id: str
    session_id: str | None = None
    output_text: str | None = None
    output_texts: dict[str, str] = Field(default_factory=dict)
    outputs: list[JsonValue] = Field(default_factory=list)
    duration_seconds: float = 0.0
