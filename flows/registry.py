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

import dataclasses
import importlib
import inspect
import json
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from prefect import Flow, Task
from pydantic import (
    BaseModel,
    ConfigDict,
    JsonValue,
    SecretBytes,
    SecretStr,
    ValidationError,
    create_model,
)
from pydantic_core import ErrorDetails

from magicflow.errors import InvalidInputError

DRY_RUN_PARAMETER = "dry_run"
"""The parameter through which a workflow receives a request's ``dry_run`` flag."""

PREFECT_HYDRATION_KEY = "__prefect_kind"
"""Marks a value the Prefect server renders (Jinja, workspace variables) on run creation."""


class UnknownWorkflowError(InvalidInputError):
    """A request or a composition names a workflow (or job) that is not in the registry."""

    def __init__(self, workflow: str) -> None:
        super().__init__(f"workflow:{workflow}", "not a registered workflow")


class InvalidParametersError(InvalidInputError):
    """A request's parameters do not fit the workflow's signature. Never holds their values."""


class NestsTargets:
    """Marks a parameter type whose values name further targets with parameters of their own.

    A composition is one: secrets its nested parameters might carry cannot be told apart
    by the flow's signature alone, so a dead letter of such a request is metadata only.
    """


NESTS_TARGETS = NestsTargets()
"""Put in a parameter's ``Annotated[...]`` metadata (see `flows.composition.Composition`)."""


@dataclass(frozen=True)
class RegisteredTarget:
    """What a request or a composition may name: a workflow or a job, and its parameter check.

    Attributes:
        name: The stable name requests and signatures use.
        parameters_model: Pydantic model of the function's parameters (extra ones forbidden).
        secret_parameters: Names of parameters whose type holds a secret anywhere
            (`SecretStr`, `SecretBytes`, or a model, list or dict containing one).
    """

    name: str
    parameters_model: type[BaseModel]
    secret_parameters: frozenset[str]

    @property
    def resource(self) -> str:
        """How errors name this target, e.g. ``workflow:tenant-provisioning``."""
        return f"workflow:{self.name}"

    @property
    def accepts_dry_run(self) -> bool:
        """True when the function has a ``dry_run`` parameter."""
        return DRY_RUN_PARAMETER in self.parameters_model.model_fields

    def validate_parameters(
        self,
        parameters: dict[str, JsonValue],
        dry_run: bool = False,
        *,
        context: dict[str, Any] | None = None,
        received: str | None = None,
    ) -> dict[str, JsonValue]:
        """Checks parameters against the function's signature.

        Validation is strict, as JSON: a value of the wrong type is an error, never
        coerced (``"5"`` is not an ``int``, ``"false"`` not a ``bool``). The returned
        parameters are the given JSON values, unchanged (the flow parses them itself
        when it runs), plus ``dry_run`` when asked for.

        Args:
            parameters: The request's parameters.
            dry_run: The request's ``dry_run`` flag.
            context: Pydantic validation context, for parameter types that check
                themselves against something (a composition against the registry).
            received: A parameter that will be filled in later (a composition step
                receiving the previous step's result): it must exist and may be missing.

        Returns:
            The parameters to start the deployment with.

        Raises:
            InvalidParametersError: A parameter is missing, unknown or of the wrong
                type, carries a Prefect template (``__prefect_kind``), is a secret
                (``SecretStr``), or the request asks for a dry run of a workflow
                without a ``dry_run`` parameter. The
                message names the parameters and the rule, never their values.
        """
        resource = self.resource
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
        if received is not None and (
            received not in self.parameters_model.model_fields or received in parameters
        ):
            raise InvalidParametersError(
                resource, f"{received}: must be a parameter that is not also given"
            )
        to_run = {**parameters, DRY_RUN_PARAMETER: True} if dry_run else dict(parameters)
        try:
            self.parameters_model.model_validate_json(
                json.dumps(to_run), strict=True, context={**(context or {}), "dry_run": dry_run}
            )
        except ValidationError as error:
            problems = [
                problem
                for problem in _problems(error)
                if not (problem["type"] == "missing" and problem["loc"] == (received,))
            ]
            if problems:
                raise InvalidParametersError(
                    resource, _describe_problems(problems, "(parameters)")
                ) from None
        if sent_secrets := sorted(self.secret_parameters & parameters.keys()):
            # A flow-run parameter is stored and shown in plain text by Prefect, and the
            # request itself sat in Kafka: a secret must travel by reference (a block name).
            raise InvalidParametersError(
                resource,
                f"{', '.join(sent_secrets)}: secret parameters cannot be sent in a request; "
                "pass the name of a block that holds the secret instead",
            )
        return to_run

    def mask_secrets(self, parameters: dict[str, JsonValue]) -> list[str] | None:
        """Masks, in place, every parameter whose type may hold a secret.

        Args:
            parameters: A request's parameters (modified).

        Returns:
            The masked names, e.g. ``["parameters.token"]``; None when a parameter
            is not in the flow's signature, so nothing tells whether it is secret.
        """
        fields = self.parameters_model.model_fields
        if not parameters.keys() <= fields.keys():
            return None
        if any(NESTS_TARGETS in fields[name].metadata for name in parameters):
            return None  # nested parameters of other targets: nothing vouches for them
        masked = sorted(self.secret_parameters & parameters.keys())
        for name in masked:
            parameters[name] = REDACTED
        return [f"parameters.{name}" for name in masked]


