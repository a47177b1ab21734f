"""Compositions built at run time: signatures, chains and swarms of registered jobs and workflows.

A `Signature` names a registered job or workflow by its stable name (never an
import path), its JSON parameters (checked against the target's own signature when
it is signed), and callbacks that are signatures themselves. A `Chain` runs its
steps in order, a `Swarm` runs its items side by side under a concurrency bound and
a failure budget. All three are pydantic models that round-trip through JSON, so a
composition can travel in a Kafka request to the ``compose`` workflow
(`flows.compose`), which runs it as ordinary Prefect task runs.

`check_composition` checks a whole tree against a registry before anything runs:
unknown targets, bad parameters, a ``when`` on a missing field, cycles, and trees
deeper or larger than the limits are `InvalidCompositionError`s that name the path
to the bad node, e.g. ``steps[2].on_error[0].params.tenant: Field required``.

Example:
    ```python
    from flows.composition import When, chain, sign, swarm

    onboard = chain(
        [
            sign("ensure_namespace", connection="prod-cluster", name="acme", step="namespace"),
            sign(
                "ensure_resource_quota",
                connection="prod-cluster",
                namespace="acme",
                name="tenant-quota",
                hard={"pods": "20"},
                when=When(field="namespace.action", op="eq", value="created"),
            ),
        ],
        on_error=[sign("notify", channel="#ops", receives="payload")],
    )
    onboard.model_dump_json()  # what a Kafka request to the compose workflow carries
    ```
"""

from __future__ import annotations

import json
import operator
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    ValidationInfo,
)
from pydantic_core import to_jsonable_python

from flows.registry import NESTS_TARGETS
from magicflow.errors import InvalidInputError, MagicFlowError

if TYPE_CHECKING:
    from flows.registry import Registry

REGISTRY_ENV = "MAGICFLOW_REGISTRY"
"""Environment variable naming the registry (``module:attribute``) compositions are checked
against and run from; the default is every MagicFlow workflow and job."""
DEFAULT_REGISTRY = "flows.registry:default_registry"
MAX_DEPTH = 8
"""Deepest nesting of chains, swarms and callbacks a composition may have."""
MAX_NODES = 2_000
"""Most signatures, chains and swarms one composition may hold."""
MAX_SWARM_CONCURRENCY = 256
"""Largest ``max_concurrency`` of a swarm (the composition's thread pool has this many)."""

TargetName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
StepName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,63}$")]
ParameterName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
FieldPath = Annotated[
    str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,63}(\.[A-Za-z0-9_-]{1,64}){0,8}$")
]

_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
    "in": lambda left, right: left in right,
    "not_in": lambda left, right: left not in right,
}


class InvalidCompositionError(InvalidInputError):
    """A composition that cannot run: the message names the path to the bad node."""

    def __init__(self, path: str, cause: str) -> None:
        super().__init__("composition", f"{path or '(root)'}: {cause}")
        self.path = path
        self.cause = cause


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid")


