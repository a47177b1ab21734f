"""Connection blocks from a YAML file: every secret by reference, applied idempotently.

A blocks configuration names each block by type, name and fields::

    blocks:
      - type: KafkaConnection
        name: magicflow
        fields:
          bootstrap_servers: kafka-1:9093,kafka-2:9093
          security_protocol: SASL_SSL
          sasl_mechanism: SCRAM-SHA-512
          sasl_username: magicflow
          sasl_password: {env: MAGICFLOW_KAFKA_PASSWORD}
          ssl_ca_pem: {file: certs/kafka-ca.pem}

Every field typed as a secret in the block class (``SecretStr``, ``SecretBytes``,
``SecretDict``, also inside nested models such as prefect-aws's) must be given
as ``{env: VAR}`` or ``{file: PATH}`` (relative to the file); a literal secret is
refused, so the file can live in git. Any field may use a reference.

`apply_blocks` compares each block with the stored document (secrets included,
never printed) and writes only the blocks that differ, so a second apply writes
nothing and reports every block ``unchanged``.

Example:
    ```python
    from pathlib import Path

    from deployments.blocks_config import apply_blocks, build_blocks, parse_blocks_config

    entries = parse_blocks_config(Path("deployments/local-stack-blocks.yaml"))
    for outcome in await apply_blocks(build_blocks(entries)):
        print(outcome)  # created KafkaConnection 'magicflow'
    ```
"""

from __future__ import annotations

import json
import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import get_client
from prefect.blocks.core import Block
from prefect.exceptions import ObjectNotFound
from prefect.types.names import LOWERCASE_LETTERS_NUMBERS_AND_DASHES_ONLY_REGEX
from pydantic import BaseModel, Secret, SecretBytes, SecretStr, ValidationError

from deployments.config_files import (
    ConfigFileError,
    ConfigProblem,
    key_path,
    load_yaml_file,
    unknown_keys,
)
from magicflow.changes import Action

REFERENCE_KINDS = ("env", "file")
"""How a field's value can be given by reference: ``{env: VAR}`` or ``{file: PATH}``."""

ENTRY_KEYS = ("type", "name", "fields")
"""The keys of one block entry."""


def supported_block_types() -> dict[str, type[Block]]:
    """The block types a blocks configuration may name: MagicFlow's and prefect-aws's.

    Returns:
        Class name -> block class, e.g. ``{"KafkaConnection": KafkaConnection, ...}``.
    """
    import blocks

    classes: list[type[Block]] = [*blocks.ALL_BLOCKS, blocks.AwsCredentials]
    return {cls.__name__: cls for cls in classes}


@dataclass(frozen=True)
class BlockEntry:
    """One block as the file describes it, checked but not yet resolved.

    Attributes:
        block_class: The block type.
        name: The block document name.
        fields: The fields as written, references unresolved.
        file: The configuration file.
        where: The entry's place in the file, e.g. ``blocks[0] (KafkaConnection 'magicflow')``.
    """

    block_class: type[Block]
    name: str
    fields: dict[str, Any]
    file: str
    where: str
    base_dir: Path = field(compare=False)

    @property
    def type_name(self) -> str:
        """The block class name, as written in the file."""
        return self.block_class.__name__


@dataclass(frozen=True)
class BlockSpec:
    """A block ready to save: its name and its validated value (secrets resolved).

    Attributes:
        entry: Where it came from.
        block: The block, holding the resolved values.
    """

    entry: BlockEntry
    block: Block


@dataclass(frozen=True)
class BlockOutcome:
    """What applying one block did (or, in a dry run, would do).

    Attributes:
        type_name: The block class name.
        name: The block document name.
        action: ``created``, ``updated`` or ``unchanged``.
        changed_fields: Names of the top-level fields that differ (never their values).
        dry_run: True when nothing was written.
    """

    type_name: str
    name: str
    action: Action
    changed_fields: tuple[str, ...] = ()
    dry_run: bool = False

    def __str__(self) -> str:
        text = f"{self.action.value:<9} {self.type_name} {self.name!r}"
        if self.changed_fields:
            text += f" (fields: {', '.join(self.changed_fields)})"
        return text + (" (dry run)" if self.dry_run else "")


# --- reading the file ----------------------------------------------------------------


