"""``magicflow check``: validates ``prefect.yaml`` against the code before anyone deploys.

Prefect's own loader ignores keys it does not know and reports most mistakes only
at deploy or run time, one at a time. This check reads ``prefect.yaml`` strictly
and reports every problem at once, one line each, naming the file, the deployment,
the key and what is wrong:

- the file: valid YAML, no key given twice, no unknown key anywhere (the keys are
  Prefect's own deployment models' fields; ``definitions`` has the sections
  `DEFINITION_SECTIONS`), the Prefect version the project pins;
- each deployment: a unique name; an entrypoint that imports and is a flow; a
  description (its own or the flow's docstring); default parameters that the
  flow's signature accepts (and no secret among them); schedules whose cron,
  interval or rrule parses, with a timezone that exists; a valid concurrency
  limit; a work pool declared in ``definitions.work_pools`` and job variables
  its worker type knows; Prefect settings in ``job_variables.env`` that exist and
  validate, including the heartbeat the zombie automation relies on;
- steps (build, push, pull): each function imports and takes the given arguments;
  ``{{ id.key }}`` templates refer to a build or push step's id;
- blocks: every block the deployments name (block-typed parameters and their
  defaults, ``MAGICFLOW_KAFKA_BLOCK``, ``PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK``,
  ``{{ prefect.blocks.TYPE.NAME }}``) is in the blocks configuration, with that type;
- the registry: every workflow a listener deployment serves (its ``registry``
  parameter, and always ``flows.registry:default_registry``, built from
  ``MAGICFLOW_WORKFLOWS``) has a deployment named after its request name whose
  entrypoint is that workflow's flow.

Example:
    ```python
    from pathlib import Path

    from deployments.check import check_prefect_yaml

    result = check_prefect_yaml(Path("prefect.yaml"), Path("deployments/local-stack-blocks.yaml"))
    for problem in result.problems:
        print(problem)  # prefect.yaml: deployment 'listener': tagz: unknown key (...)
    ```
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import prefect
from prefect.blocks.core import Block

# Prefect's own models of prefect.yaml: the allowed keys are exactly theirs. They are
# private to Prefect's CLI, so a Prefect upgrade that moves them breaks this import (and
# the check's tests) loudly rather than silently accepting unknown keys.
from prefect.cli.deploy._models import (
    ConcurrencyLimitSpec,
    DeploymentConfig,
    PrefectYamlModel,
    RawScheduleConfig,
    WorkPoolConfig,
)
from prefect.cli.deploy._schedules import _schedule_config_to_deployment_schedule
from prefect.client.schemas.objects import ConcurrencyLimitStrategy
from prefect.events import DeploymentTriggerTypes
from prefect.flows import Flow, load_flow_from_entrypoint
from prefect.plugins import load_prefect_collections
from prefect.settings import get_current_settings
from prefect.settings.legacy import _get_settings_fields, _get_valid_setting_names
from prefect.settings.models.root import Settings
from prefect.types.names import WITHOUT_BANNED_CHARACTERS
from prefect.utilities.importtools import import_object
from prefect.workers.base import BaseWorker
from pydantic import TypeAdapter, ValidationError

from deployments.automations import HEARTBEAT_SECONDS
from deployments.blocks_config import (
    block_name_problem,
    is_secret_annotation,
    parse_blocks_config,
    supported_block_types,
)
from deployments.config_files import (
    ConfigFileError,
    ConfigProblem,
    key_path,
    load_yaml_file,
    unknown_keys,
)
from deployments.steps import CHECKOUT_VARIABLE
from flows.kafka_trigger import load_registry
from flows.registry import MAGICFLOW_WORKFLOWS, parameters_model_for
from magicflow.workflows import KAFKA_BLOCK_ENV

DEFINITION_SECTIONS = ("pull", "work_pools", "schedules", "concurrency", "defaults")
"""What ``definitions`` may hold: anchors, each checked as what it stands for."""

DEFAULT_REGISTRY = "flows.registry:default_registry"
"""The registry every check covers: all of MagicFlow's own workflows."""

RESULT_STORAGE_VARIABLE = "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK"
HEARTBEAT_VARIABLE = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"

_TEMPLATE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_RESERVED_STEP_KEYWORDS = ("id", "requires")
_STEP_ACTIONS = ("build", "push", "pull")


