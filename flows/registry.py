"""The allow-list of workflows a Kafka request may start, and their parameter checks.

A request names a workflow; the registry maps that name to a Prefect deployment
(``flow-name/deployment-name``) and to a pydantic model built from the flow
function's own signature, so that a request's parameters are validated exactly as
the flow would validate them, before any run exists. A name missing from the
registry is rejected (`UnknownWorkflowError`), and so are parameters the flow does
not declare.

Example:
    ```python
    from prefect import flow

    from flows.registry import Registry


    @flow
    def tenant_provisioning(tenant: str, dry_run: bool = False) -> None: ...


    registry = Registry()
    registry.register("tenant-provisioning", tenant_provisioning)
    workflow = registry.get("tenant-provisioning")
    workflow.validate_parameters({"tenant": "acme"}, dry_run=True)
    # -> {"tenant": "acme", "dry_run": True}
    ```
"""

import importlib
import inspect
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from prefect import Flow
from pydantic import BaseModel, ConfigDict, JsonValue, SecretStr, ValidationError, create_model

from magicflow.errors import InvalidInputError

DRY_RUN_PARAMETER = "dry_run"
"""The parameter through which a workflow receives a request's ``dry_run`` flag."""

PREFECT_HYDRATION_KEY = "__prefect_kind"
"""Marks a value the Prefect server renders (Jinja, workspace variables) on run creation."""


class UnknownWorkflowError(InvalidInputError):
    """A request names a workflow that is not in the registry."""

    def __init__(self, workflow: str) -> None:
        super().__init__(f"workflow:{workflow}", "not a registered workflow")


class InvalidParametersError(InvalidInputError):
    """A request's parameters do not fit the workflow's signature. Never holds their values."""


@dataclass(frozen=True)
class RegisteredWorkflow:
    """One workflow a request may start.

    Attributes:
        name: The name requests use, e.g. ``tenant-provisioning``.
        deployment: The Prefect deployment, ``flow-name/deployment-name``.
        parameters_model: Pydantic model of the flow's parameters (extra ones forbidden).
        secret_parameters: Names of parameters annotated `SecretStr`.
    """

    name: str
    deployment: str
    parameters_model: type[BaseModel]
    secret_parameters: frozenset[str]

    @property
    def accepts_dry_run(self) -> bool:
        """True when the flow has a ``dry_run`` parameter."""
        return DRY_RUN_PARAMETER in self.parameters_model.model_fields

    def validate_parameters(
        self, parameters: dict[str, JsonValue], dry_run: bool = False
    ) -> dict[str, JsonValue]:
        """Checks a request's parameters against the flow's signature.

        The returned parameters are the request's own JSON values, unchanged (the
        flow coerces them itself when it runs), plus ``dry_run`` when asked for.

        Args:
            parameters: The request's parameters.
            dry_run: The request's ``dry_run`` flag.

        Returns:
            The parameters to start the deployment with.

        Raises:
            InvalidParametersError: A parameter is missing, unknown or of the wrong
                type, carries a Prefect template (``__prefect_kind``), is a secret
                (``SecretStr``), or the request asks for a dry run of a workflow
                without a ``dry_run`` parameter. The
                message names the parameters and the rule, never their values.
        """
        resource = f"workflow:{self.name}"
        if _contains_hydration_marker(parameters):
            raise InvalidParametersError(
                resource, f"parameters must not contain {PREFECT_HYDRATION_KEY!r} templates"
            )
        if DRY_RUN_PARAMETER in parameters:
            raise InvalidParametersError(
                resource, "set dry_run in the request, not among the parameters"
            )
        if dry_run and not self.accepts_dry_run:
            raise InvalidParametersError(resource, "this workflow has no dry-run mode")
        to_run = {**parameters, DRY_RUN_PARAMETER: True} if dry_run else dict(parameters)
        try:
            self.parameters_model.model_validate(to_run)
        except ValidationError as error:
            raise InvalidParametersError(resource, _describe_errors(error)) from None
        if sent_secrets := sorted(self.secret_parameters & parameters.keys()):
            # A flow-run parameter is stored and shown in plain text by Prefect, and the
            # request itself sat in Kafka: a secret must travel by reference (a block name).
            raise InvalidParametersError(
                resource,
                f"{', '.join(sent_secrets)}: secret parameters cannot be sent in a request; "
                "pass the name of a block that holds the secret instead",
            )
        return to_run


