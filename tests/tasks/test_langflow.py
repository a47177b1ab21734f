"""LangFlow jobs against the LangFlow fake over HTTP; the fake counts what it received."""

from __future__ import annotations

import pytest
from prefect import flow

from blocks import LangflowConnection
from magicflow import (
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    TransientError,
)
from tasks.langflow import (
    LangflowFlow,
    analyze_flow_graph,
    analyze_langflow_flow,
    get_langflow_flow,
    list_langflow_flows,
    run_langflow_flow,
)
from tests.backends import free_port
from tests.backends.langflow_fake import edge, node
from tests.fixtures.langflow import LANGFLOW_TEST_KEY, LangflowApi, chat_graph

RUNS = "POST /api/v1/run/*"
LISTS = "GET /api/v1/flows/"

# --- list / get ------------------------------------------------------------------------------


def test_list_without_graphs_leaves_out_examples_and_graphs(
    langflow: LangflowConnection, langflow_api: LangflowApi
) -> None:
    langflow_api.create_flow("Echo", chat_graph("a"), description="says it back")
    langflow_api.create_flow("Shout", chat_graph("b"), endpoint_name="shout")
    flows = list_langflow_flows.fn(langflow)
    assert [f.name for f in flows] == ["Echo", "Shout"]
    assert all(f.data is None for f in flows)
    assert flows[1].endpoint_name == "shout" and flows[0].description == "says it back"
    with_graphs = list_langflow_flows.fn(langflow, include_graphs=True)
    assert [len(f.data["nodes"]) for f in with_graphs if f.data] == [2, 2]
    assert langflow_api.counts()[LISTS] == 2


def test_list_follows_the_pages_of_a_paging_server(
    langflow: LangflowConnection, langflow_api: LangflowApi
) -> None:
    for name in ("one", "two", "three"):
        langflow_api.create_flow(name, chat_graph())
    langflow_api.page_size(2)
    langflow_api.clear_requests()
    assert [f.name for f in list_langflow_flows.fn(langflow)] == ["one", "two", "three"]
    assert langflow_api.counts()[LISTS] == 2


def test_get_by_id_name_and_endpoint_name_and_duplicates_are_renamed(
    langflow: LangflowConnection, langflow_api: LangflowApi
) -> None:
    first = langflow_api.create_flow("Echo", chat_graph(), endpoint_name="echo")
    second = langflow_api.create_flow("Echo", chat_graph(), endpoint_name="echo")
    assert (second["name"], second["endpoint_name"]) == ("Echo (1)", "echo-1")  # silently renamed
    for reference in (first["id"], "Echo", "echo"):
        found = get_langflow_flow.fn(langflow, reference)
        assert found.id == first["id"] and found.data and found.data["nodes"]
    assert get_langflow_flow.fn(langflow, "Echo (1)", include_graph=False).id == second["id"]


def test_unknown_and_ambiguous_names_fail_clearly(
    langflow: LangflowConnection, langflow_api: LangflowApi
) -> None:
    langflow_api.create_flow("Echo", chat_graph())
    with pytest.raises(NotFoundError) as missing:
        get_langflow_flow.fn(langflow, "Nope")
    assert missing.value.resource == "langflow:flow/Nope" and "'Echo'" in missing.value.cause
    with pytest.raises(NotFoundError):
        get_langflow_flow.fn(langflow, "00000000-0000-4000-8000-000000000000")
    langflow_api.add_unowned_flow("Echo", chat_graph())
    with pytest.raises(InvalidInputError, match="2 flows have this name"):
        get_langflow_flow.fn(langflow, "Echo")


def test_a_bad_key_is_permission_denied_and_never_shown(
    langflow_server: str, langflow_api: LangflowApi
) -> None:
    wrong = "sk-wrong-" + LANGFLOW_TEST_KEY[-12:]
    bad = LangflowConnection(url=langflow_server, api_key=wrong)
    with pytest.raises(PermissionDeniedError) as denied:
        list_langflow_flows.fn(bad)
    assert "403" in str(denied.value) and "Invalid API key" in str(denied.value)
    assert wrong not in str(denied.value) and "API key" in denied.value.cause


