"""LangFlow jobs: list, read, analyse and run the flows of a LangFlow server.

Every job takes a `LangflowConnection`, the name of a saved one, or None for the
connection described by ``LANGFLOW_API_URL`` / ``LANGFLOW_API_KEY`` (see
`LangflowConnection.from_environment`). Resources are named
``langflow:flow/<name or id>``.

The API key travels only in the ``x-api-key`` header: it is never part of a
result, a log line or an error (answers from the server are scrubbed of it too).
HTTP failures are translated through the one error table
(`magicflow.errors.error_for_status` / `error_for_exception`), so 5xx, 429,
timeouts and refused connections are `TransientError` (retried by Prefect) and
401/403, 404 and other 4xx are permanent. The one LangFlow-specific rule: a 4xx
answer to a run that blames a tweak is an `InvalidInputError` naming the tweak.

* `tasks.langflow.reads`: `list_langflow_flows`, `get_langflow_flow`
* `tasks.langflow.analysis`: `analyze_langflow_flow`, `analyze_flow_graph`
* `tasks.langflow.runs`: `run_langflow_flow`, `check_tweaks`
* `tasks.langflow.models`: the flow, analysis and run result models, and the API's
  input and output types
* `tasks.langflow.session`: `langflow_connection`, the HTTP calls and their errors.

Example:
    ```python
    from prefect import flow
    from tasks.langflow import analyze_langflow_flow, get_langflow_flow, run_langflow_flow

    @flow
    def ask(question: str) -> str | None:
        chat = get_langflow_flow("langflow", "Support bot")
        if not analyze_langflow_flow(chat).runnable:
            raise ValueError("the flow is not runnable")
        return run_langflow_flow("langflow", chat.id, input_value=question).output_text
    ```
"""

from tasks.langflow.analysis import analyze_flow_graph, analyze_langflow_flow
from tasks.langflow.models import (
    API_PREFIX,
    INPUT_COMPONENT_TYPES,
    INPUT_TYPES,
    OUTPUT_COMPONENT_TYPES,
    OUTPUT_TYPES,
    LangflowComponent,
    LangflowFlow,
    LangflowFlowAnalysis,
    LangflowProblem,
    LangflowRunResult,
)
from tasks.langflow.reads import get_langflow_flow, list_langflow_flows
from tasks.langflow.runs import check_tweaks, run_langflow_flow
from tasks.langflow.session import langflow_connection

__all__ = [
    "API_PREFIX",
    "INPUT_COMPONENT_TYPES",
    "INPUT_TYPES",
    "OUTPUT_COMPONENT_TYPES",
    "OUTPUT_TYPES",
    "LangflowComponent",
    "LangflowFlow",
    "LangflowFlowAnalysis",
    "LangflowProblem",
    "LangflowRunResult",
    "analyze_flow_graph",
    "analyze_langflow_flow",
    "check_tweaks",
    "get_langflow_flow",
    "langflow_connection",
    "list_langflow_flows",
    "run_langflow_flow",
]
