"""Just enough of Docker's file formats to check the Dockerfile without a daemon: its instructions and stages, and
.dockerignore matching with the semantics of moby/patternmatcher (what `docker build` uses to filter the context)."""

from __future__ import annotations

import json
import os
import posixpath
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


# ---------------------------------------------------------------- Dockerfile

@dataclass
class Instruction:
    keyword: str          # upper case: FROM, RUN, COPY...
    args: str             # the rest of the logical line, continuations joined
    line: int             # 1-based line the instruction starts on
    stage: int            # index of the FROM it belongs to (-1: before the first FROM)

    def words(self) -> list[str]:
        """The arguments as a list: the JSON (exec) form, else shell-like words."""
        text = self.args.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
                if isinstance(value, list):
                    return [str(v) for v in value]
            except json.JSONDecodeError:
                pass
        return shlex.split(text, posix=True)

    def flags(self) -> tuple[dict[str, str], list[str]]:
        """(``--flag=value`` options, the other words) of COPY/ADD/FROM/RUN."""
        opts, rest = {}, []
        for word in self.words():
            if word.startswith("--") and not rest:
                key, _, value = word[2:].partition("=")
                opts[key] = value
            else:
                rest.append(word)
        return opts, rest


@dataclass
class Stage:
    index: int
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)


def parse_dockerfile(text: str) -> list[Instruction]:
    """Logical instructions: comment lines dropped (also inside continued lines), backslash continuations joined."""
    out: list[Instruction] = []
    pending, start, stage = "", 0, -1
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical = (pending + stripped).strip()
        pending = ""
        if not logical:
            continue
        keyword, _, args = logical.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(keyword, args.strip(), start, stage))
    if pending:
        raise ValueError("Dockerfile ends inside a continued line")
    return out


def stages(instructions: list[Instruction]) -> list[Stage]:
    result: list[Stage] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            _, words = ins.flags()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            result.append(Stage(ins.stage, words[0], name))
        elif ins.stage >= 0:
            result[ins.stage].instructions.append(ins)
    return result


def global_args(instructions: list[Instruction]) -> dict[str, str | None]:
    """ARGs declared before the first FROM, with their defaults."""
    out = {}
    for ins in instructions:
        if ins.stage >= 0:
            break
        if ins.keyword == "ARG":
            name, eq, default = ins.args.partition("=")
            out[name.strip()] = default.strip().strip('"') if eq else None
    return out


def key_values(ins: Instruction) -> dict[str, str]:
    """ENV / LABEL / ARG pairs (``K=V ...``, or the legacy ``ENV K V``)."""
    words = ins.words()
    if ins.keyword == "ENV" and words and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}
    out = {}
    for word in words:
        key, _, value = word.partition("=")
        out[key] = value
    return out


def expand(text: str, variables: dict[str, str]) -> str:
    """``$VAR`` / ``${VAR}`` replaced from ``variables`` (unknown names left as they are)."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)",
                  lambda m: variables.get(m.group(1) or m.group(2), m.group(0)), text)


# ---------------------------------------------------------------- .dockerignore (moby/patternmatcher)

@dataclass
class Pattern:
    text: str
    exclusion: bool
    regex: re.Pattern


def _compile(pattern: str) -> re.Pattern:
    """patternmatcher's translation: ``**`` any number of folders, ``*`` / ``?`` within one, ``[...]`` classes."""
    out, i, n = "^", 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                i += 1
                if i + 1 < n and pattern[i + 1] == "/":
                    i += 1
                out += ".*" if i + 1 >= n else "(.*/)?"
            else:
                out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "\\" and i + 1 < n:
            i += 1
            out += re.escape(pattern[i])
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out += re.escape(ch)
            else:
                body = pattern[i + 1:end]
                if body.startswith("^") or body.startswith("!"):
                    body = "^" + body[1:]
                out += "[" + body.replace("\\", "\\\\") + "]"
                i = end
        else:
            out += re.escape(ch)
        i += 1
    return re.compile(out + "$")


def read_dockerignore(text: str) -> list[Pattern]:
    """The patterns of a .dockerignore, cleaned the way Docker reads them."""
    patterns = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exclusion = line.startswith("!")
        if exclusion:
            line = line[1:].strip()
        if not line:
            continue
        line = posixpath.normpath(line)
        if len(line) > 1 and line.startswith("/"):
            line = line[1:]
        patterns.append(Pattern(("!" if exclusion else "") + line, exclusion, _compile(line)))
    return patterns


def is_excluded(path: str, patterns: list[Pattern]) -> bool:
    """MatchesOrParentMatches: a pattern applies to the path or any of its parent folders; the last match wins."""
    path = posixpath.normpath(path)
    parent = posixpath.dirname(path)
    parents = parent.split("/") if parent else []
    matched = False
    for pattern in patterns:
        if pattern.exclusion != matched:
            continue
        hit = bool(pattern.regex.match(path))
        if not hit and parents:
            hit = any(pattern.regex.match("/".join(parents[:i + 1])) for i in range(len(parents)))
        if hit:
            matched = not pattern.exclusion
    return matched


def build_context(root: Path, files: list[str], patterns: list[Pattern]) -> list[str]:
    """The files of ``files`` (paths relative to ``root``) that `docker build root` would send."""
    return [f for f in files if not is_excluded(f, patterns) and (root / f).is_file()]


def secret_looking(path: str) -> bool:
    name = os.path.basename(path).lower()
    return (name in {".env", ".netrc", ".pypirc", "credentials", "kubeconfig", "id_rsa", "id_ed25519"}
            or name.startswith((".env.", "id_rsa", "id_ed25519", "credentials."))
            or name.endswith((".pem", ".key", ".p12", ".pfx", "-credentials.json")))