def test_an_unreachable_server_is_transient() -> None:
    gone = LangflowConnection(url=f"http://127.0.0.1:{free_port()}", api_key="sk-x")
    with pytest.raises(TransientError, match="unreachable"):
        list_langflow_flows.fn(gone)


def test_connection_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, langflow_server: str, langflow_api: LangflowApi
) -> None:
    langflow_api.create_flow("Echo", chat_graph())
    monkeypatch.setenv("LANGFLOW_API_URL", langflow_server)
    monkeypatch.setenv("LANGFLOW_API_KEY", LANGFLOW_TEST_KEY)
    assert [f.name for f in list_langflow_flows.fn(None)] == ["Echo"]


# --- analysis ---------------------------------------------------------------------------------


def _flow(nodes: list[dict], edges: list[dict]) -> LangflowFlow:
    return LangflowFlow(id="f", name="t", data={"nodes": nodes, "edges": edges})


def test_analysis_of_a_sound_flow_orders_components_by_their_edges() -> None:
    nodes = [
        node("ChatOutput", "ChatOutput-3", "Chat Output"),
        node("Prompt", "Prompt-2", "Prompt"),
        node("ChatInput", "ChatInput-1", "Chat Input"),
        {"id": "note-1", "type": "noteNode", "data": {"type": "note"}},
    ]
    edges = [edge("Prompt-2", "ChatOutput-3"), edge("ChatInput-1", "Prompt-2")]
    analysis = analyze_flow_graph(_flow(nodes, edges))
    assert analysis.runnable, analysis.problems
    assert analysis.order == ["ChatInput-1", "Prompt-2", "ChatOutput-3"]
    assert [c.type for c in analysis.inputs] == ["ChatInput"]
    assert [c.id for c in analysis.outputs] == ["ChatOutput-3"]
    assert (analysis.input_type, analysis.output_type) == ("chat", "chat")


@pytest.mark.parametrize(
    ("nodes", "edges", "kind"),
    [
        ([node("ChatOutput", "ChatOutput-2", "o")], [], "no-input"),
        ([node("ChatInput", "ChatInput-1", "i")], [], "no-output"),
        (
            [node("ChatInput", "ChatInput-1", "i"), node("ChatOutput", "ChatOutput-2", "o")],
            [edge("ChatInput-1", "ChatOutput-2"), edge("Ghost-9", "ChatOutput-2")],
            "dangling-edge",
        ),
        (
            [
                node("ChatInput", "ChatInput-1", "i"),
                node("ChatOutput", "ChatOutput-2", "o"),
                node("Prompt", "Prompt-3", "p"),
            ],
            [edge("ChatInput-1", "ChatOutput-2")],
            "disconnected",
        ),
        (
            [
                node("ChatInput", "ChatInput-1", "i"),
                node("Agent", "Agent-2", "a"),
                node("Tool", "Tool-3", "t"),
                node("ChatOutput", "ChatOutput-4", "o"),
            ],
            [
                edge("ChatInput-1", "Agent-2"),
                edge("Agent-2", "Tool-3"),
                edge("Tool-3", "Agent-2"),
                edge("Agent-2", "ChatOutput-4"),
            ],
            "cycle",
        ),
        ([], [], "no-graph"),
    ],
)
def test_analysis_reports_each_problem(nodes: list, edges: list, kind: str) -> None:
    analysis = analyze_flow_graph(_flow(nodes, edges))
    assert not analysis.runnable
    assert kind in [problem.kind for problem in analysis.problems], analysis.problems
    if kind == "cycle":
        assert analysis.order == ["ChatInput-1"]
        assert "Agent-2, Tool-3, ChatOutput-4" in str(analysis.problems)


def test_analysis_job_runs_as_a_task_in_a_flow(
    langflow: LangflowConnection, langflow_api: LangflowApi
) -> None:
    langflow_api.create_flow("Echo", chat_graph())

    @flow
    def analyse() -> list[str]:
        return [p.kind for p in analyze_langflow_flow(get_langflow_flow(langflow, "Echo")).problems]

    assert analyse() == []


# --- runs -------------------------------------------------------------------------------------


