"""The documentation works as written (README.md and docs/**/*.md).

Code blocks say what they are with a marker on the line before the fence (docs/README.md lists
them): `<!-- example: config -->` (a whole .github/pipeline-bot.yml: validated with the product's
own loader), `config-fragment` (part of one: validated under `version: 1`), `workflow` (a GitHub
workflow: the pipeline-bot steps name real inputs, other actions are pinned by SHA),
`mcp-client` (an MCP client's JSON: an absolute command, flags `pipeline-bot mcp` has), `run` (a
shell block run with bash in a fresh clone of this repository; it must exit 0) and
`not-run (reason)` (needs a cluster, GitHub, a Docker engine or the network: not run, and the
reason says why). Every shell and YAML block carries one, so nothing is left unchecked silently.
Every relative link must resolve, anchors included, and docs/configuration.md must be what
scripts/gen_config_docs.py generates.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import socket
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import yaml
from markdown_it import MarkdownIt  # rich's Markdown parser, installed with the package

from pipeline_bot.errors import ConfigError
from pipeline_bot.repo_config import parse_repo_config

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
MARKER = re.compile(r"^<!--\s*example:\s*(?P<kind>[a-z-]+)\s*(?:\((?P<reason>[^)]*)\))?\s*-->$")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+|~~~+)\s*(?P<info>[\w+-]*)")
KINDS = {"config", "config-fragment", "workflow", "mcp-client", "run", "not-run"}
SHELL = {"sh", "bash", "shell", "console"}
YAML = {"yaml", "yml"}


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    info: str
    kind: str | None
    reason: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _blocks(path: Path) -> list[Block]:
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opened = FENCE.match(lines[i])
        if not opened:
            i += 1
            continue
        indent, fence = len(opened["indent"]), opened["fence"]
        j = i - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        marker = MARKER.match(lines[j].strip()) if j >= 0 else None
        end = i + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        body = "\n".join(line[indent:] for line in lines[i + 1 : end])
        blocks.append(
            Block(
                path,
                i + 1,
                opened["info"].lower(),
                marker["kind"] if marker else None,
                (marker["reason"] or "").strip() if marker else "",
                body + "\n",
            )
        )
        i = end + 1
    return blocks


@cache
def _all_blocks() -> tuple[Block, ...]:
    return tuple(b for path in DOCS for b in _blocks(path))


def _of(*kinds: str) -> list[Block]:
    return [b for b in _all_blocks() if b.kind in kinds]


def _ids(blocks: list[Block]) -> list[str]:
    return [b.where for b in blocks]


# ---------------------------------------------------------------- markers


def test_every_shell_and_yaml_block_says_what_it_is():
    unmarked = [
        b.where for b in _all_blocks() if b.kind is None and (b.info in SHELL or b.info in YAML)
    ]
    assert unmarked == [], "mark each with <!-- example: ... --> (see this module's docstring)"


def test_markers_are_known_and_sit_on_the_right_blocks():
    for block in _all_blocks():
        if block.kind is None:
            continue
        assert block.kind in KINDS, f"{block.where}: unknown marker {block.kind!r}"
        if block.kind in {"run", "not-run"}:
            assert block.info in SHELL, f"{block.where}: {block.kind} marks a shell block"
        elif block.kind == "mcp-client":
            assert block.info == "json", block.where
        else:
            assert block.info in YAML, f"{block.where}: {block.kind} marks a YAML block"
        if block.kind == "not-run":
            assert block.reason, f"{block.where}: say why it is not run: not-run (reason)"


def test_every_marker_is_followed_by_a_block():
    for path in DOCS:
        lines = path.read_text().splitlines()
        for n, line in enumerate(lines):
            if MARKER.match(line.strip()):
                rest = [x for x in lines[n + 1 :] if x.strip()]
                assert rest, f"{path.relative_to(ROOT)}:{n + 1}: a marker at the end"
                assert FENCE.match(rest[0]), f"{path.relative_to(ROOT)}:{n + 1}: no block after it"


def test_the_docs_hold_examples_of_each_kind():
    found = {b.kind for b in _all_blocks()}
    assert {"config", "workflow", "mcp-client", "run"} <= found


# ---------------------------------------------------------------- configs


@pytest.mark.parametrize("block", _of("config"), ids=_ids(_of("config")))
def test_config_examples_pass_the_products_own_loader(block):
    try:
        parse_repo_config(block.text, source=block.where)
    except ConfigError as exc:
        pytest.fail(f"{block.where}: {exc.message}")


@pytest.mark.parametrize(
    "path", sorted((ROOT / "docs" / "examples" / "config").glob("*.yml")), ids=lambda p: p.name
)
def test_example_config_files_pass_the_products_own_loader(path):
    try:
        parse_repo_config(path.read_text(), source=str(path.relative_to(ROOT)))
    except ConfigError as exc:
        pytest.fail(exc.message)


@pytest.mark.parametrize("block", _of("config-fragment"), ids=_ids(_of("config-fragment")))
def test_config_fragments_pass_the_loader_under_version_1(block):
    data = yaml.safe_load(block.text)
    assert isinstance(data, dict), f"{block.where}: a fragment is a mapping of top-level keys"
    assert "version" not in data, f"{block.where}: a whole file: mark it config"
    try:
        parse_repo_config("version: 1\n" + block.text, source=block.where)
    except ConfigError as exc:
        pytest.fail(f"{block.where}: {exc.message}")


def test_a_block_that_looks_like_a_whole_config_is_checked_as_one():
    for block in _all_blocks():
        if block.info in YAML and block.kind != "workflow":
            data = yaml.safe_load(block.text)
            if isinstance(data, dict) and {"environments", "services"} & set(data):
                assert block.kind == "config", f"{block.where}: a config; mark it config"


# ---------------------------------------------------------------- workflows


def _action_inputs() -> set[str]:
    return set(yaml.safe_load((ROOT / "action.yml").read_text())["inputs"])


EXAMPLE_WORKFLOWS = sorted((ROOT / "docs" / "examples").glob("*.yml"))


@pytest.mark.parametrize("path", EXAMPLE_WORKFLOWS, ids=lambda p: p.name)
def test_example_workflow_files_use_inputs_the_action_has(path):
    block = Block(path, 1, "yaml", "workflow", "", path.read_text())
    test_workflow_examples_use_inputs_the_action_has(block)


@pytest.mark.parametrize("block", _of("workflow"), ids=_ids(_of("workflow")))
def test_workflow_examples_use_inputs_the_action_has(block):
    flow = yaml.safe_load(block.text)
    inputs = _action_inputs()
    steps = [s for job in flow["jobs"].values() for s in job.get("steps", [])]
    ours = [s for s in steps if str(s.get("uses", "")).startswith("OWNER/pipeline-bot@")]
    assert ours, f"{block.where}: no `uses: OWNER/pipeline-bot@...` step"
    for step in ours:
        unknown = set(step.get("with", {})) - inputs
        assert not unknown, f"{block.where}: inputs action.yml does not have: {sorted(unknown)}"
    for step in steps:
        uses = str(step.get("uses", ""))
        if uses and not uses.startswith(("OWNER/pipeline-bot@", "./")):
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", uses), (
                f"{block.where}: pin {uses} by its commit SHA, as users should"
            )


# ---------------------------------------------------------------- MCP clients


def _cli():  # the click command typer builds: its commands and options, however help looks
    import typer

    from pipeline_bot.cli import app

    return typer.main.get_command(app)


@cache
def _mcp_flags() -> set[str]:
    return {opt for param in _cli().commands["mcp"].params for opt in param.opts}


def _servers(config: dict[str, object]) -> dict[str, dict[str, object]]:
    for key in ("mcpServers", "servers"):
        if isinstance(config.get(key), dict):
            return config[key]  # type: ignore[return-value]
    raise AssertionError("no mcpServers or servers")


@pytest.mark.parametrize("block", _of("mcp-client"), ids=_ids(_of("mcp-client")))
def test_mcp_client_examples_start_the_real_server(block):
    servers = _servers(json.loads(block.text))
    assert servers, block.where
    for name, server in servers.items():
        if server.get("type") == "http" or "url" in server:
            assert str(server["url"]).endswith("/mcp"), f"{block.where}: {name}"
            continue
        command = str(server["command"])
        # clients such as Claude Desktop start the server without the shell's PATH
        assert command.startswith("/"), f"{block.where}: {name}: use the absolute path"
        assert command.endswith("/bin/pipeline-bot"), f"{block.where}: {name}: {command}"
        args = [str(a) for a in server["args"]]  # type: ignore[attr-defined]
        assert args[0] == "mcp", f"{block.where}: {name}"
        flags = {a.split("=", 1)[0] for a in args if a.startswith("--")}
        assert flags <= _mcp_flags(), f"{block.where}: `mcp` has no {sorted(flags - _mcp_flags())}"


# ---------------------------------------------------------------- commands


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A fresh clone of this repository, as a newcomer gets it."""
    where = tmp_path_factory.mktemp("newcomer") / "pipeline-bot"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(where)], check=True, capture_output=True)
    # the Quick start's `python3 -m venv .venv && .venv/bin/pip install .` needs the package
    # index; the clone borrows the venv these tests run in instead (docs/README.md says so)
    (where / ".venv").symlink_to(Path(sys.prefix))
    return where


