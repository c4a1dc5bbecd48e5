"""ConfigError and the field paths its problems are reported with.

A path names a field the way the user wrote it (``lb_service`` or
``lbService``), and the camelCase JSON name for a field that is missing, so an
operator can find every problem in the file: ``balancers[1].upstreamChecker.riseCount``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class ConfigError(ValueError):
    """The configuration is unusable. ``problems`` lists every problem found, each
    ``"path: message"`` (or just a message when the whole input is at fault)."""

    def __init__(self, problems: tuple[str, ...] | list[str] | str) -> None:
        if isinstance(problems, str):
            problems = (problems,)
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__("\n".join(self.problems))


def camel(name: str) -> str:
    """protobuf's JSON name of a proto field name: ``lb_service`` -> ``lbService``."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


@dataclass(frozen=True, slots=True)
class Where:
    """A position in the JSON document: its path text and the raw JSON value there."""

    text: str = ""
    raw: Any = None

    def field(self, name: str) -> Where:
        """The proto field ``name`` below this object, spelt as the user spelt it."""
        spelling, value = camel(name), None
        if isinstance(self.raw, dict):
            for key in (camel(name), name):
                if key in self.raw:
                    spelling, value = key, self.raw[key]
                    break
        return Where(f"{self.text}.{spelling}" if self.text else spelling, value)

    def item(self, index: int) -> Where:
        value = self.raw[index] if isinstance(self.raw, list) and index < len(self.raw) else None
        return Where(f"{self.text}[{index}]", value)

    def key(self, key: str) -> Where:
        """An entry of a JSON map (e.g. an http header)."""
        value = self.raw.get(key) if isinstance(self.raw, dict) else None
        return Where(f"{self.text}[{key!r}]", value)


class Problems:
    """Collects problems and warnings while a config is checked, in document order.

    ``dropped``: paths the schema walk reported and left out of what the rules
    see. The rules' problems at, below or above such a path follow from it
    ("is required", "must not be empty"): they are counted in ``errors`` (a
    section with one is still refused) but not in ``reported()``.
    """

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.dropped: set[str] = set()
        self._follow_ups: set[int] = set()

    def error(self, where: Where, message: str) -> None:
        if self._follows_from_dropped(where.text):
            self._follow_ups.add(len(self.errors))
        self.errors.append(f"{where.text}: {message}" if where.text else message)

    def reported(self) -> list[str]:
        """The errors to show: each once, without those that follow from a dropped part."""
        return [e for i, e in enumerate(self.errors) if i not in self._follow_ups]

    def warn(self, where: Where, message: str) -> None:
        if not self._follows_from_dropped(where.text):
            self.warnings.append(f"{where.text}: {message}" if where.text else message)

    def _follows_from_dropped(self, path: str) -> bool:
        return bool(path) and any(_follows(path, dropped) for dropped in self.dropped)


def _follows(path: str, dropped: str) -> bool:
    """A problem at ``path`` follows from ``dropped`` being left out when ``path`` is
    ``dropped``, inside it, or its direct parent ("needs one of tcpAttributes, ...")."""
    if path == dropped or _inside(path, dropped):
        return True
    return _inside(dropped, path) and not any(c in dropped[len(path) + 1:] for c in ".[")


def _inside(path: str, outer: str) -> bool:
    return path.startswith(outer) and path[len(outer):len(outer) + 1] in (".", "[")