class When(_Frozen):
    """A condition on an earlier step's result: ``field``, ``op``, ``value``; never code.

    ``field`` starts with the name of an earlier step (``step=`` of its signature)
    and continues into its result: ``namespace.action`` is the ``action`` of the
    step named ``namespace``; a list index is a number (``create.0.action``).

    Example:
        >>> When(field="namespace.action", op="eq", value="created").holds(
        ...     {"namespace": {"action": "created"}}
        ... )
        True
    """

    field: FieldPath
    op: Literal["eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "exists"]
    value: JsonValue = None

    @property
    def step(self) -> str:
        """The name of the step whose result is looked at."""
        return self.field.split(".", 1)[0]

    def holds(self, results: Mapping[str, Any]) -> bool:
        """Evaluates the condition over the named results of earlier steps.

        Args:
            results: Step name -> its result.

        Returns:
            Whether the step should run.

        Raises:
            InvalidCompositionError: The field is not in the result (``exists``
                says False instead), or the comparison is between unlike types.
        """
        value: Any = to_jsonable_python(results.get(self.step))
        for part in self.field.split(".")[1:]:
            if isinstance(value, dict) and part in value:
                value = value[part]
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            elif self.op == "exists":
                return False
            else:
                raise InvalidCompositionError(
                    f"when.field {self.field}", f"{part!r} is not in the result"
                )
        if self.op == "exists":
            return True
        try:
            return bool(_OPERATORS[self.op](value, self.value))
        except TypeError:
            raise InvalidCompositionError(
                f"when.field {self.field}", f"cannot apply {self.op} to these types"
            ) from None


class Signature(_Frozen):
    """A registered job or workflow, its parameters and its callbacks: data, not code.

    Attributes:
        kind: Always ``signature`` (tells the node kinds apart in JSON).
        target: A registered workflow's request name or a registered job's name.
        params: JSON parameters; a secret travels as a block name, never a value.
        step: A name for this step, for ``when`` conditions of later steps.
        receives: The parameter that receives the previous step's result (in a
            chain), the final result (a success callback) or the error payload
            (an error callback); None: the result is not passed on.
        when: Run only when this holds; otherwise the step is skipped.
        on_success: Signatures run after this step succeeds.
        on_error: Signatures run after it fails or is cancelled.
    """

    kind: Literal["signature"] = "signature"
    target: TargetName
    params: dict[str, JsonValue] = Field(default_factory=dict)
    step: StepName | None = None
    receives: ParameterName | None = None
    when: When | None = None
    on_success: list[Signature] = Field(default_factory=list)
    on_error: list[Signature] = Field(default_factory=list)


class Swarm(_Frozen):
    """Signatures run side by side, at most ``max_concurrency`` at a time.

    Attributes:
        kind: Always ``swarm``.
        items: The signatures; their results come back in this order.
        open: Keep taking signatures fed from outside the run
            (`flows.compose_control.feed_swarm`) until it is closed
            (`flows.compose_control.close_swarm`); at most one per composition.
        max_concurrency: Most items running at once.
        stop_after_n_failures: The failure budget: once this many items failed, the
            items not yet started are cancelled and the swarm fails. None: run all.
        step: A name for the swarm (its result is the list of item results).
        when: Run only when this holds.
        on_success: Signatures run with the list of results.
        on_error: Signatures run with the failure summary.
    """

    kind: Literal["swarm"] = "swarm"
    items: list[Signature] = Field(default_factory=list)
    open: bool = False
    max_concurrency: Annotated[int, Field(ge=1, le=MAX_SWARM_CONCURRENCY)] = 10
    stop_after_n_failures: Annotated[int, Field(ge=1)] | None = None
    step: StepName | None = None
    when: When | None = None
    on_success: list[Signature] = Field(default_factory=list)
    on_error: list[Signature] = Field(default_factory=list)


class Chain(_Frozen):
    """Steps run in order; each may receive the previous one's result; stops at the first failure.

    Attributes:
        kind: Always ``chain``.
        steps: Signatures, swarms or chains.
        step: A name for the chain (its result is its last step's).
        when: Run only when this holds.
        on_success: Signatures run with the final result.
        on_error: Signatures run with the failing step's input and error.
    """

    kind: Literal["chain"] = "chain"
    steps: list[Node] = Field(default_factory=list)
    step: StepName | None = None
    when: When | None = None
    on_success: list[Signature] = Field(default_factory=list)
    on_error: list[Signature] = Field(default_factory=list)


Node = Annotated[Signature | Chain | Swarm, Field(discriminator="kind")]
"""Any composition node; JSON tells them apart by ``kind``."""

Signature.model_rebuild()
Chain.model_rebuild()
Swarm.model_rebuild()


def _check_in_context(node: Signature | Chain | Swarm, info: ValidationInfo) -> Any:
    """Checks the tree against the registry given in the validation context, if any."""
    context = info.context or {}
    registry = context.get("registry")
    if registry is not None:
        check_composition(node, registry, dry_run=bool(context.get("dry_run")))
    return node


Composition = Annotated[Node, AfterValidator(_check_in_context), NESTS_TARGETS]
"""A composition as a flow parameter: checked against the registry when the validation
context carries one (the listener passes its registry)."""


def check_composition(
    node: Signature | Chain | Swarm, registry: Registry, dry_run: bool = False
) -> None:
    """Checks a whole composition against a registry, before anything runs.

    Args:
        node: The composition.
        registry: The allow-list of workflows and jobs.
        dry_run: Whether it will run as a dry run (every target must support it).

    Raises:
        InvalidCompositionError: Naming the path to the first bad node: an unknown
            target, parameters that do not validate (strictly, no coercion), a
            ``receives`` that is not a parameter, a ``when`` on a step that does not
            run earlier or a field its result does not have, a duplicate step name,
            a cycle, or a tree deeper than `MAX_DEPTH` or larger than `MAX_NODES`.
    """
    _TreeCheck(registry, dry_run).node(node, "", 1, frozenset())


class _TreeCheck:
    def __init__(self, registry: Registry, dry_run: bool) -> None:
        self.registry = registry
        self.dry_run = dry_run
        self.count = 0
        self.named: dict[str, type[BaseModel] | None] = {}
        self.siblings: set[str] = set()
        self.open_swarm: str | None = None

    def node(
        self, node: Signature | Chain | Swarm, path: str, depth: int, above: frozenset[int]
    ) -> None:
        if id(node) in above:
            raise InvalidCompositionError(path, "a cycle: this node contains itself")
        if depth > MAX_DEPTH:
            raise InvalidCompositionError(path, f"nested deeper than {MAX_DEPTH} levels")
        self.count += 1
        if self.count > MAX_NODES:
            raise InvalidCompositionError(path, f"more than {MAX_NODES} nodes")
        above = above | {id(node)}
        if node.when is not None:
            self.when(node.when, join_path(path, "when.field"))
        if isinstance(node, Signature):
            self.signature(node, path, depth, above)
        elif isinstance(node, Chain):
            for index, step in enumerate(node.steps):
                self.node(step, f"{join_path(path, 'steps')}[{index}]", depth + 1, above)
        else:
            if node.open:
                if self.open_swarm is not None:
                    raise InvalidCompositionError(
                        join_path(path, "open"),
                        f"a second open swarm (the first: {self.open_swarm})",
                    )
                self.open_swarm = path or "(root)"
            # Items run side by side: no item's result is known before a sibling runs.
            before, named_by_items = dict(self.named), dict[str, type[BaseModel] | None]()
            names = [item.step for item in node.items]
            for index, item in enumerate(node.items):
                item_path = f"{join_path(path, 'items')}[{index}]"
                self.siblings = {name for name in names if name is not None} - {item.step}
                self.named = dict(before)
                self.node(item, item_path, depth + 1, above)
                for name, model in self.named.items():
                    if name in named_by_items:
                        raise InvalidCompositionError(
                            join_path(item_path, "step"), f"{name!r} names two steps"
                        )
                    if name not in before:
                        named_by_items[name] = model
            self.siblings = set()
            self.named = {**before, **named_by_items}
        for label in ("on_success", "on_error"):
            for index, callback in enumerate(getattr(node, label)):
                self.node(callback, f"{join_path(path, label)}[{index}]", depth + 1, above)
        if node.step is not None:
            if node.step in self.named:
                raise InvalidCompositionError(
                    join_path(path, "step"), f"{node.step!r} names two steps"
                )
            self.named[node.step] = _result_model(node, self.registry)

    def signature(self, node: Signature, path: str, depth: int, above: frozenset[int]) -> None:
        try:
            target = self.registry.target(node.target)
        except InvalidInputError:
            raise InvalidCompositionError(
                join_path(path, "target"), f"{node.target!r} is not a registered workflow or job"
            ) from None
        try:
            target.validate_parameters(node.params, self.dry_run, received=node.receives)
        except InvalidInputError as error:
            cause = str(error).removeprefix(f"{target.resource}: ")
            where = join_path(path, "params")
            first, *others = cause.split("; ")
            field, _, problem = first.partition(": ")
            if not problem:  # a rule about the parameters as a whole
                field, problem = "", first
            raise InvalidCompositionError(
                f"{where}.{field}".rstrip("."),
                "; ".join([problem, *(f"{where}.{other}" for other in others)]),
            ) from None

    def when(self, when: When, path: str) -> None:
        if when.step in self.siblings:
            raise InvalidCompositionError(
                path,
                f"{when.step!r} is a sibling item of the same swarm: "
                "its result is not known before this item runs",
            )
        if when.step not in self.named:
            raise InvalidCompositionError(path, f"no earlier step is named {when.step!r}")
        model = self.named[when.step]
        parts = when.field.split(".")[1:]
        if model is not None and parts and parts[0] not in model.model_fields:
            raise InvalidCompositionError(
                path, f"the result of {when.step!r} has no field {parts[0]!r}"
            )


def join_path(path: str, name: str) -> str:
    """A child's path: ``join_path("steps[2]", "on_error")`` is ``steps[2].on_error``."""
    return f"{path}.{name}" if path else name


def _result_model(node: Signature | Chain | Swarm, registry: Registry) -> type[BaseModel] | None:
    """The pydantic model a signature's target returns, when it declares one."""
    if not isinstance(node, Signature):
        return None
    import typing

    target = registry.target(node.target)
    function = getattr(target, "task", None)
    if function is None:
        return None
    returned = typing.get_type_hints(function.fn).get("return")
    return returned if isinstance(returned, type) and issubclass(returned, BaseModel) else None


def registry_for_compositions() -> Registry:
    """The registry compositions are checked against and run from.

    Returns:
        The registry named by ``MAGICFLOW_REGISTRY`` (``module:attribute``), by default
        every MagicFlow workflow and job (``flows.registry:default_registry``).
    """
    from flows.registry import load_registry

    return load_registry(os.environ.get(REGISTRY_ENV, DEFAULT_REGISTRY))


def sign(
    target: str,
    /,
    *,
    params: Mapping[str, JsonValue] | None = None,
    step: str | None = None,
    receives: str | None = None,
    when: When | None = None,
    on_success: Iterable[Signature] = (),
    on_error: Iterable[Signature] = (),
    registry: Registry | None = None,
    **more_params: JsonValue,
) -> Signature:
    """Signs a registered job or workflow with its parameters, checked now.

    Args:
        target: A registered workflow's request name or job's name.
        params: Parameters, for names that clash with the options below.
        step: A name for the step, for later ``when`` conditions.
        receives: The parameter that receives the previous result (or the callback payload).
        when: Run only when this holds.
        on_success: Callbacks run after success.
        on_error: Callbacks run after failure or cancellation.
        registry: The allow-list; by default `registry_for_compositions`.
        **more_params: Parameters.

    Returns:
        The signature.

    Raises:
        InvalidCompositionError: The target is unknown, or the parameters (or a
            callback's) do not fit its signature.

    Example:
        ```python
        sign("ensure_namespace", connection="prod-cluster", name="acme").model_dump_json()
        # '{"kind":"signature","target":"ensure_namespace","params":{...},...}'
        ```
    """
    signature = Signature(
        target=target,
        params={**(params or {}), **more_params},
        step=step,
        receives=receives,
        when=None,
        on_success=list(on_success),
        on_error=list(on_error),
    )
    check_composition(signature, registry or registry_for_compositions())
    # A condition refers to steps outside the signature: checked when it is composed.
    return signature.model_copy(update={"when": when}) if when is not None else signature


def chain(
    steps: Sequence[Signature | Chain | Swarm],
    *,
    step: str | None = None,
    on_success: Iterable[Signature] = (),
    on_error: Iterable[Signature] = (),
    registry: Registry | None = None,
) -> Chain:
    """Steps run in order; each may receive the previous step's result (``receives=``).

    Args:
        steps: Signatures, swarms or chains.
        step: A name for the chain.
        on_success: Callbacks run with the final result.
        on_error: Callbacks run with the failing step's input and error.
        registry: The allow-list; by default `registry_for_compositions`.

    Returns:
        The chain, checked as a whole.

    Raises:
        InvalidCompositionError: Anything `check_composition` refuses.
    """
    built = Chain(
        steps=list(steps), step=step, on_success=list(on_success), on_error=list(on_error)
    )
    check_composition(built, registry or registry_for_compositions())
    return built


def swarm(
    items: Sequence[Signature],
    *,
    max_concurrency: int = 10,
    stop_after_n_failures: int | None = None,
    open: bool = False,
    step: str | None = None,
    on_success: Iterable[Signature] = (),
    on_error: Iterable[Signature] = (),
    registry: Registry | None = None,
) -> Swarm:
    """Signatures run side by side under a concurrency bound and a failure budget.

    Args:
        items: The signatures; results come back in this order.
        max_concurrency: Most items running at once.
        stop_after_n_failures: Once this many failed, cancel what has not started.
        open: Keep taking signatures fed from outside the run until it is closed
            (`flows.compose_control.feed_swarm`, `flows.compose_control.close_swarm`).
        step: A name for the swarm.
        on_success: Callbacks run with the list of results.
        on_error: Callbacks run with the failure summary.
        registry: The allow-list; by default `registry_for_compositions`.

    Returns:
        The swarm, checked as a whole.

    Raises:
        InvalidCompositionError: Anything `check_composition` refuses.
    """
    built = Swarm(
        items=list(items),
        max_concurrency=max_concurrency,
        stop_after_n_failures=stop_after_n_failures,
        open=open,
        step=step,
        on_success=list(on_success),
        on_error=list(on_error),
    )
    check_composition(built, registry or registry_for_compositions())
    return built


def error_payload(
    reason: Literal["failed", "cancelled"],
    step: str,
    target: str | None,
    step_input: Mapping[str, Any] | None,
    error: BaseException | None,
) -> dict[str, JsonValue]:
    """What an error callback receives: the failing step, its input and the error.

    The error is its type and, for MagicFlow's own errors (written to hold no
    secret), its message; any other exception's text may quote anything, so only
    its type is kept. No traceback.

    Example:
        >>> error_payload("failed", "steps[1]", "add", {"x": 1}, ValueError("token=abc"))["error"]
        {'type': 'ValueError', 'message': None}
    """
    described: dict[str, JsonValue] | None = None
    if error is not None:
        message = str(error) if isinstance(error, MagicFlowError) else None
        described = {"type": type(error).__name__, "message": message}
    return {
        "reason": reason,
        "step": step,
        "target": target,
        "input": json.loads(json.dumps(to_jsonable_python(step_input), default=repr)),
        "error": described,
    }