def block_name_problem(name: object) -> str | None:
    """What is wrong with a block document name, or None when Prefect accepts it.

    Args:
        name: The name as read from a file.

    Returns:
        The problem, or None.

    Example:
        >>> block_name_problem("prod-kafka"), block_name_problem("Prod_Kafka")
        (None, "'Prod_Kafka' is not a block name: use lowercase letters, digits and dashes")
    """
    if not isinstance(name, str) or not name:
        return "a block needs a name"
    if not re.fullmatch(LOWERCASE_LETTERS_NUMBERS_AND_DASHES_ONLY_REGEX, name):
        return f"{name!r} is not a block name: use lowercase letters, digits and dashes"
    return None


def _annotation_types(annotation: Any) -> list[Any]:
    """The classes an annotation admits (``SecretStr | None`` -> [SecretStr, NoneType])."""
    arguments = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [item for argument in arguments for item in _annotation_types(argument)]
    if typing.get_origin(annotation) is typing.Annotated:
        return _annotation_types(arguments[0])
    return [annotation]


def is_secret_annotation(annotation: Any) -> bool:
    """True when a field's annotation is a pydantic secret type (or admits one).

    Args:
        annotation: A pydantic field annotation.

    Returns:
        Whether the field holds a secret.

    Example:
        >>> from pydantic import SecretStr
        >>> is_secret_annotation(SecretStr | None), is_secret_annotation(dict[str, SecretStr])
        (True, True)
        >>> is_secret_annotation(str | None)
        False
    """
    if isinstance(annotation, type) and issubclass(annotation, (SecretStr, SecretBytes, Secret)):
        return True
    # Unions, Optional, Annotated and containers alike: dict[str, SecretStr] is secret too.
    return any(is_secret_annotation(argument) for argument in typing.get_args(annotation))


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    models = [
        kind
        for kind in _annotation_types(annotation)
        if isinstance(kind, type) and issubclass(kind, BaseModel)
    ]
    return models[0] if len(models) == 1 else None