def _contains_hydration_marker(value: JsonValue) -> bool:
    """True when a dict anywhere in the value carries Prefect's hydration key."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            if PREFECT_HYDRATION_KEY in item:
                return True
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def _describe_errors(error: ValidationError) -> str:
    """Where and why validation failed, without the offending values (they may be secret)."""
    problems = [
        f"{'.'.join(str(part) for part in problem['loc']) or '(parameters)'}: {problem['msg']}"
        for problem in error.errors(include_url=False, include_input=False, include_context=False)
    ]
    shown = "; ".join(problems[:5])
    return shown + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")


def parameters_model_for(function: Callable[..., Any], model_name: str) -> type[BaseModel]:
    """Builds a pydantic model of a function's parameters, forbidding any others.

    Args:
        function: The flow function (``flow.fn``).
        model_name: Name of the model class, for error messages.

    Returns:
        A model with one field per named parameter, with its annotation (``Any`` when
        there is none) and its default.
    """
    hints = typing.get_type_hints(function)
    fields: dict[str, Any] = {}
    for parameter in inspect.signature(function).parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        annotation = hints.get(parameter.name, Any)
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[parameter.name] = (annotation, default)
    config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    return create_model(model_name, __config__=config, **fields)


def _mentions_secret(annotation: Any) -> bool:
    """True when an annotation is `SecretStr` or contains it (``SecretStr | None``...)."""
    if annotation is SecretStr:
        return True
    return any(_mentions_secret(argument) for argument in typing.get_args(annotation))


class Registry:
    """The allow-list: workflow name -> deployment and parameter model.

    Args:
        workflows: Workflows to start with.

    Example:
        ```python
        registry = Registry()
        registry.register("hello", hello_flow, deployment="hello/kafka")
        registry.get("hello").deployment  # "hello/kafka"
        ```
    """

    def __init__(self, workflows: Iterable[RegisteredWorkflow] = ()) -> None:
        self._workflows = {workflow.name: workflow for workflow in workflows}

    def register(
        self, name: str, flow: Flow[..., Any], deployment: str | None = None
    ) -> RegisteredWorkflow:
        """Allows requests to start a flow's deployment.

        Args:
            name: The name requests use.
            flow: The flow; its function's signature is the parameter model.
            deployment: ``flow-name/deployment-name``; defaults to ``<flow name>/<name>``.

        Returns:
            The registered workflow (registering a name again replaces it).
        """
        hints = typing.get_type_hints(flow.fn)
        workflow = RegisteredWorkflow(
            name=name,
            deployment=deployment or f"{flow.name}/{name}",
            parameters_model=parameters_model_for(flow.fn, f"{name}-parameters"),
            secret_parameters=frozenset(
                parameter
                for parameter in inspect.signature(flow.fn).parameters
                if _mentions_secret(hints.get(parameter))
            ),
        )
        self._workflows[name] = workflow
        return workflow

    def get(self, name: str) -> RegisteredWorkflow:
        """The registered workflow of that name.

        Args:
            name: The workflow name from a request.

        Returns:
            The registered workflow.

        Raises:
            UnknownWorkflowError: No workflow of that name is registered.
        """
        try:
            return self._workflows[name]
        except KeyError:
            raise UnknownWorkflowError(name) from None

    def __contains__(self, name: object) -> bool:
        return name in self._workflows

    def redact_secret_parameters(self, document: object) -> list[str]:
        """Masks, in place, the values of a request's secret parameters.

        Args:
            document: A parsed request (any JSON value; only a known workflow's
                ``parameters`` object is touched).

        Returns:
            The masked fields, e.g. ``["parameters.token"]``.
        """
        if not isinstance(document, dict):
            return []
        name, parameters = document.get("workflow"), document.get("parameters")
        if not isinstance(name, str) or name not in self or not isinstance(parameters, dict):
            return []
        secrets = sorted(self._workflows[name].secret_parameters & parameters.keys())
        for key in secrets:
            parameters[key] = REDACTED
        return [f"parameters.{key}" for key in secrets]

    def __iter__(self) -> Iterator[RegisteredWorkflow]:
        return iter(self._workflows.values())

    def __len__(self) -> int:
        return len(self._workflows)


REDACTED = "**********"
"""What a secret parameter's value is replaced with in a dead-lettered copy."""

MAGICFLOW_WORKFLOWS: dict[str, str] = {
    "langflow-run": "flows.langflow:run_langflow",
    "langflow-sync": "flows.langflow:sync_langflow",
}
"""MagicFlow's own workflows: request name -> ``module:flow``.

Each is deployed as ``<flow name>/<request name>`` (see ``prefect.yaml``); the name a
request uses is the deployment's name. Add a line here when a workflow lands.
"""


def magicflow_registry() -> Registry:
    """A registry of every workflow in `MAGICFLOW_WORKFLOWS`.

    Returns:
        A new registry; importing it imports the flow modules (and their clients).

    Example:
        ```python
        registry = magicflow_registry()
        registry.get("tenant-provisioning").deployment  # "provision-tenant/tenant-provisioning"
        ```
    """
    registry = Registry()
    for name, path in MAGICFLOW_WORKFLOWS.items():
        module_name, _, attribute = path.partition(":")
        registry.register(name, getattr(importlib.import_module(module_name), attribute))
    return registry


if typing.TYPE_CHECKING:
    default_registry: Registry
    """Every MagicFlow workflow (`magicflow_registry`), what the production listener serves."""


def __getattr__(name: str) -> Any:
    # ``default_registry`` is built on first use: it imports every workflow module, which
    # import their client libraries, and those must not load with ``flows.registry``.
    if name == "default_registry":
        registry = magicflow_registry()
        globals()["default_registry"] = registry
        return registry
    raise AttributeError(f"module 'flows.registry' has no attribute {name!r}")
