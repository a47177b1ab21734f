"""Strict reading of MagicFlow's YAML files, and their problems reported one per line.

``prefect.yaml`` and a blocks configuration are YAML files that people edit by
hand. PyYAML silently keeps the last of two equal keys, and Prefect's own loader
ignores keys it does not know, so a typo costs a deployment its setting without a
word. This module reads YAML strictly (a repeated key is an error; ``<<`` merges
are allowed, and a key set next to a merge overrides the merged one) and gives
every problem the same shape: the file, where in it, and what is wrong.

Example:
    ```python
    from pathlib import Path

    from deployments.config_files import ConfigFileError, load_yaml_file

    try:
        document = load_yaml_file(Path("prefect.yaml"))
    except ConfigFileError as error:
        for problem in error.problems:
            print(problem)  # prefect.yaml: line 12, column 5: key 'tags' appears twice
    ```
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node

from magicflow.errors import InvalidInputError

_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True)
class ConfigProblem:
    """One problem in a configuration file.

    Attributes:
        file: The file, as the user named it.
        where: Where in the file: a deployment and key path, a line, or empty for the
            file as a whole.
        problem: What is wrong and, where it helps, what to do. Never a secret value.

    Example:
        >>> str(ConfigProblem("prefect.yaml", "deployment 'listener': tagz", "unknown key"))
        "prefect.yaml: deployment 'listener': tagz: unknown key"
    """

    file: str
    where: str
    problem: str

    def __str__(self) -> str:
        return (
            f"{self.file}: {self.where}: {self.problem}"
            if self.where
            else (f"{self.file}: {self.problem}")
        )


class ConfigFileError(InvalidInputError):
    """A configuration file has problems; nothing it describes was applied.

    Args:
        problems: Every problem found (at least one).
    """

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        first = self.problems[0]
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        super().__init__(f"file:{first.file}", f"{first.where or 'file'}: {first.problem}{more}")

    def __reduce__(self) -> tuple[type, tuple[tuple[ConfigProblem, ...]]]:  # type: ignore[override]
        return (type(self), (self.problems,))


def key_path(*parts: str | int) -> str:
    """Joins keys and list indexes into one readable path.

    Args:
        *parts: Mapping keys (strings) and list indexes (integers).

    Returns:
        The path, e.g. ``work_pool.job_variables.env`` or ``schedules[0].cron``.

    Example:
        >>> key_path("schedules", 0, "cron")
        'schedules[0].cron'
    """
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise ConstructorError(
                    None,
                    None,
                    f"key {key!r} appears twice in one mapping (first on line "
                    f"{seen[key].start_mark.line + 1}); YAML would keep only the last",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _StrictLoader.construct_mapping,
)


def load_yaml_text(text: str, file: str) -> Any:
    """Parses YAML text strictly.

    Args:
        text: The YAML document.
        file: Name of the file it came from, for the error.

    Returns:
        The parsed document.

    Raises:
        ConfigFileError: The text is not valid YAML or repeats a key; the problem
            names the line and column.

    Example:
        >>> load_yaml_text("a: 1", "inline.yaml")
        {'a': 1}
    """
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = " ".join(part for part in (error.context, error.problem) if part)
        raise ConfigFileError([ConfigProblem(file, where, f"not valid YAML: {what}")]) from None
    except yaml.YAMLError as error:
        raise ConfigFileError([ConfigProblem(file, "", f"not valid YAML: {error}")]) from None


def load_yaml_file(path: Path) -> Any:
    """Reads and parses a YAML file strictly.

    Args:
        path: The file.

    Returns:
        The parsed document.

    Raises:
        ConfigFileError: The file is missing, unreadable, not UTF-8 or not valid YAML.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigFileError([ConfigProblem(str(path), "", "no such file")]) from None
    except IsADirectoryError:
        raise ConfigFileError([ConfigProblem(str(path), "", "is a directory")]) from None
    except UnicodeDecodeError:
        raise ConfigFileError([ConfigProblem(str(path), "", "is not UTF-8 text")]) from None
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigFileError([ConfigProblem(str(path), "", f"cannot be read: {reason}")]) from None
    return load_yaml_text(text, str(path))


def unknown_keys(
    mapping: dict[Any, Any], allowed: Iterable[str], file: str, where: str, joiner: str = "."
) -> list[ConfigProblem]:
    """One problem per key of a mapping that is not among the allowed ones.

    Args:
        mapping: The mapping read from the file.
        allowed: The keys it may have.
        file: The file, for the problems.
        where: Path of the mapping in the file ("" for the top level).
        joiner: What goes between ``where`` and the key.

    Returns:
        The problems, naming each unknown key and the closest allowed one.

    Example:
        >>> [p.problem for p in unknown_keys({"tagz": []}, ["tags", "name"], "f", "")]
        ["unknown key (did you mean 'tags'?; allowed: name, tags)"]
    """
    import difflib

    known = sorted(set(allowed))
    problems = []
    for key in mapping:
        if key in known:
            continue
        close = difflib.get_close_matches(str(key), known, n=1)
        hint = f"did you mean {close[0]!r}?; " if close else ""
        path = f"{where}{joiner}{key}" if where else str(key)
        problems.append(
            ConfigProblem(file, path, f"unknown key ({hint}allowed: {', '.join(known)})")
        )
    return problems