def _is_reference(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in REFERENCE_KINDS


def _field_names(model: type[BaseModel]) -> dict[str, str]:
    """Every name a field may be given by (its name and its alias) -> the field name."""
    names = {}
    for name, info in model.model_fields.items():
        names[name] = name
        if info.alias:
            names[info.alias] = name
    return names


def _check_fields(
    model: type[BaseModel], values: Any, file: str, where: str
) -> list[ConfigProblem]:
    """Problems in one (possibly nested) mapping of fields: unknown keys, literal secrets."""
    if not isinstance(values, dict):
        return [ConfigProblem(file, where, "must be a mapping of field names to values")]
    names = _field_names(model)
    problems = unknown_keys(values, names, file, where)
    for key, value in values.items():
        if key not in names:
            continue
        path = f"{where}.{key}"
        annotation = model.model_fields[names[key]].annotation
        if _is_reference(value):
            kind, target = next(iter(value.items()))
            if not isinstance(target, str) or not target:
                problems.append(
                    ConfigProblem(file, path, f"{{{kind}: ...}} needs a non-empty name")
                )
        elif isinstance(value, dict) and any(kind in value for kind in REFERENCE_KINDS):
            problems.append(
                ConfigProblem(file, path, "a reference is {env: VAR} or {file: PATH}, alone")
            )
        elif is_secret_annotation(annotation) and value is not None:
            problems.append(
                ConfigProblem(
                    file,
                    path,
                    "is a secret and must not be written in the file; "
                    "give it as {env: VAR} or {file: PATH}",
                )
            )
        elif isinstance(value, dict) and (nested := _nested_model(annotation)) is not None:
            problems.extend(_check_fields(nested, value, file, path))
    return problems


def parse_blocks_config(path: Path) -> list[BlockEntry]:
    """Reads a blocks configuration and checks its shape, without resolving references.

    Args:
        path: The YAML file.

    Returns:
        The entries, in file order.

    Raises:
        ConfigFileError: Every problem found: malformed YAML, unknown keys, unknown
            block types or fields, a literal secret, a name used twice for one type.
    """
    file = str(path)
    document = load_yaml_file(path)
    if not isinstance(document, dict) or not isinstance(document.get("blocks"), list):
        raise ConfigFileError([ConfigProblem(file, "", "must be a mapping with a 'blocks' list")])
    problems = unknown_keys(document, ["blocks"], file, "")
    known_types = supported_block_types()
    entries: list[BlockEntry] = []
    seen: dict[tuple[str, str], str] = {}
    for index, raw in enumerate(document["blocks"]):
        where = key_path("blocks", index)
        if not isinstance(raw, dict):
            problems.append(ConfigProblem(file, where, "must be a mapping with type, name, fields"))
            continue
        problems.extend(unknown_keys(raw, ENTRY_KEYS, file, where))
        type_name, name, fields = raw.get("type"), raw.get("name"), raw.get("fields", {})
        if (name_problem := block_name_problem(name)) is not None:
            problems.append(ConfigProblem(file, f"{where}.name", name_problem))
            continue
        where = f"{where} ({type_name} {name!r})"
        block_class = known_types.get(type_name) if isinstance(type_name, str) else None
        if block_class is None or not isinstance(name, str):
            problems.append(
                ConfigProblem(
                    file,
                    f"{where}.type",
                    f"unknown block type {type_name!r}; "
                    f"supported: {', '.join(sorted(known_types))}",
                )
            )
            continue
        if (block_class.__name__, name) in seen:
            first = seen[block_class.__name__, name]
            problems.append(ConfigProblem(file, where, f"defined twice (first at {first})"))
            continue
        seen[block_class.__name__, name] = where
        found = _check_fields(
            block_class, fields if fields is not None else {}, file, f"{where}.fields"
        )
        problems.extend(found)
        if not found:
            entries.append(
                BlockEntry(block_class, name, dict(fields or {}), file, where, path.parent)
            )
    if problems:
        raise ConfigFileError(problems)
    return entries


# --- resolving references and building the blocks --------------------------------------


def _wants_mapping(annotation: Any) -> bool:
    for kind in _annotation_types(annotation):
        origin = typing.get_origin(kind) or kind
        if origin is dict or (
            isinstance(origin, type)
            and issubclass(origin, Secret)
            and not issubclass(origin, (SecretStr, SecretBytes))
        ):
            return True
    return False


def _resolve(
    model: type[BaseModel],
    values: dict[str, Any],
    entry: BlockEntry,
    where: str,
    environ: Mapping[str, str],
    problems: list[ConfigProblem],
) -> dict[str, Any]:
    names = _field_names(model)
    resolved: dict[str, Any] = {}
    for key, value in values.items():
        path = f"{where}.{key}"
        annotation = model.model_fields[names[key]].annotation
        if _is_reference(value):
            kind, target = next(iter(value.items()))
            text = _read_reference(kind, target, entry, path, environ, problems)
            if text is None:
                continue
            if _wants_mapping(annotation):
                try:
                    resolved[key] = json.loads(text)
                except ValueError:
                    problems.append(
                        ConfigProblem(entry.file, path, f"{kind} {target!r} is not JSON")
                    )
                continue
            resolved[key] = text
        elif isinstance(value, dict) and (nested := _nested_model(annotation)) is not None:
            resolved[key] = _resolve(nested, value, entry, path, environ, problems)
        else:
            resolved[key] = value
    return resolved


def _read_reference(
    kind: str,
    target: str,
    entry: BlockEntry,
    path: str,
    environ: Mapping[str, str],
    problems: list[ConfigProblem],
) -> str | None:
    if kind == "env":
        if target not in environ:
            problems.append(
                ConfigProblem(entry.file, path, f"environment variable {target} is not set")
            )
            return None
        return environ[target]
    file_path = entry.base_dir / Path(target).expanduser()
    try:
        # A trailing newline is an editor's, not the secret's (tokens would break on it).
        return file_path.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or type(error).__name__
        problems.append(
            ConfigProblem(entry.file, path, f"file {target!r} cannot be read: {reason}")
        )
        return None


def build_blocks(
    entries: Sequence[BlockEntry], environ: Mapping[str, str] | None = None
) -> list[BlockSpec]:
    """Resolves every reference and validates every block, before anything is written.

    Args:
        entries: From `parse_blocks_config`.
        environ: Where ``{env: VAR}`` is looked up (default: this process's environment).

    Returns:
        The blocks, in file order.

    Raises:
        ConfigFileError: Every problem found: an unset variable, an unreadable file,
            a value the block rejects. Messages name the field, never its value.
    """
    environ = os.environ if environ is None else environ
    problems: list[ConfigProblem] = []
    specs: list[BlockSpec] = []
    for entry in entries:
        found: list[ConfigProblem] = []
        values = _resolve(
            entry.block_class, entry.fields, entry, f"{entry.where}.fields", environ, found
        )
        if not found:
            try:
                specs.append(BlockSpec(entry, entry.block_class.model_validate(values)))
            except ValidationError as error:
                for item in error.errors(
                    include_url=False, include_input=False, include_context=False
                ):
                    where = (
                        key_path(f"{entry.where}.fields", *item["loc"])
                        if item["loc"]
                        else f"{entry.where}.fields"
                    )
                    found.append(ConfigProblem(entry.file, where, item["msg"]))
            except Exception as error:  # a block's own initialisation (credential discovery...)
                found.append(
                    ConfigProblem(entry.file, entry.where, f"{type(error).__name__}: {error}")
                )
        problems.extend(found)
    if problems:
        raise ConfigFileError(problems)
    return specs


# --- applying and listing ------------------------------------------------------------


def _stored_form(block: Block) -> dict[str, Any]:
    """The block's data as Prefect stores it in a block document, secrets included."""
    data_keys = set(block.model_json_schema(by_alias=False)["properties"])
    return block.model_dump(
        mode="json", by_alias=True, include=data_keys, context={"include_secrets": True}
    )


async def apply_blocks(specs: Sequence[BlockSpec], dry_run: bool = False) -> list[BlockOutcome]:
    """Creates or updates each block, writing only those that differ from what is stored.

    A block is ``unchanged`` when its stored document has the same data (secret
    values compared too) and the same block schema as the code's.

    Args:
        specs: From `build_blocks`.
        dry_run: Read only and report what would be written.

    Returns:
        One outcome per block, in order.
    """
    outcomes = []
    async with get_client() as client:
        for spec in specs:
            block, name = spec.block, spec.entry.name
            try:
                stored = await client.read_block_document_by_name(
                    name, block.get_block_type_slug(), include_secrets=True
                )
            except ObjectNotFound:
                stored = None
            wanted = _stored_form(block)
            changed: tuple[str, ...] = ()
            if stored is None:
                action = Action.CREATED
            else:
                current = stored.data or {}
                changed = tuple(
                    sorted(
                        key for key in {*wanted, *current} if wanted.get(key) != current.get(key)
                    )
                )
                schema = stored.block_schema.checksum if stored.block_schema else None
                if not changed and schema == block._calculate_schema_checksum():
                    outcomes.append(
                        BlockOutcome(spec.entry.type_name, name, Action.UNCHANGED, (), dry_run)
                    )
                    continue
                action = Action.UPDATED
            if not dry_run:
                await block.asave(name, overwrite=True)
            outcomes.append(BlockOutcome(spec.entry.type_name, name, action, changed, dry_run))
    return outcomes


@dataclass(frozen=True)
class SavedBlock:
    """A saved block as `list_saved_blocks` shows it: secrets masked by the server.

    Attributes:
        type_name: The class name for MagicFlow's and prefect-aws's types, else the slug.
        name: The block document name.
        fields: Its data; secret values are ``********``.
    """

    type_name: str
    name: str
    fields: dict[str, Any]

    def __str__(self) -> str:
        shown = []
        for key, value in self.fields.items():
            if value is None or value == {}:
                continue
            text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
            shown.append(f"{key}={text if len(text) <= 60 else text[:57] + '...'}")
        return f"{self.type_name} {self.name!r}: {' '.join(shown)}"


async def list_saved_blocks() -> list[SavedBlock]:
    """Every named block saved on the Prefect server, without secret values.

    Secrets are never fetched: the server sends ``********`` in their place.

    Returns:
        The blocks, sorted by type and name.
    """
    names_by_slug = {
        cls.get_block_type_slug(): name for name, cls in supported_block_types().items()
    }
    async with get_client() as client:
        documents = await client.read_block_documents(include_secrets=False)
    saved = []
    for document in documents:
        if document.is_anonymous:
            continue
        slug = document.block_type.slug if document.block_type else "?"
        type_name = names_by_slug.get(slug, slug)
        saved.append(SavedBlock(type_name, document.name or "", dict(document.data or {})))
    return sorted(saved, key=lambda block: (block.type_name, block.name))
