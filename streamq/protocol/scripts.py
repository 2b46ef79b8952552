"""Load the Lua scripts shipped as package data, resolving ``--- @include "lib/x.lua"``.

Each include is pasted once per script; a cycle or a missing file is an error at load time.
SHAs live on the :class:`ScriptLibrary` object (no global cache); drivers run EVALSHA and
reload on NOSCRIPT.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

__all__ = ["Script", "ScriptLibrary", "load_library"]

_INCLUDE = re.compile(r'^--- @include "([^"]+)"\s*$', re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Script:
    """One Lua script: its name, full source (includes resolved) and SHA1."""

    name: str
    source: str
    sha: str


def _read(path: str) -> str:
    node = resources.files("streamq.protocol").joinpath("lua", *path.split("/"))
    if not node.is_file():
        raise FileNotFoundError(f"Lua file not found: lua/{path}")
    return node.read_text(encoding="utf-8")


def resolve(path: str, _stack: tuple[str, ...] = (), _seen: set[str] | None = None) -> str:
    """Return the source of ``lua/<path>`` with includes pasted in (each at most once)."""
    seen = set() if _seen is None else _seen
    if path in _stack:
        raise ValueError(f"Lua include cycle: {' -> '.join((*_stack, path))}")
    text = _read(path)

    def paste(match: re.Match[str]) -> str:
        inc = match.group(1)
        if inc in seen:
            return ""
        seen.add(inc)
        return resolve(inc, (*_stack, path), seen)

    return _INCLUDE.sub(paste, text)


class ScriptLibrary:
    """Every script of ``streamq/protocol/lua``, loaded once, looked up by name."""

    def __init__(self) -> None:
        root = resources.files("streamq.protocol").joinpath("lua")
        self._scripts: dict[str, Script] = {}
        for node in sorted(root.iterdir(), key=lambda n: n.name):
            if node.name.endswith(".lua") and node.is_file():
                name = node.name[: -len(".lua")]
                source = resolve(node.name)
                sha = hashlib.sha1(source.encode("utf-8"), usedforsecurity=False).hexdigest()
                self._scripts[name] = Script(name, source, sha)

    def __getitem__(self, name: str) -> Script:
        return self._scripts[name]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._scripts.values())

    def names(self) -> list[str]:
        """Names of all scripts."""
        return sorted(self._scripts)


_LIBRARY: ScriptLibrary | None = None


def load_library() -> ScriptLibrary:
    """The scripts, read from package data on first use (the sources never change at runtime)."""
    global _LIBRARY
    if _LIBRARY is None:
        _LIBRARY = ScriptLibrary()
    return _LIBRARY
