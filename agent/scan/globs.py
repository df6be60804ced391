"""Which paths a store's globs and excludes match.

Globs
    ``*``, ``?`` and ``[...]`` match within one path component (``*`` also
    matches names starting with a dot); a component that is exactly ``**``
    matches any number of directories. Each glob is walked from its longest
    directory prefix without wildcards (:attr:`GlobPattern.base`), pruning as it
    goes: :meth:`GlobPattern.step` says whether anything below a directory can
    match, :class:`GlobState` whether a file name there does.

Excludes
    A pattern without a directory separator matches file and directory names
    (``dhparam.pem``, ``*.bak``); others match whole paths (``**/old/**``,
    ``/etc/nginx/archive``). Matching directories are not entered.

:func:`covers` and :func:`store_for` answer "which store does this path belong to"
(``AgentConfig.store_for``) without touching the disk. Imports nothing of the agent.
"""
from __future__ import annotations

import fnmatch
import os
import re
from typing import Any, Callable, Iterable, Protocol, Sequence, TypeVar, Union

__all__ = ["GlobPattern", "GlobState", "Excludes", "compile_glob", "covers", "store_for"]


_WILD = re.compile(r"[*?\[]")
_Matcher = Union[str, Callable[[str], object]]


def _part(component: str) -> _Matcher | None:
    """None for ``**``; the name for literal components; else a compiled matcher."""
    if component == "**":
        return None
    if not _WILD.search(component):
        return component
    return re.compile(fnmatch.translate(component)).match


class GlobPattern:
    """One ``paths`` glob, compiled for a walk that prunes as it goes."""

    __slots__ = ("pattern", "base", "parts", "literal", "_states")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        norm = os.path.normpath(pattern)
        comps = norm.split(os.sep)
        first = next((i for i, c in enumerate(comps) if _WILD.search(c)), None)
        self.literal = first is None
        if first is None:
            self.base = norm
            self.parts: tuple[_Matcher | None, ...] = ()
        else:
            base = os.sep.join(comps[:first]) or os.sep
            if base.endswith(":"):       # "C:" on Windows
                base += os.sep
            self.base = base
            self.parts = tuple(_part(c) for c in comps[first:])
        self._states: dict[frozenset[int], GlobState] = {}

    def start(self) -> "GlobState":
        """The matching state at the base directory."""
        return self.state(self._closure({0}))

    def state(self, indices: frozenset[int]) -> "GlobState":
        s = self._states.get(indices)
        if s is None:
            s = self._states[indices] = GlobState(self, indices)
        return s

    def _closure(self, indices: set[int]) -> frozenset[int]:
        out = set(indices)
        todo = list(indices)
        while todo:
            i = todo.pop()
            if i < len(self.parts) and self.parts[i] is None and i + 1 not in out:
                out.add(i + 1)
                todo.append(i + 1)
        return frozenset(out)

    def step(self, state: "GlobState", name: str) -> "GlobState | None":
        """The state after entering directory ``name``; None when nothing below can match."""
        nxt: set[int] = set()
        parts = self.parts
        for i in state.indices:
            if i >= len(parts):
                continue
            p = parts[i]
            if p is None:
                nxt.add(i)
            elif p == name if p.__class__ is str else p(name):  # type: ignore[operator]
                nxt.add(i + 1)
        if not nxt:
            return None
        closed = self._closure(nxt)
        if all(i >= len(parts) for i in closed):
            return None
        return self.state(closed)


class GlobState:
    """Which glob components may match next; precomputed tests for file names."""

    __slots__ = ("indices", "all_files", "tests", "fast_match")

    def __init__(self, glob: GlobPattern, indices: frozenset[int]) -> None:
        n = len(glob.parts)
        self.indices = indices
        self.all_files = False
        tests: list[_Matcher] = []
        for i in indices:
            if i >= n:
                continue
            p = glob.parts[i]
            ends = n in glob._closure({i + 1})
            if p is None and ends:
                self.all_files = True
            elif p is not None and ends:
                tests.append(p)
        self.tests = tuple(tests)
        # The cheapest callable answering "does a file called name match here?"
        self.fast_match: Callable[[str], object] = self.matches_file
        if self.all_files:
            self.fast_match = _always
        elif not tests:
            self.fast_match = _never
        elif len(tests) == 1:
            t = tests[0]
            self.fast_match = t.__eq__ if t.__class__ is str else t  # type: ignore[assignment,union-attr]

    def matches_file(self, name: str) -> bool:
        if self.all_files:
            return True
        for t in self.tests:
            if t.__class__ is str:
                if t == name:
                    return True
            elif t(name):  # type: ignore[operator]
                return True
        return False


