"""YAML loading that remembers where every value came from (file and line)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Path_ = tuple[str | int, ...]


@dataclass
class Located:
    """A plain YAML document plus the 1-based line of every mapping key and item."""

    file: str
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)
    # paths that came from another file (a merged part): path prefix -> file
    files: dict[Path_, str] = field(default_factory=dict)

    def line(self, path: Path_) -> int:
        """The line of ``path`` or of its nearest located ancestor."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return 1

    def file_of(self, path: Path_) -> str:
        """The file that ``path`` was read from."""
        p = tuple(path)
        while p:
            if p in self.files:
                return self.files[p]
            p = p[:-1]
        return self.file

    def merge_lists(self, part: Located, keys: tuple[str, ...]) -> list[str]:
        """Append ``part``'s top-level lists under ``keys`` to this document's.

        Returns the part's top-level keys that are not mergeable.
        """
        if not isinstance(part.data, dict):
            return ["(document is not a mapping)"]
        bad = [k for k in part.data if k not in keys]
        for key in keys:
            items = part.data.get(key)
            if not isinstance(items, list):
                continue
            target = self.data.setdefault(key, [])
            if not isinstance(target, list):
                continue
            for k, item in enumerate(items):
                m = len(target)
                target.append(item)
                prefix = (key, k)
                for p, line in part.lines.items():
                    if p[:2] == prefix:
                        self.lines[(key, m, *p[2:])] = line
                self.files[(key, m)] = part.file
        return bad


# libyaml's parser when PyYAML has it (the same nodes and marks, several times faster: a
# bundle's mapping tables are parsed on every swap); duplicate keys are reported by
# ``_convert`` instead of silently overwritten
_Composer: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load(path: Path, display: str | None = None) -> tuple[Located, list[tuple[int, str]]]:
    """Load one YAML file. Returns the document and (line, message) problems found."""
    return load_text(path.read_text(encoding="utf-8"), display or str(path))


def load_text(text: str, display: str) -> tuple[Located, list[tuple[int, str]]]:
    """Load one YAML document held in memory (e.g. a file of a policy bundle), shown as
    ``display`` in every problem. Returns the document and (line, message) problems."""
    problems: list[tuple[int, str]] = []
    try:
        node = yaml.compose(text, Loader=_Composer)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        return Located(display, None), [(line, f"YAML syntax: {exc}")]
    doc = Located(display, None)
    if node is None:
        return doc, [(1, "empty document")]
    doc.data = _convert(node, (), doc.lines, problems)
    return doc, problems


def _convert(
    node: yaml.Node, path: Path_, lines: dict[Path_, int], problems: list[tuple[int, str]]
) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if key in out:
                problems.append((key_node.start_mark.line + 1, f"duplicate key {key!r}"))
            sub = (*path, key)
            out[key] = _convert(value_node, sub, lines, problems)
            lines[sub] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(child, (*path, i), lines, problems) for i, child in enumerate(node.value)]
    assert isinstance(node, yaml.ScalarNode)
    return (
        yaml.safe_load(yaml.serialize(node)) if node.tag != "tag:yaml.org,2002:str" else node.value
    )
