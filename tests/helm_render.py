"""A renderer for the subset of Helm's templates deploy/helm/pipeline-bot uses, for tests on a
machine without the helm binary (none could be installed here): `{{ }}` actions with `{{-`/`-}}`
trimming, comments, `define`/`include`, `if`/`else`/`end`, pipelines and the functions the chart
calls (default, required, printf, quote, toYaml, nindent, indent, trunc, trimSuffix, not). An
action it does not know is an error, never output: the chart stays within what is checked here.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any, ClassVar

import yaml

_ACTION = re.compile(r"{{(-?)\s*(.*?)\s*(-?)}}", re.DOTALL)


class TemplateError(Exception):
    pass


def _tokens(source: str) -> list[tuple[str, str]]:
    """("text", s) and ("action", s) in order, with `{{-` / `-}}` trimming applied."""
    out: list[tuple[str, str]] = []
    pos = 0
    trim_next = False
    for m in _ACTION.finditer(source):
        text = source[pos : m.start()]
        if trim_next:
            text = text.lstrip()
        if m.group(1):
            text = text.rstrip()
        out.append(("text", text))
        out.append(("action", m.group(2)))
        trim_next = bool(m.group(3))
        pos = m.end()
    tail = source[pos:]
    out.append(("text", tail.lstrip() if trim_next else tail))
    return out


def _parse(tokens: list[tuple[str, str]], i: int, defines: dict[str, Any]) -> tuple[list[Any], int]:
    """Nodes up to an `else` or `end` (returned index points at it) or the end."""
    nodes: list[Any] = []
    while i < len(tokens):
        kind, value = tokens[i]
        if kind == "text":
            nodes.append(("text", value))
            i += 1
            continue
        if value.startswith("/*"):
            i += 1
            continue
        word = value.split(None, 1)[0] if value else ""
        if word in ("end", "else"):
            return nodes, i
        if word == "define":
            name = shlex.split(value)[1]
            body, i = _parse(tokens, i + 1, defines)
            defines[name] = body
            i += 1
            continue
        if word == "if":
            then, i = _parse(tokens, i + 1, defines)
            otherwise: list[Any] = []
            if tokens[i][1] == "else":
                otherwise, i = _parse(tokens, i + 1, defines)
            nodes.append(("if", value[2:].strip(), then, otherwise))
            i += 1
            continue
        if word in ("range", "with", "template", "block"):
            raise TemplateError(f"the renderer does not support `{word}`")
        nodes.append(("action", value))
        i += 1
    return nodes, i


class Renderer:
    def __init__(self, chart: Path) -> None:
        self.chart = chart
        self.defines: dict[str, Any] = {}
        self.templates: dict[str, list[Any]] = {}
        for path in sorted((chart / "templates").iterdir()):
            nodes, _ = _parse(_tokens(path.read_text()), 0, self.defines)
            if path.suffix == ".yaml":
                self.templates[path.name] = nodes

    def render(self, values: dict[str, Any] | None = None, *, release: str = "bot") -> str:
        """The chart rendered as `helm template` would: documents separated by `---`."""
        merged = _merge(yaml.safe_load((self.chart / "values.yaml").read_text()), values or {})
        meta = yaml.safe_load((self.chart / "Chart.yaml").read_text())
        root = {
            "Values": merged,
            "Release": {"Name": release, "Namespace": "default", "Service": "Helm"},
            "Chart": {
                "Name": meta["name"],
                "Version": meta["version"],
                "AppVersion": meta["appVersion"],
            },
        }
        docs = []
        for name, nodes in self.templates.items():
            text = self._run(nodes, root).strip()
            if text:
                docs.append(f"# Source: pipeline-bot/templates/{name}\n{text}\n")
        return "---\n".join(docs)

    def objects(self, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return [d for d in yaml.safe_load_all(self.render(values)) if d]

    # ------------------------------------------------------------------ evaluation

    def _run(self, nodes: list[Any], dot: Any) -> str:
        out = []
        for node in nodes:
            if node[0] == "text":
                out.append(node[1])
            elif node[0] == "if":
                branch = node[2] if _truthy(self._pipeline(node[1], dot)) else node[3]
                out.append(self._run(branch, dot))
            else:
                value = self._pipeline(node[1], dot)
                out.append(_text(value))
        return "".join(out)

    def _pipeline(self, expression: str, dot: Any) -> Any:
        value: Any = _NOTHING
        for command in _split(expression, "|"):
            words = _words(command.strip())
            args = [self._argument(w, dot) for w in words[1:]]
            if value is not _NOTHING:
                args.append(value)
            head = words[0]
            if head in self._functions:
                value = self._functions[head](self, dot, *args)
            elif not args:
                value = self._argument(head, dot)
            else:
                raise TemplateError(f"unknown function {head!r}")
        return value

    def _argument(self, word: str, dot: Any) -> Any:
        if word.startswith("(") and word.endswith(")"):
            return self._pipeline(word[1:-1], dot)
        if word.startswith('"'):
            return word[1:-1]
        if word == ".":
            return dot
        if word.startswith("."):
            value = dot
            for part in word[1:].split("."):
                value = value.get(part) if isinstance(value, dict) else None
            return value
        if re.fullmatch(r"-?\d+", word):
            return int(word)
        if word in ("true", "false"):
            return word == "true"
        if word in self._functions:
            return self._functions[word](self, dot)
        raise TemplateError(f"cannot evaluate {word!r}")

    def _include(self, dot: Any, name: str, context: Any) -> str:
        if name not in self.defines:
            raise TemplateError(f"no template named {name!r}")
        return self._run(self.defines[name], context)

    _functions: ClassVar[dict[str, Any]] = {
        "include": _include,
        "default": lambda self, dot, fallback, value=None: value if _truthy(value) else fallback,
        "required": lambda self, dot, message, value=None: _required(message, value),
        "printf": lambda self, dot, fmt, *args: fmt % tuple(_text(a) for a in args),
        "quote": lambda self, dot, value: '"' + _text(value).replace('"', '\\"') + '"',
        "toYaml": lambda self, dot, value: yaml.safe_dump(value, sort_keys=False).rstrip("\n"),
        "nindent": lambda self, dot, n, text: "\n" + _indent(n, _text(text)),
        "indent": lambda self, dot, n, text: _indent(n, _text(text)),
        "trunc": lambda self, dot, n, text: _text(text)[:n],
        "trimSuffix": lambda self, dot, suffix, text: _text(text).removesuffix(suffix),
        "not": lambda self, dot, value: not _truthy(value),
    }


_NOTHING = object()


def _required(message: str, value: Any) -> Any:
    if not _truthy(value):
        raise TemplateError(message)
    return value


def _truthy(value: Any) -> bool:
    return value not in (None, False, 0, "") and value != {} and value != []


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _indent(n: int, text: str) -> str:
    return "\n".join((" " * n + line) if line else line for line in text.split("\n"))


def _split(expression: str, sep: str) -> list[str]:
    """Split on `sep` outside quotes and parentheses."""
    parts, depth, quoted, current = [], 0, False, []
    for ch in expression:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        if ch == sep and not quoted and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _words(command: str) -> list[str]:
    return [w for w in _split(command, " ") if w]


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