@dataclass
class CheckResult:
    """What `check_prefect_yaml` found.

    Attributes:
        problems: Every problem, in file order; empty when all is well.
        deployments: How many deployments were checked.
        workflows: How many registered workflows were matched to deployments.
        blocks: How many block references were checked.
    """

    problems: list[ConfigProblem] = field(default_factory=list)
    deployments: int = 0
    workflows: int = 0
    blocks: int = 0


@dataclass(frozen=True)
class _BlockReference:
    block_class: type[Block] | None
    slug: str
    name: str
    where: str


def _templates(value: Any) -> Iterator[str]:
    """Every ``{{ ... }}`` expression in a value, at any depth."""
    if isinstance(value, str):
        yield from _TEMPLATE.findall(value)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _templates(item)
    elif isinstance(value, list):
        for item in value:
            yield from _templates(item)


def _block_classes(annotation: Any) -> list[type[Block]]:
    if isinstance(annotation, type):
        return [annotation] if issubclass(annotation, Block) else []
    return [cls for argument in typing.get_args(annotation) for cls in _block_classes(argument)]


class _Checker:
    def __init__(self, prefect_file: Path, blocks_file: Path | None) -> None:
        self.path = prefect_file
        self.file = str(prefect_file)
        self.blocks_file = blocks_file
        self.result = CheckResult()
        self.step_ids: set[str] = set()
        self.pool_types: dict[str, str] = {}
        self.block_references: list[_BlockReference] = []
        self.flows: dict[str, Flow[..., Any]] = {}
        self.registries = {DEFAULT_REGISTRY}

    def problem(self, where: str, text: str) -> None:
        self.result.problems.append(ConfigProblem(self.file, where, text))

    def keys(
        self, mapping: dict[Any, Any], allowed: Iterable[str], where: str, joiner: str = "."
    ) -> None:
        self.result.problems.extend(unknown_keys(mapping, allowed, self.file, where, joiner))

    # --- the file --------------------------------------------------------------------

    def run(self) -> CheckResult:
        try:
            document = load_yaml_file(self.path)
        except ConfigFileError as error:
            self.result.problems.extend(error.problems)
            return self.result
        if not isinstance(document, dict):
            self.problem("", "must be a mapping with a 'deployments' list")
            return self.result

        top_level = [info.alias or name for name, info in PrefectYamlModel.model_fields.items()]
        self.keys(document, [*top_level, "definitions"], "")
        self.check_version(document.get("prefect-version"))
        deployments = document.get("deployments")
        for holder in [document, *(deployments if isinstance(deployments, list) else [])]:
            for action in ("build", "push"):
                if isinstance(holder, dict):
                    self.collect_step_ids(holder.get(action))
        definitions = document.get("definitions") or {}
        self.check_definitions(definitions)
        for action in ("build", "push", "pull"):
            if document.get(action) is not None:
                self.check_steps(document[action], action)
        if not isinstance(deployments, list) or not deployments:
            self.problem("deployments", "must be a non-empty list of deployments")
            deployments = []
        names: dict[str, int] = {}
        for index, deployment in enumerate(deployments):
            self.check_deployment(index, deployment, names)
        self.result.deployments = len(deployments)
        self.check_registries(deployments)
        self.check_block_references()
        return self.result

    def check_version(self, pinned: object) -> None:
        if pinned != prefect.__version__:
            self.problem(
                "prefect-version",
                f"is {pinned!r} but Prefect {prefect.__version__} is installed; "
                "pin the version the project installs (constraints.txt)",
            )

    def collect_step_ids(self, steps: object) -> None:
        for step in steps if isinstance(steps, list) else [steps]:
            if isinstance(step, dict) and len(step) == 1:
                inputs = next(iter(step.values()))
                if isinstance(inputs, dict) and isinstance(inputs.get("id"), str):
                    self.step_ids.add(inputs["id"])

    # --- definitions -----------------------------------------------------------------

    def check_definitions(self, definitions: object) -> None:
        if not isinstance(definitions, dict):
            self.problem("definitions", "must be a mapping of sections")
            return
        self.keys(definitions, DEFINITION_SECTIONS, "definitions")
        sections = {name: definitions.get(name) or {} for name in DEFINITION_SECTIONS}
        for name, section in sections.items():
            if not isinstance(section, dict):
                self.problem(f"definitions.{name}", "must be a mapping of named anchors")
                sections[name] = {}

        load_prefect_collections()
        worker_types = BaseWorker.get_all_available_worker_types()
        for worker_type, pool in sections["work_pools"].items():
            where = f"definitions.work_pools.{worker_type}"
            if worker_type not in worker_types:
                self.problem(
                    where,
                    f"unknown worker type {worker_type!r}; installed: {', '.join(worker_types)}",
                )
                continue
            if isinstance(pool, dict) and isinstance(pool.get("name"), str):
                self.pool_types[pool["name"]] = worker_type
            self.check_work_pool(pool, where, declared=True)
        for name, steps in sections["pull"].items():
            self.check_steps(steps, f"definitions.pull.{name}")
        for name, schedule in sections["schedules"].items():
            self.check_schedule(schedule, f"definitions.schedules.{name}")
        for name, limit in sections["concurrency"].items():
            self.check_concurrency(limit, f"definitions.concurrency.{name}")

        for name, defaults in sections["defaults"].items():
            if isinstance(defaults, dict):
                self.keys(defaults, DeploymentConfig.model_fields, f"definitions.defaults.{name}")
            else:
                self.problem(f"definitions.defaults.{name}", "must be a mapping")

    # --- one deployment --------------------------------------------------------------

    def check_deployment(self, index: int, deployment: object, names: dict[str, int]) -> None:
        if not isinstance(deployment, dict):
            self.problem(key_path("deployments", index), "must be a mapping")
            return
        name = deployment.get("name")
        where = f"deployment {name!r}" if isinstance(name, str) else key_path("deployments", index)
        self.keys(deployment, DeploymentConfig.model_fields, where, ": ")
        if not isinstance(name, str) or not re.match(WITHOUT_BANNED_CHARACTERS, name):
            self.problem(f"{where}: name", "a deployment needs a name without / % & < >")
        elif name in names:
            self.problem(
                f"{where}: name", f"is used twice (deployments[{names[name]}] and [{index}])"
            )
        else:
            names[name] = index
        if "schedule" in deployment:
            self.problem(f"{where}: schedule", "is deprecated; use schedules (a list)")
        flow = self.load_entrypoint(deployment.get("entrypoint"), where)
        if flow is not None and isinstance(name, str):
            self.flows[name] = flow
        description = deployment.get("description") or (flow.description if flow else "x")
        if not description:
            self.problem(
                f"{where}: description", "missing, and the flow has no docstring to stand in"
            )
        if flow is not None:
            self.check_parameters(flow, deployment.get("parameters") or {}, where)
        self.check_work_pool(deployment.get("work_pool"), f"{where}: work_pool", declared=False)
        schedules = deployment.get("schedules") or []
        if not isinstance(schedules, list):
            self.problem(f"{where}: schedules", "must be a list")
            schedules = []
        for number, schedule in enumerate(schedules):
            self.check_schedule(schedule, f"{where}: {key_path('schedules', number)}")
        if deployment.get("concurrency_limit") is not None:
            self.check_concurrency(deployment["concurrency_limit"], f"{where}: concurrency_limit")
        for action in ("build", "push", "pull"):
            if deployment.get(action) is not None:
                self.check_steps(deployment[action], f"{where}: {action}")
        if deployment.get("triggers") is not None:
            self.check_triggers(deployment["triggers"], f"{where}: triggers")
        for flag in ("paused", "enforce_parameter_schema"):
            if flag in deployment and not isinstance(deployment[flag], bool):
                self.problem(f"{where}: {flag}", "must be true or false")
        tags = deployment.get("tags")
        if tags is not None and not (
            isinstance(tags, list) and all(isinstance(tag, str) for tag in tags)
        ):
            self.problem(f"{where}: tags", "must be a list of strings")
        self.check_templates(
            {key: value for key, value in deployment.items() if key not in _STEP_ACTIONS}, where
        )

    def load_entrypoint(self, entrypoint: object, where: str) -> Flow[..., Any] | None:
        if not isinstance(entrypoint, str) or not entrypoint:
            self.problem(f"{where}: entrypoint", "missing (module.flow_function)")
            return None
        try:
            flow: object = load_flow_from_entrypoint(entrypoint, use_placeholder_flow=False)
        except Exception as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
            self.problem(
                f"{where}: entrypoint",
                f"{entrypoint!r} does not load: {type(error).__name__}: {reason}".rstrip(": "),
            )
            return None
        if not isinstance(flow, Flow):
            self.problem(f"{where}: entrypoint", f"{entrypoint!r} is not a flow")
            return None
        return flow

    def check_parameters(self, flow: Flow[..., Any], parameters: object, where: str) -> None:
        if not isinstance(parameters, dict):
            self.problem(f"{where}: parameters", "must be a mapping")
            return
        model = parameters_model_for(flow.fn, f"{flow.name}-parameters")
        given = {key: value for key, value in parameters.items() if not list(_templates(value))}
        try:
            model.model_validate(given)
        except ValidationError as error:
            for item in error.errors(include_url=False, include_input=False, include_context=False):
                if item["type"] == "missing":
                    continue  # required at run time, not as a default
                self.problem(f"{where}: {key_path('parameters', *item['loc'])}", item["msg"])
        hints = typing.get_type_hints(flow.fn)
        for name, info in model.model_fields.items():
            annotation = hints.get(name)
            if name in parameters and is_secret_annotation(annotation):
                self.problem(
                    f"{where}: parameters.{name}",
                    "is a secret: Prefect stores parameters in plain text; "
                    "pass the name of a block that holds it",
                )
            classes = _block_classes(annotation)
            value = parameters.get(name, info.default)
            if classes and isinstance(value, str) and not list(_templates(value)):
                origin = "parameters" if name in parameters else "the flow's default of"
                self.block_references.append(
                    _BlockReference(
                        classes[0],
                        classes[0].get_block_type_slug(),
                        value,
                        f"{where}: {origin} {name}",
                    )
                )
        if flow.name == "kafka-trigger" and isinstance(parameters.get("registry"), str):
            self.registries.add(parameters["registry"])

    def check_work_pool(self, pool: object, where: str, declared: bool) -> None:
        if not isinstance(pool, dict) or not isinstance(pool.get("name"), str):
            self.problem(where, "needs a mapping with the work pool's name")
            return
        self.keys(pool, WorkPoolConfig.model_fields, where)
        worker_type = self.pool_types.get(pool["name"])
        if worker_type is None:
            declared_names = ", ".join(sorted(self.pool_types)) or "none"
            self.problem(
                f"{where}.name",
                f"work pool {pool['name']!r} is not declared in definitions.work_pools "
                f"(declared: {declared_names})",
            )
            return
        variables = pool.get("job_variables") or {}
        if not isinstance(variables, dict):
            self.problem(f"{where}.job_variables", "must be a mapping")
            return
        worker = BaseWorker.get_worker_class_from_type(worker_type)
        template = worker.get_default_base_job_template() if worker else {}
        known = template.get("variables", {}).get("properties", {})
        self.keys(variables, known, f"{where}.job_variables")
        env = variables.get("env") or {}
        if not isinstance(env, dict):
            self.problem(f"{where}.job_variables.env", "must be a mapping")
            return
        self.check_env(env, f"{where}.job_variables.env", require_heartbeat=not declared)

    def check_env(self, env: dict[Any, Any], where: str, require_heartbeat: bool) -> None:
        settings = _get_settings_fields(Settings)
        valid_names = _get_valid_setting_names(Settings)
        updates = {}
        for key, value in env.items():
            path = f"{where}.{key}"
            if not isinstance(value, str | int | float | bool):
                self.problem(path, "must be a string")
            elif str(key).startswith("MAGICFLOW_"):
                # MagicFlow's own variables that a flow run reads.
                self.keys({key: value}, (KAFKA_BLOCK_ENV, CHECKOUT_VARIABLE), where)
            elif str(key).startswith("PREFECT_"):
                if key not in valid_names:
                    self.keys({key: value}, valid_names, where)
                elif key in settings:
                    updates[key] = str(value)
        # Building settings is slow: validate all at once, then one by one to say which.
        current = get_current_settings()
        try:
            current.copy_with_update(updates={settings[k]: v for k, v in updates.items()})
        except ValidationError:
            for key, value in updates.items():
                try:
                    current.copy_with_update(updates={settings[key]: value})
                except ValidationError as error:
                    self.problem(f"{where}.{key}", error.errors(include_url=False)[0]["msg"])
        heartbeat = env.get(HEARTBEAT_VARIABLE)
        if require_heartbeat and heartbeat is None:
            self.problem(
                f"{where}.{HEARTBEAT_VARIABLE}",
                f"missing: the zombie automation expects a heartbeat every {HEARTBEAT_SECONDS} s "
                "(Prefect's default is 180 s, so longer runs would be marked crashed)",
            )
        elif heartbeat is not None and str(heartbeat).isdigit():
            if int(str(heartbeat)) > HEARTBEAT_SECONDS:
                self.problem(
                    f"{where}.{HEARTBEAT_VARIABLE}",
                    f"is {heartbeat} s but the zombie automation expects one every "
                    f"{HEARTBEAT_SECONDS} s; live runs would be marked crashed",
                )
        if isinstance(env.get(KAFKA_BLOCK_ENV), str):
            from blocks.kafka import KafkaConnection

            self.block_references.append(
                _BlockReference(
                    KafkaConnection,
                    KafkaConnection.get_block_type_slug(),
                    env[KAFKA_BLOCK_ENV],
                    f"{where}.{KAFKA_BLOCK_ENV}",
                )
            )
        if isinstance(env.get(RESULT_STORAGE_VARIABLE), str):
            self.add_slug_reference(
                env[RESULT_STORAGE_VARIABLE], "/", f"{where}.{RESULT_STORAGE_VARIABLE}"
            )

    def check_schedule(self, schedule: object, where: str) -> None:
        if not isinstance(schedule, dict):
            self.problem(where, "must be a mapping with cron, interval or rrule")
            return
        self.keys(schedule, RawScheduleConfig.model_fields, where)
        kinds = [kind for kind in ("cron", "interval", "rrule") if schedule.get(kind) is not None]
        if len(kinds) != 1:
            self.problem(where, "needs exactly one of cron, interval, rrule")
            return
        if not schedule.get("timezone"):
            self.problem(
                f"{where}.timezone", "missing: name the timezone (e.g. Europe/London), or UTC"
            )
        known = {
            key: value for key, value in schedule.items() if key in RawScheduleConfig.model_fields
        }
        try:
            _schedule_config_to_deployment_schedule(
                RawScheduleConfig.model_validate(known).model_dump(exclude_unset=True)
            )
        except ValidationError as error:
            for item in error.errors(include_url=False, include_input=False, include_context=False):
                self.problem(key_path(where, *map(str, item["loc"][-1:])), item["msg"])
        except ValueError as error:
            self.problem(f"{where}.{kinds[0]}", str(error))

    def check_concurrency(self, limit: object, where: str) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int | dict):
            self.problem(where, "must be a number of runs or {limit, collision_strategy}")
            return
        if isinstance(limit, dict):
            self.keys(limit, ConcurrencyLimitSpec.model_fields, where)
            strategies = [strategy.value for strategy in ConcurrencyLimitStrategy]
            strategy = limit.get("collision_strategy")
            if strategy is not None and strategy not in strategies:
                self.problem(
                    f"{where}.collision_strategy",
                    f"{strategy!r} is not one of {', '.join(strategies)}",
                )
            grace = limit.get("grace_period_seconds")
            if grace is not None and (not isinstance(grace, int) or grace < 60 or grace > 86400):
                self.problem(f"{where}.grace_period_seconds", "must be 60 to 86400 seconds")
            where, limit = f"{where}.limit", limit.get("limit")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            self.problem(where, "must be a whole number of runs, at least 1")

    def check_steps(self, steps: object, where: str) -> None:
        if isinstance(steps, dict):
            steps = [steps]
        if not isinstance(steps, list):
            self.problem(where, "must be a list of steps")
            return
        for number, step in enumerate(steps):
            path = key_path(where, number)
            if not isinstance(step, dict) or len(step) != 1:
                self.problem(path, "a step is one mapping: {module.function: {arguments}}")
                continue
            name, inputs = next(iter(step.items()))
            inputs = inputs or {}
            if not isinstance(inputs, dict):
                self.problem(f"{path}.{name}", "its arguments must be a mapping")
                continue
            try:
                function = import_object(name)
            except Exception as error:
                self.problem(f"{path}", f"step {name!r} does not import: {type(error).__name__}")
                continue
            arguments = {
                key: value for key, value in inputs.items() if key not in _RESERVED_STEP_KEYWORDS
            }
            try:
                signature = inspect.signature(function)
            except (TypeError, ValueError):
                continue
            accepts_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
            if not accepts_any:
                self.keys(
                    arguments, [*signature.parameters, *_RESERVED_STEP_KEYWORDS], f"{path}.{name}"
                )
            missing = [
                p.name
                for p in signature.parameters.values()
                if p.default is p.empty
                and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                and p.name not in arguments
            ]
            if missing:
                self.problem(f"{path}.{name}", f"missing argument(s): {', '.join(missing)}")
            self.check_templates(arguments, f"{path}.{name}")

    def check_triggers(self, triggers: object, where: str) -> None:
        if not isinstance(triggers, list):
            self.problem(where, "must be a list of triggers")
            return
        adapter: TypeAdapter[Any] = TypeAdapter(DeploymentTriggerTypes)
        for number, trigger in enumerate(triggers):
            path = key_path(where, number)
            try:
                model = adapter.validate_python(trigger)
            except ValidationError as error:
                for item in error.errors(include_url=False, include_input=False):
                    self.problem(key_path(path, *map(str, item["loc"][1:])), item["msg"])
                continue
            if isinstance(trigger, dict):
                self.keys(trigger, type(model).model_fields, path)

    def check_templates(self, value: Any, where: str) -> None:
        for expression in _templates(value):
            head = expression.split(".", 1)[0]
            if expression.startswith("$") or head == "ctx":
                continue  # environment variables; run-time context
            if expression.startswith("prefect.blocks."):
                self.add_slug_reference(expression.removeprefix("prefect.blocks."), ".", where)
            elif expression.startswith("prefect.variables."):
                continue
            elif head not in self.step_ids:
                known = ", ".join(sorted(self.step_ids)) or "none"
                self.problem(
                    where,
                    f"template {{{{ {expression} }}}} names no build or push step id "
                    f"(ids: {known})",
                )

    def add_slug_reference(self, reference: str, separator: str, where: str) -> None:
        slug, _, name = reference.partition(separator)
        classes = {cls.get_block_type_slug(): cls for cls in supported_block_types().values()}
        if not name:
            self.problem(where, f"{reference!r} is not a block reference (type{separator}name)")
            return
        if slug not in classes:
            try:
                Block.get_block_class_from_key(slug)
            except KeyError:
                self.problem(where, f"{slug!r} is not a known block type")
                return
        self.block_references.append(_BlockReference(classes.get(slug), slug, name, where))

    # --- across the file -------------------------------------------------------------

    def check_registries(self, deployments: list[Any]) -> None:
        for path in sorted(self.registries):
            try:
                registry = load_registry(path)
            except Exception as error:
                self.problem("registry", f"{path!r} does not load: {type(error).__name__}: {error}")
                continue
            for workflow in registry:
                self.result.workflows += 1
                flow_name, _, deployment_name = workflow.deployment.partition("/")
                flow = self.flows.get(deployment_name)
                if deployment_name not in self.flows and not any(
                    isinstance(d, dict) and d.get("name") == deployment_name for d in deployments
                ):
                    entrypoint = MAGICFLOW_WORKFLOWS.get(workflow.name, "module:flow")
                    self.problem(
                        "deployments",
                        f"registered workflow {workflow.name!r} ({path}) has no deployment; add "
                        f"`- <<: *workflow` with name: {deployment_name} and entrypoint: "
                        f"{entrypoint.replace(':', '.')}",
                    )
                elif flow is not None and flow.name != flow_name:
                    self.problem(
                        f"deployment {deployment_name!r}: entrypoint",
                        f"runs flow {flow.name!r}, but registered workflow {workflow.name!r} "
                        f"starts {workflow.deployment!r}",
                    )

    def check_block_references(self) -> None:
        self.result.blocks = len(self.block_references)
        for reference in self.block_references:
            if (text := block_name_problem(reference.name)) is not None:
                self.problem(reference.where, text)
        if self.blocks_file is None:
            return
        try:
            entries = parse_blocks_config(self.blocks_file)
        except ConfigFileError as error:
            self.result.problems.extend(error.problems)
            return
        declared = {(entry.block_class.get_block_type_slug(), entry.name) for entry in entries}
        for reference in self.block_references:
            if reference.block_class is None or (reference.slug, reference.name) in declared:
                continue
            self.problem(
                reference.where,
                f"block {reference.name!r} ({reference.block_class.__name__}) is not in "
                f"{self.blocks_file}; add it there (magicflow blocks apply creates it)",
            )


def check_prefect_yaml(prefect_file: Path, blocks_file: Path | None = None) -> CheckResult:
    """Checks a ``prefect.yaml`` (and the blocks it names) against the code.

    Args:
        prefect_file: The file to check.
        blocks_file: The blocks configuration the deployments' block names must be
            in; None checks block names' form only.

    Returns:
        Every problem found (none when the file is good) and what was checked.
    """
    return _Checker(prefect_file, blocks_file).run()