def _always(name: str) -> bool:
    return True


def _never(name: str) -> bool:
    return False


def compile_glob(pattern: str) -> GlobPattern:
    """Compile one ``paths`` glob (absolute, ``**`` = any depth)."""
    return GlobPattern(pattern)


def _glob_regex(pattern: str) -> str:
    """A regex for a whole-path glob: ``**`` crosses directories, ``*`` does not."""
    seps = "/" if os.sep == "/" else "/\\"
    sep = "/" if os.sep == "/" else r"[\\/]"
    not_sep = "[^/]" if os.sep == "/" else r"[^\\/]"
    out = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**", i):
            j = i + 2
            if j < n and pattern[j] in seps:
                out.append(f"(?:.*{sep})?")
                i = j + 1
            else:
                out.append(".*")
                i = j
            continue
        if c == "*":
            out.append(f"{not_sep}*")
        elif c == "?":
            out.append(not_sep)
        elif c == "[":
            k = pattern.find("]", i + 2)
            if k < 0:
                out.append(r"\[")
            else:
                body = pattern[i + 1:k]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = k
        elif c in seps:
            out.append(sep)
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


class Excludes:
    __slots__ = ("name", "path", "active")

    def __init__(self, patterns: tuple[str, ...]) -> None:
        self.active = bool(patterns)
        names = [fnmatch.translate(p) for p in patterns if "/" not in p and os.sep not in p]
        paths = [_glob_regex(p) for p in patterns if "/" in p or os.sep in p]
        self.name = re.compile("|".join(names)).fullmatch if names else None
        self.path = re.compile("|".join(f"(?:{p})" for p in paths)).fullmatch if paths else None

    def __call__(self, name: str, path: str) -> bool:
        return bool((self.name is not None and self.name(name)) or (self.path is not None and self.path(path)))


class _Store(Protocol):
    paths: Sequence[str]
    exclude: Sequence[str]


S = TypeVar("S", bound=_Store)


def covers(globs: Iterable[GlobPattern], excludes: Excludes, path: str) -> bool:
    """Whether ``path`` (absolute, normalised) matches one of ``globs`` and none of ``excludes``."""
    if excludes(os.path.basename(path), path):
        return False
    for g in globs:
        if g.literal:
            if g.base == path:
                return True
            continue
        try:
            rel = os.path.relpath(path, g.base)
        except ValueError:       # another drive (Windows)
            continue
        if rel == os.pardir or rel.startswith(os.pardir + os.sep):
            continue
        state: GlobState | None = g.start()
        names = rel.split(os.sep)
        for d in names[:-1]:
            state = g.step(state, d) if state is not None else None
        if state is not None and state.matches_file(names[-1]):
            return True
    return False


def store_for(stores: Iterable[S], path: str) -> S | None:
    """The first of ``stores`` whose paths cover ``path`` (made absolute and normalised); None if none does."""
    path = os.path.normpath(os.path.abspath(path))
    for store in stores:
        if covers([GlobPattern(p) for p in store.paths], Excludes(tuple(store.exclude)), path):
            return store
    return None


def covers_resolved(store: Any, path: str) -> bool:
    """Whether ``path`` stays inside ``store`` once the operating system resolves its directories
    (what a write would really touch): ``store/link/../x.pem`` with ``link`` a symlinked directory
    names ``store/x.pem`` when normalised but writes beside the link's target. The directory part is
    resolved (a symlinked *file* is still followed, as for certbot's live/ links); the store's glob
    bases are taken as written and resolved, so that a store configured through a symlink still matches."""
    if path != os.path.normpath(path) or not os.path.isabs(path):
        return False                     # ".." or "." components: never taken as they stand
    real = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
    globs = []
    for p in store.paths:
        g = GlobPattern(p)
        globs.append(g)
        real_base = os.path.realpath(g.base)
        if real_base != g.base:
            norm = os.path.normpath(p)
            globs.append(GlobPattern(real_base + norm[len(g.base):]))
    return covers(globs, Excludes(tuple(store.exclude)), real)