def test_run_returns_the_output_text_and_the_nested_result(
    langflow: LangflowConnection, langflow_api: LangflowApi
) -> None:
    created = langflow_api.create_flow("Echo", chat_graph(output_prefix="echo: "))
    result = run_langflow_flow.fn(langflow, "Echo", input_value="hello", session_id="s-1")
    assert result.output_text == "echo: hello"
    assert result.flow_id == created["id"] and result.session_id == "s-1"
    assert result.outputs[0]["outputs"][0]["results"]["message"]["text"] == "echo: hello"  # type: ignore[index, call-overload]
    assert result.output_texts == {"ChatOutput-x2": "echo: hello"}
    tweaked = run_langflow_flow.fn(
        langflow, created["id"], input_value="hi", tweaks={"Chat Output": {"prefix": "> "}}
    )
    assert tweaked.output_text == "> hi"
    assert langflow_api.counts()[RUNS] == 2


def test_run_rejects_malformed_tweaks_before_any_request(
    langflow: LangflowConnection, langflow_api: LangflowApi
) -> None:
    created = langflow_api.create_flow("Echo", chat_graph())
    langflow_api.clear_requests()
    with pytest.raises(InvalidInputError, match="tweak 'ChatOutput-x2' must be an object"):
        run_langflow_flow.fn(langflow, created["id"], tweaks={"ChatOutput-x2": "loud"})  # type: ignore[dict-item]
    with pytest.raises(InvalidInputError, match="input_type"):
        run_langflow_flow.fn(langflow, created["id"], input_type="voice")
    assert langflow_api.counts() == {}


def test_a_tweak_langflow_refuses_is_invalid_input_naming_it(
    langflow: LangflowConnection, langflow_api: LangflowApi
) -> None:
    created = langflow_api.create_flow("Echo", chat_graph())
    with pytest.raises(InvalidInputError) as refused:
        run_langflow_flow.fn(
            langflow,
            created["id"],
            input_value="hi",
            tweaks={"ChatOutput-x2": {"code": "import os"}, "Chat Input": {"sender_name": "u"}},
        )
    assert "tweak 'ChatOutput-x2' refused" in refused.value.cause
    assert "422" in refused.value.cause and "fields: code" in refused.value.cause
    with pytest.raises(InvalidInputError, match=r"tweak .ChatInput-x1. refused: .*400"):
        run_langflow_flow.fn(
            langflow, created["id"], input_value="hi", tweaks={"ChatInput-x1": {"input_value": "x"}}
        )


def test_run_of_an_unknown_flow_or_with_a_bad_key(
    langflow: LangflowConnection, langflow_server: str, langflow_api: LangflowApi
) -> None:
    with pytest.raises(NotFoundError, match=r"Flow identifier .* not found"):
        run_langflow_flow.fn(langflow, "00000000-0000-4000-8000-00000000abcd", input_value="x")
    with pytest.raises(NotFoundError, match="no flow with this name"):
        run_langflow_flow.fn(langflow, "ghost", input_value="x")
    created = langflow_api.create_flow("Echo", chat_graph())
    bad = LangflowConnection(url=langflow_server, api_key="sk-not-the-key")
    with pytest.raises(PermissionDeniedError, match="403"):
        run_langflow_flow.fn(bad, created["id"], input_value="x")


def test_transient_failures_are_retried_by_prefect_and_logs_hold_no_key(
    langflow: LangflowConnection,
    langflow_api: LangflowApi,
    langflow_server: str,
    fault_proxy_factory,
    captured_logs,
) -> None:
    created = langflow_api.create_flow("Echo", chat_graph())
    proxy = fault_proxy_factory(langflow_server)
    proxy.fail(status=503, count=2, method="POST", body='{"detail": "busy"}')
    through_proxy = langflow.model_copy(update={"url": proxy.url})
    quick = run_langflow_flow.with_options(retry_delay_seconds=0, retry_jitter_factor=None)

    @flow
    def ask() -> str | None:
        return quick(through_proxy, created["id"], input_value="hello").output_text

    assert ask() == "hello"
    assert proxy.injected == 2
    assert langflow_api.counts()[RUNS] == 1
    assert "503" in captured_logs.text
    assert LANGFLOW_TEST_KEY not in captured_logs.text