@dataclass(frozen=True)
class RegisteredWorkflow(RegisteredTarget):
    """One workflow a request may start.

    Attributes:
        deployment: The Prefect deployment, ``flow-name/deployment-name``.
    """

    deployment: str


@dataclass(frozen=True)
class RegisteredJob(RegisteredTarget):
    """One job a composition may run, as a task run of the composition's flow run.

    Attributes:
        task: The Prefect task.
    """

    task: Task[..., Any]

    @property
    def resource(self) -> str:
        """How errors name this target, e.g. ``job:ensure_namespace``."""
        return f"job:{self.name}"


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


def describe_validation_errors(error: ValidationError, whole: str) -> str:
    """Where and why validation failed, without the offending values (they may be secret).

    Args:
        error: A pydantic validation error.
        whole: How to name the validated object itself, e.g. ``"(request)"``.

    Returns:
        Up to five ``field: problem`` items, joined by ``; ``.

    Example:
        >>> from pydantic import BaseModel
        >>> class M(BaseModel):
        ...     n: int
        >>> try:
        ...     M.model_validate({})
        ... except ValidationError as error:
        ...     describe_validation_errors(error, "(m)")
        'n: Field required'
    """
    return _describe_problems(_problems(error), whole)


def _problems(error: ValidationError) -> list[ErrorDetails]:
    """A validation error's items, without the offending values."""
    return error.errors(include_url=False, include_input=False, include_context=False)


