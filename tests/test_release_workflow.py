"""The release workflow (.github/workflows/release.yml, docs/release.md): its triggers and
permissions, every third-party action pinned by commit SHA, and its steps' own scripts run here on
copies (the version check, the digest pinning of action.yml, the release commit and tags pushed to
a local bare repository). Building and pushing the image needs a Docker engine and GHCR, so that
step is only checked for what it passes on."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / ".github" / "workflows" / "release.yml"
WORKFLOWS = sorted(
    [*ROOT.glob(".github/workflows/*.yml"), *ROOT.glob("docs/examples/*.yml"), ROOT / "action.yml"]
)
DIGEST = "sha256:" + "0123456789abcdef" * 4
PINNED = f"ghcr.io/acme/pipeline-bot@{DIGEST}"


def _flow(path: Path = RELEASE) -> dict[str, Any]:
    flow = yaml.safe_load(path.read_text())
    if True in flow:  # YAML 1.1 reads the key `on` as a boolean
        flow["on"] = flow.pop(True)
    return flow


def _steps() -> list[dict[str, Any]]:
    return _flow()["jobs"]["release"]["steps"]


def _step(name: str) -> dict[str, Any]:
    matches = [s for s in _steps() if s.get("name") == name]
    assert len(matches) == 1, f"one step named {name!r}"
    return matches[0]


def _run_step(
    name: str, cwd: Path, env: dict[str, str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """The step's `run:` script under bash as GitHub runs it (`bash --noprofile --norc -eo
    pipefail`), with the step's env given here in place of its `${{ }}` expressions."""
    step = _step(name)
    assert set(env) >= set(step.get("env", {})), "every env the step reads is given"
    script = tmp_path / f"{re.sub(r'[^a-z]+', '-', name)}.sh"
    script.write_text(step["run"])
    output = tmp_path / "github_output"
    output.touch()
    full = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "GITHUB_OUTPUT": str(output),
        "GIT_CONFIG_NOSYSTEM": "1",
        **env,
    }
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        check=False,
    )


def _outputs(tmp_path: Path) -> dict[str, str]:
    lines = (tmp_path / "github_output").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines)


def _git(cwd: Path, *args: str) -> str:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(cwd),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


# ---------------------------------------------------------------- the file itself


def test_release_runs_on_a_version_tag_or_a_manual_run_with_a_version():
    on = _flow()["on"]
    assert set(on) == {"push", "workflow_dispatch"}
    assert set(on["push"]) == {"tags"}, "a tag push, never a branch push, releases"
    (pattern,) = on["push"]["tags"]
    # GitHub's filter: `+` repeats the character class before it, `.` is literal
    regex = re.escape(pattern).replace(r"\[0\-9\]\+", "[0-9]+").replace(r"\[0\-9\]", "[0-9]")
    assert re.fullmatch(regex, "v1.2.3")
    assert re.fullmatch(regex, "v10.0.12")
    assert not re.fullmatch(regex, "v1"), "pushing the major tag must not start a release"
    assert not re.fullmatch(regex, "v1.2.3-rc1")
    version = on["workflow_dispatch"]["inputs"]["version"]
    assert version["required"] is True


def test_release_asks_for_exactly_the_permissions_it_needs():
    flow = _flow()
    assert flow["permissions"] == {}
    assert flow["jobs"]["release"]["permissions"] == {"contents": "write", "packages": "write"}
    assert flow["concurrency"]["cancel-in-progress"] is False, "a release is never cut off"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_third_party_action_is_pinned_by_full_commit_sha(path):
    text = path.read_text()
    uses = re.findall(r"(?m)^\s*(?:-\s*)?uses:\s*([^\s#]+)", text)
    for ref in uses:
        if ref.startswith(("./", "docker://", "OWNER/pipeline-bot@")):
            continue  # this repository's own action, as users write it
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref), f"not pinned by SHA: {ref}"


def test_release_scripts_take_untrusted_values_from_env_never_from_expressions():
    for step in _steps():
        if "run" in step:
            assert "${{" not in step["run"], f"step {step.get('name')!r} expands an expression"
        if step.get("uses", "").startswith("actions/checkout"):
            assert step["with"]["persist-credentials"] is False
            assert step["with"]["fetch-depth"] == 0, "the existing tags are needed"


def test_the_image_step_pushes_the_version_and_major_tags_and_outputs_the_digest():
    image = _step("build and push the Action's image")
    run = image["run"]
    assert 'docker push "$name:$TAG"' in run
    assert 'docker push "$name:$MAJOR"' in run
    assert "RepoDigests" in run
    assert "pinned=" in run
    pin = _step("pin action.yml to the image digest")
    assert pin["env"]["PINNED_IMAGE"] == "${{ steps.image.outputs.pinned }}"


# ---------------------------------------------------------------- the version step


@pytest.mark.parametrize(
    ("event", "ref", "given", "version", "major"),
    [
        ("push", "v1.2.3", "", "1.2.3", "v1"),
        ("push", "v10.0.0", "", "10.0.0", "v10"),
        ("workflow_dispatch", "main", "2.0.1", "2.0.1", "v2"),
        ("workflow_dispatch", "main", "v0.3.0", "0.3.0", "v0"),
    ],
)
def test_the_version_comes_from_the_tag_or_the_input(tmp_path, event, ref, given, version, major):
    env = {"EVENT_NAME": event, "REF_NAME": ref, "INPUT_VERSION": given}
    done = _run_step("version", tmp_path, env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _outputs(tmp_path) == {"version": version, "tag": f"v{version}", "major": major}


@pytest.mark.parametrize("given", ["1.2", "v1", "1.2.3-rc1", "01.2.3", "1.2.3; rm -rf /", ""])
def test_a_version_that_is_not_x_y_z_stops_the_release(tmp_path, given):
    env = {"EVENT_NAME": "workflow_dispatch", "REF_NAME": "main", "INPUT_VERSION": given}
    done = _run_step("version", tmp_path, env, tmp_path)
    assert done.returncode == 1
    assert "::error::the version must be X.Y.Z" in done.stdout
    assert _outputs(tmp_path) == {}


# ---------------------------------------------------------------- the package's version


def _package_copy(tmp_path: Path, version: str) -> Path:
    repo = tmp_path / "repo"
    (repo / "src" / "pipeline_bot").mkdir(parents=True)
    pyproject = (ROOT / "pyproject.toml").read_text()
    init = (ROOT / "src" / "pipeline_bot" / "__init__.py").read_text()
    pyproject = re.sub(r'(?m)^version = "[^"]+"$', f'version = "{version}"', pyproject, count=1)
    init = re.sub(r'(?m)^__version__ = "[^"]+"$', f'__version__ = "{version}"', init)
    (repo / "pyproject.toml").write_text(pyproject)
    (repo / "src" / "pipeline_bot" / "__init__.py").write_text(init)
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "package")
    return repo


@pytest.mark.integration  # runs git
def test_the_release_version_must_be_the_packages_version(tmp_path):
    repo = _package_copy(tmp_path, "1.4.0")
    name = "the package says this version"
    env = {"VERSION": "1.4.0", "TAG": "v1.4.0", "EVENT_NAME": "workflow_dispatch"}
    assert _run_step(name, repo, env, tmp_path).returncode == 0
    wrong = _run_step(name, repo, {**env, "VERSION": "1.5.0", "TAG": "v1.5.0"}, tmp_path)
    assert wrong.returncode == 1
    assert "pyproject.toml says '1.4.0'" in wrong.stdout


@pytest.mark.integration  # runs git
def test_a_manual_release_of_an_existing_tag_is_refused(tmp_path):
    repo = _package_copy(tmp_path, "1.4.0")
    _git(repo, "tag", "v1.4.0")
    name = "the package says this version"
    env = {"VERSION": "1.4.0", "TAG": "v1.4.0", "EVENT_NAME": "workflow_dispatch"}
    done = _run_step(name, repo, env, tmp_path)
    assert done.returncode == 1
    assert "v1.4.0 exists already" in done.stdout
    # a pushed tag is the release's trigger, so it exists then
    assert _run_step(name, repo, {**env, "EVENT_NAME": "push"}, tmp_path).returncode == 0


# ---------------------------------------------------------------- pinning action.yml


def _pin(
    tmp_path: Path, action_text: str, pinned: str = PINNED
) -> subprocess.CompletedProcess[str]:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    (work / "action.yml").write_text(action_text)
    _git(work, "init", "-q")  # the step shows `git diff` of what it changed
    return _run_step("pin action.yml to the image digest", work, {"PINNED_IMAGE": pinned}, tmp_path)


@pytest.mark.integration  # runs git
def test_pinning_points_runs_image_at_the_digest_and_changes_nothing_else(tmp_path):
    original = (ROOT / "action.yml").read_text()
    done = _pin(tmp_path, original)
    assert done.returncode == 0, done.stdout + done.stderr
    pinned_text = (tmp_path / "work" / "action.yml").read_text()
    before, after = yaml.safe_load(original), yaml.safe_load(pinned_text)
    assert after["runs"]["image"] == f"docker://{PINNED}"
    assert after["runs"]["using"] == "docker"
    assert after["runs"]["args"] == before["runs"]["args"]
    before["runs"].pop("image")
    after["runs"].pop("image")
    assert after == before, "inputs (one of them is called image), outputs and the rest unchanged"
    changed = [
        (a, b)
        for a, b in zip(original.splitlines(), pinned_text.splitlines(), strict=True)
        if a != b
    ]
    assert changed == [("  image: Dockerfile", f"  image: docker://{PINNED}")]


@pytest.mark.integration  # runs git
def test_pinning_an_already_pinned_action_replaces_the_digest(tmp_path):
    original = (ROOT / "action.yml").read_text()
    assert _pin(tmp_path, original).returncode == 0
    newer = f"ghcr.io/acme/pipeline-bot@sha256:{'f' * 64}"
    again = _pin(tmp_path, (tmp_path / "work" / "action.yml").read_text(), newer)
    assert again.returncode == 0, again.stderr
    action = yaml.safe_load((tmp_path / "work" / "action.yml").read_text())
    assert action["runs"]["image"] == f"docker://{newer}"


@pytest.mark.integration  # runs git
@pytest.mark.parametrize(
    "pinned",
    [
        "ghcr.io/acme/pipeline-bot:v1",  # a tag moves; only a digest pins
        "ghcr.io/acme/pipeline-bot@sha256:abc",
        "docker.io/acme/pipeline-bot@" + DIGEST,
        "",
    ],
)
def test_pinning_refuses_anything_but_a_ghcr_digest(tmp_path, pinned):
    original = (ROOT / "action.yml").read_text()
    done = _pin(tmp_path, original, pinned)
    assert done.returncode != 0
    assert "not an image reference with a digest" in done.stderr
    assert (tmp_path / "work" / "action.yml").read_text() == original


@pytest.mark.integration  # runs git
def test_pinning_refuses_an_action_without_one_runs_image(tmp_path):
    text = (ROOT / "action.yml").read_text()
    no_image = re.sub(r"(?m)^  image: Dockerfile\n", "", text)
    done = _pin(tmp_path, no_image)
    assert done.returncode != 0
    assert "has 0 image: lines" in done.stderr


# ---------------------------------------------------------------- the release commit and tags


def _release(tmp_path: Path, version: str, major: str) -> subprocess.CompletedProcess[str]:
    work = tmp_path / "work"
    env = {
        "TOKEN": "test-token-not-a-secret",
        "REPOSITORY": "acme/pipeline-bot",
        "SERVER_URL": f"file://{tmp_path / 'server'}",
        "TAG": f"v{version}",
        "MAJOR": major,
        "PINNED_IMAGE": PINNED,
    }
    return _run_step("release commit, tags vX.Y.Z and vX", work, env, tmp_path)


@pytest.mark.integration  # runs git
def test_the_release_commit_carries_the_pin_and_the_tags_move_to_it(tmp_path):
    remote = tmp_path / "server" / "acme" / "pipeline-bot.git"
    remote.mkdir(parents=True)
    _git(remote, "init", "-q", "--bare")
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(ROOT / "action.yml", work / "action.yml")
    _git(work, "init", "-q")
    _git(work, "add", "action.yml")
    _git(work, "commit", "-q", "-m", "main: image: Dockerfile")
    source = _git(work, "rev-parse", "HEAD")
    _git(work, "tag", "v1.0.0")  # the pushed tag that started the release
    _git(work, "push", "-q", str(remote), "HEAD:refs/heads/main", "refs/tags/v1.0.0")

    assert _pin(tmp_path, (work / "action.yml").read_text()).returncode == 0
    done = _release(tmp_path, "1.0.0", "v1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "test-token-not-a-secret" not in done.stdout + done.stderr

    released = _git(remote, "rev-parse", "v1.0.0^{commit}")
    assert released != source, "the tag moved to the release commit"
    assert _git(remote, "rev-parse", f"{released}^") == source
    assert _git(remote, "rev-parse", "v1^{commit}") == released
    assert _git(remote, "rev-parse", "main") == source, "main keeps image: Dockerfile"
    action = yaml.safe_load(_git(remote, "show", f"{released}:action.yml"))
    assert action["runs"]["image"] == f"docker://{PINNED}"
    main_action = yaml.safe_load(_git(remote, "show", "main:action.yml"))
    assert main_action["runs"]["image"] == "Dockerfile"

    # the next minor release moves v1 along
    _git(work, "checkout", "-q", source)
    (work / "README").write_text("more\n")
    _git(work, "add", "README")
    _git(work, "commit", "-q", "-m", "later work on main")
    later = _git(work, "rev-parse", "HEAD")
    assert _pin(tmp_path, (work / "action.yml").read_text()).returncode == 0
    assert _release(tmp_path, "1.1.0", "v1").returncode == 0
    newest = _git(remote, "rev-parse", "v1.1.0^{commit}")
    assert _git(remote, "rev-parse", f"{newest}^") == later
    assert _git(remote, "rev-parse", "v1^{commit}") == newest
    assert _git(remote, "rev-parse", "v1.0.0^{commit}") == released, "older releases stay"