def _run_env(home: Path) -> dict[str, str]:
    venv_bin = str(Path(sys.executable).parent)
    keep = {k: v for k, v in os.environ.items() if k in {"LANG", "LC_ALL", "TERM", "TMPDIR"}}
    return {
        **keep,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "COLUMNS": "100",
        "PORT": str(_free_port()),  # blocks that start a server listen on ${PORT:-...}
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.integration
@pytest.mark.parametrize("block", _of("run"), ids=_ids(_of("run")))
def test_runnable_commands_exit_0_in_a_fresh_clone(block, clone, tmp_path):
    script = tmp_path / "block.sh"
    script.write_text("set -euo pipefail\n" + block.text)
    home = clone.parent / "home"  # one home for every block, so the risk model's cache is kept
    home.mkdir(exist_ok=True)
    done = subprocess.run(
        ["bash", str(script)],
        cwd=clone,
        env=_run_env(home),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,  # a guard against a hung command, not a measurement
    )
    assert done.returncode == 0, (
        f"{block.where} exited {done.returncode}\n{block.text}\n"
        f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    )


def _invocations(text: str) -> list[list[str]]:
    """Each `pipeline-bot ...` command in a shell block, as its words (continuation lines joined,
    up to the end of the command: a pipe, `;`, `&&`, a redirection or a comment)."""
    joined = re.sub(r"\\\n", " ", text)
    found = []
    for line in joined.splitlines():
        for match in re.finditer(r"(?:^|[\s/;&|(])pipeline-bot(?= )(.*)", line):
            words = []
            for word in shlex.split(match[1], comments=True, posix=True):
                if word in {"|", "||", "&&", ";", "&", ">", ">>", "2>", "2>&1"} or word.startswith(
                    (">", "2>", "|")
                ):
                    break
                words.append(word)
            found.append(words)
    return found


def test_every_command_and_option_the_docs_use_exists():
    """`pipeline-bot <command> [<subcommand>] --option` in any shell block: the command is one
    the CLI has, and so is every option given to it."""
    root = _cli()
    for block in _all_blocks():
        if block.info not in SHELL:
            continue
        for words in _invocations(block.text):
            if not words or words[0].startswith("-"):
                continue
            if words[0] == "action":  # the entry's fast path: inputs come from INPUT_*
                continue
            command = root.commands.get(words[0])
            assert command is not None, f"{block.where}: `pipeline-bot {words[0]}` is no command"
            rest = words[1:]
            while hasattr(command, "commands") and rest and not rest[0].startswith("-"):
                sub = command.commands.get(rest[0])
                assert sub is not None, f"{block.where}: `{words[0]} {rest[0]}` is no command"
                command, rest = sub, rest[1:]
            options = {
                opt for param in command.params for opt in [*param.opts, *param.secondary_opts]
            }
            options |= {"--help"}
            for word in rest:
                if word.startswith("-") and word != "-":
                    flag = word.split("=", 1)[0]
                    assert flag in options, f"{block.where}: `{' '.join(words)}`: no {flag}"


# ---------------------------------------------------------------- links


def _slug(heading: str) -> str:
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@cache
def _anchors(path: Path) -> set[str]:
    tokens = MarkdownIt().parse(path.read_text())
    seen: dict[str, int] = {}
    out = set()
    for n, token in enumerate(tokens):
        if token.type == "heading_open":
            inline = tokens[n + 1]
            text = "".join(c.content for c in inline.children or [] if c.type != "html_inline")
            slug = _slug(text)
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            out.add(slug if count == 0 else f"{slug}-{count}")
    return out


def _links(path: Path) -> list[str]:
    tokens = MarkdownIt().parse(path.read_text())
    hrefs = []
    for token in tokens:
        for child in token.children or []:
            if child.type == "link_open":
                hrefs.append(str(child.attrs["href"]))
            elif child.type == "image":
                hrefs.append(str(child.attrs["src"]))
    return hrefs


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    for href in _links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", href):  # https:, mailto: ...
            continue
        target, _, anchor = href.partition("#")
        resolved = (path.parent / target).resolve() if target else path
        assert resolved.exists(), f"{path.relative_to(ROOT)}: {href} does not exist"
        assert resolved.is_relative_to(ROOT), f"{path.relative_to(ROOT)}: {href} leaves the repo"
        if anchor and resolved.suffix == ".md":
            assert anchor in _anchors(resolved), f"{path.relative_to(ROOT)}: no #{anchor} there"


# ---------------------------------------------------------------- generated reference


def _generator():
    spec = importlib.util.spec_from_file_location(
        "gen_config_docs", ROOT / "scripts" / "gen_config_docs.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_configuration_reference_is_generated_from_the_current_schema():
    expected = _generator().render()
    actual = (ROOT / "docs" / "configuration.md").read_text()
    assert actual == expected, "docs/configuration.md is stale: run scripts/gen_config_docs.py"


def test_the_reference_names_every_config_key_and_setting():
    from pipeline_bot.repo_config import config_json_schema
    from pipeline_bot.settings import Settings

    text = (ROOT / "docs" / "configuration.md").read_text()
    schema = config_json_schema()
    for definition in [schema, *schema["$defs"].values()]:
        for key in definition.get("properties", {}):
            assert f"| `{key}` |" in text, key
    for name in Settings.model_fields:
        assert f"PIPELINE_BOT_{name.upper()}" in text or name.startswith(("github_", "openai_"))


# ---------------------------------------------------------------- troubleshooting


def _source_text() -> str:
    """src/ with implicitly concatenated string literals joined, so a message split over lines
    reads as one."""
    text = "\n".join(p.read_text() for p in sorted((ROOT / "src").rglob("*.py")))
    return re.sub(r"\"\s*\n\s*(?:rf|fr|f|r)?\"", "", text)


def test_troubleshooting_quotes_messages_the_code_prints():
    """Each ``### ``message`` `` heading of docs/troubleshooting.md: its literal parts (between
    <placeholders> and where the code joins a message and its hint with "; ") are in src/, so a
    reworded message fails here until the entry follows."""
    source = _source_text()
    doc = (ROOT / "docs" / "troubleshooting.md").read_text()
    headings = re.findall(r"^### ``(.+)``$", doc, re.MULTILINE)
    assert len(headings) >= 15
    for message in headings:
        text = message.removeprefix("error: ")
        for part in re.split(r"<[^>]+>|\.\.\.|; |: ", text):
            part = part.strip(" '\"")
            if len(part) >= 12:
                assert part in source, f"troubleshooting: {part!r} is not in src/"


# ---------------------------------------------------------------- the design map


def _design_map() -> set[str]:
    """Modules the README's Design map names, as paths under src/pipeline_bot/ (a name belongs
    to the folder above it in the tree, found by indentation)."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Design\n") :]
    block = section[section.index("```text\n") + 8 :]
    block = block[: block.index("```")]
    named: set[str] = set()
    stack: list[tuple[int, str]] = []
    for line in block.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        first = line.split()[0]
        folder = "".join(path for _, path in stack)
        if first.endswith("/"):
            stack.append((indent, first))
            folder += first
            named.add(folder)
        for module in re.findall(r"\b(\w+\.py)\b", line):
            named.add(folder + module)
    prefix = "src/pipeline_bot/"
    return {n.removeprefix(prefix) for n in named if n.startswith(prefix)}


def _tracked_modules() -> set[str]:
    done = subprocess.run(
        ["git", "ls-files", "src/pipeline_bot"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    out = set()
    for name in done.stdout.split():
        rel = name.removeprefix("src/pipeline_bot/")
        if rel.endswith("/__init__.py"):
            out.add(rel.removesuffix("__init__.py"))  # a package: its folder is named
        elif rel.endswith(".py"):
            out.add(rel)
    return out


def test_the_design_map_names_every_module_and_nothing_else():
    named, tracked = _design_map(), _tracked_modules()
    assert tracked - named == set(), "add these to the Design map in README.md"
    stale = {n for n in named - tracked if not (ROOT / "src" / "pipeline_bot" / n).exists()}
    assert stale == set(), "the Design map names modules that do not exist"