def _describe_problems(errors: list[ErrorDetails], whole: str) -> str:
    problems = [
        f"{'.'.join(str(part) for part in problem['loc']) or whole}: {problem['msg']}"
        for problem in errors
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
    hints = typing.get_type_hints(function, include_extras=True)  # keep Field and validators
    fields: dict[str, Any] = {}
    for parameter in inspect.signature(function).parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        annotation = hints.get(parameter.name, Any)
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[parameter.name] = (annotation, default)
    config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    return create_model(model_name, __config__=config, **fields)


def mentions_secret(annotation: Any, _seen: frozenset[int] = frozenset()) -> bool:
    """True when a type may hold a secret value anywhere inside it.

    Args:
        annotation: A type annotation.

    Returns:
        True for `SecretStr` and `SecretBytes` (and subclasses), and for unions,
        lists, dicts, tuples, pydantic models, dataclasses and TypedDicts that
        contain one at any depth.

    Example:
        >>> mentions_secret(dict[str, list[SecretStr | None]]), mentions_secret(list[int])
        (True, False)
    """
    if id(annotation) in _seen:
        return False  # a recursive model: its fields are being looked at already
    seen = _seen | {id(annotation)}
    if isinstance(annotation, type):
        if issubclass(annotation, SecretStr | SecretBytes):
            return True
        if issubclass(annotation, BaseModel):
            return any(
                mentions_secret(field.annotation, seen)
                for field in annotation.model_fields.values()
            )
        if dataclasses.is_dataclass(annotation) or typing.is_typeddict(annotation):
            hints = typing.get_type_hints(annotation)
            return any(mentions_secret(hint, seen) for hint in hints.values())
    return any(mentions_secret(argument, seen) for argument in typing.get_args(annotation))


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
        self._jobs: dict[str, RegisteredJob] = {}

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
                if mentions_secret(hints.get(parameter))
            ),
        )
        self._workflows[name] = workflow
        return workflow

    def register_job(self, name: str, task: Task[..., Any]) -> RegisteredJob:
        """Allows compositions to run a job (a task) under a stable name.

        Args:
            name: The name signatures use, e.g. ``ensure_namespace``.
            task: The job; its function's signature is the parameter model.

        Returns:
            The registered job (registering a name again replaces it).

        Raises:
            InvalidInputError: The job returns a secret: its result would be persisted
                (compositions keep every step's result) and passed on in plain sight.
        """
        hints = typing.get_type_hints(task.fn)
        if mentions_secret(hints.get("return")):
            raise InvalidInputError(f"job:{name}", "returns a secret, so it cannot be composed")
        job = RegisteredJob(
            name=name,
            task=task,
            parameters_model=parameters_model_for(task.fn, f"{name}-parameters"),
            secret_parameters=frozenset(
                parameter
                for parameter in inspect.signature(task.fn).parameters
                if mentions_secret(hints.get(parameter))
            ),
        )
        self._jobs[name] = job
        return job

    def target(self, name: str) -> RegisteredWorkflow | RegisteredJob:
        """The workflow or job a composition names.

        Args:
            name: A registered workflow's or job's name.

        Returns:
            The registered workflow, or else the registered job.

        Raises:
            InvalidInputError: Neither a workflow nor a job has that name.
        """
        found = self._workflows.get(name) or self._jobs.get(name)
        if found is None:
            raise InvalidInputError(f"target:{name}", "not a registered workflow or job")
        return found

    @property
    def jobs(self) -> list[RegisteredJob]:
        """The registered jobs, in registration order."""
        return list(self._jobs.values())

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

    def __iter__(self) -> Iterator[RegisteredWorkflow]:
        return iter(self._workflows.values())

    def __len__(self) -> int:
        return len(self._workflows)


REDACTED = "**********"
"""What a secret parameter's value is replaced with in a dead-lettered copy."""

MAGICFLOW_WORKFLOWS: dict[str, str] = {
    "compose": "flows.compose:compose",
    "langflow-run": "flows.langflow:run_langflow",
    "langflow-sync": "flows.langflow:sync_langflow",
    "tenant-provisioning": "flows.tenant_provisioning:provision_tenant",
    "quota-adjustment": "flows.quota_adjustment:adjust_quota",
    "dr-validation": "flows.dr_validation:validate_dr_backups",
    "dr-invocation": "flows.dr_invocation:invoke_dr",
    "report": "flows.reports:generate_report",
}
"""MagicFlow's own workflows: request name -> ``module:flow``.

Each is deployed as ``<flow name>/<request name>`` (see ``prefect.yaml``); the name a
request uses is the deployment's name. Add a line here when a workflow lands.
"""


def magicflow_registry() -> Registry:
    """A registry of every workflow in `MAGICFLOW_WORKFLOWS`, and every job in `tasks`.

    Jobs (the tasks in ``tasks.__all__``) are registered under their function names,
    for compositions; a job that returns a secret is left out (see `Registry.register_job`).

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
    jobs = importlib.import_module("tasks")
    for name in jobs.__all__:
        job = getattr(jobs, name)
        if isinstance(job, Task) and not mentions_secret(
            typing.get_type_hints(job.fn).get("return")
        ):
            registry.register_job(name, job)
    return registry


DEFAULT_REGISTRY = "flows.registry:default_registry"
"""Where the production listener and the compose workflow find their registry."""


def load_registry(path: str) -> Registry:
    """Imports a registry from ``module:attribute``.

    Args:
        path: e.g. ``flows.registry:default_registry``.

    Returns:
        The registry.

    Raises:
        ValueError: The path is malformed or does not name a `Registry`.
    """
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"registry path {path!r} is not module:attribute")
    registry = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(registry, Registry):
        raise ValueError(f"{path} is not a Registry")
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
