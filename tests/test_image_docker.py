"""The docker SDK path of the ImagePort against a real Docker Engine API: Podman's
Docker-compatible service (`podman system service`) on a socket in a temp folder, storage in vfs
there too, pushing to Debian's docker-registry on 127.0.0.1 (no auth, and htpasswd basic auth).
RegistryImages picks DockerDaemon because a daemon answers at DOCKER_HOST; the build_image tool
builds from scratch with build args and the OCI labels, pushes, and the registry's digest must be
the one the push reported."""

from __future__ import annotations

import gc
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline_bot.errors import IntegrationError
from pipeline_bot.integrations.images import Credentials, DockerDaemon, RegistryImages
from pipeline_bot.tools import ToolContext, build_registry
from tests.conftest import stop_process, wait_until_up
from tests.test_image_registry import PASSWORD, USER, Registry, _start_registry

REVISION = "0123456789abcdef0123456789abcdef01234567"
SOURCE = "https://github.com/acme/shop"
DOCKERFILE = (
    "FROM scratch\nARG GREETING=unset\nCOPY hello.txt /hello.txt\nLABEL greeting=$GREETING\n"
)


def _need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        message = (
            f"{', '.join(missing)} missing: `apt-get install -y podman docker-registry "
            "apache2-utils` (scripts/test does)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


class SlowRegistry:
    """A TCP relay to a registry that holds each manifest upload HOLD seconds before passing it
    on: a registry slow to accept a push (a big image to a far registry), during which
    Podman's push prints nothing."""

    HOLD = 8  # more than the 5 s read timeout DockerDaemon once kept from its ping

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rsplit(":", 1)
        self.held = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self.server.getsockname()[1]}"
        self.open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return  # closed by stop()
            upstream = socket.create_connection((self.upstream[0], int(self.upstream[1])))
            self.open += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, hold: bool) -> None:
        try:
            while data := src.recv(65536):
                if (
                    hold
                    and data.startswith(b"PUT /v2/")
                    and b"/manifests/" in data.split(b"\r\n")[0]
                ):
                    self.held += 1
                    time.sleep(self.HOLD)  # the slow registry this relay stands for
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def stop(self) -> None:
        self.server.close()
        for conn in self.open:
            conn.close()


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Two registries on 127.0.0.1 (none and basic auth), stopped by process id, and a slow
    relay to the first."""
    _need("docker-registry", "htpasswd")
    folder = tmp_path_factory.mktemp("docker-registries")
    started: dict[str, Registry] = {}
    slow = None
    try:
        for auth in ("none", "basic"):
            started[auth] = _start_registry(folder / auth, auth)
        slow = SlowRegistry(started["none"].host)
        yield {**started, "slow": slow}
    finally:
        if slow is not None:
            slow.stop()
        for registry in started.values():
            stop_process(registry.proc)


@pytest.fixture(scope="module")
def daemon(registries: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Podman's Docker API service on a socket of ours, everything it keeps in a temp folder;
    DOCKER_HOST names it for the module. Builds run with chroot isolation (no namespaces
    here); the local registries are plain HTTP, as Docker treats 127.0.0.0/8."""
    if os.geteuid() != 0:
        pytest.skip("podman's service builds here as root (this project's CI runs as root)")
    _need("podman")
    docker = pytest.importorskip("docker")
    folder = tmp_path_factory.mktemp("podman")
    (folder / "tmp").mkdir()
    (folder / "storage.conf").write_text(
        f'[storage]\ndriver = "vfs"\ngraphroot = "{folder / "root"}"\n'
        f'runroot = "{folder / "runroot"}"\n'
    )
    (folder / "containers.conf").write_text(
        f'[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
        f'events_logfile_path = "{folder / "events.log"}"\ntmp_dir = "{folder / "libpod"}"\n'
    )
    (folder / "registries.conf").write_text(
        "".join(
            f'[[registry]]\nlocation = "{reg.host}"\ninsecure = true\n'
            for reg in registries.values()
        )
    )
    env = {
        **os.environ,
        "CONTAINERS_STORAGE_CONF": str(folder / "storage.conf"),
        "CONTAINERS_CONF": str(folder / "containers.conf"),
        "CONTAINERS_REGISTRIES_CONF": str(folder / "registries.conf"),
        "BUILDAH_ISOLATION": "chroot",
        "TMPDIR": str(folder / "tmp"),  # build contexts and push digests, else in /var/tmp
    }
    sock = folder / "podman.sock"
    log = folder / "service.log"  # a file, not a pipe nobody reads while the service runs
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["podman", "system", "service", "--time=0", f"unix://{sock}"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    host = f"unix://{sock}"

    def probe() -> None:  # a plain socket: the docker SDK's leaks one when refused
        with socket.socket(socket.AF_UNIX) as conn:
            conn.connect(str(sock))

    mp = pytest.MonkeyPatch()
    try:
        try:
            wait_until_up(proc, probe)
        except RuntimeError:
            raise RuntimeError(f"podman system service: {log.read_text()[-2000:]}") from None
        mp.setenv("DOCKER_HOST", host)
        client = docker.DockerClient(base_url=host, timeout=60)
        assert client.ping()
        yield client
        client.close()
    finally:
        mp.undo()
        stop_process(proc)


def _context(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Dockerfile").write_text(DOCKERFILE)
    (folder / "hello.txt").write_text(text)
    return folder


def _build(
    registry: Any, context: Path, tag: str, creds: Credentials | None, lines: list[str]
) -> dict[str, Any]:
    images = RegistryImages(lambda _: creds)
    return (
        build_registry()
        .call(
            "build_image",
            {
                "context": str(context),
                "image": f"{registry.host}/acme/shop:{tag}",
                "build_args": {"GREETING": f"hello from {tag}"},
                "commit_sha": REVISION,
                "source": SOURCE,
            },
            ToolContext(images=images, progress=lines.append),
        )
        .model_dump()
    )


@pytest.fixture(scope="module")
def pushed(daemon: Any, registries: dict[str, Registry], tmp_path_factory: pytest.TempPathFactory):
    lines: list[str] = []
    context = _context(tmp_path_factory.mktemp("docker-context"), "hello\n")
    out = _build(registries["none"], context, "1", None, lines)
    return out, lines


@pytest.mark.integration
def test_a_reachable_daemon_is_the_builder(daemon):
    builder = RegistryImages(lambda _: None).builder()
    assert isinstance(builder, DockerDaemon)
    assert builder.name == "docker"


@pytest.mark.integration
def test_build_and_push_through_the_daemon_report_the_registrys_digest(pushed, registries):
    out, lines = pushed
    assert out["builder"] == "docker"
    assert out["pushed"]
    assert out["digest"].startswith("sha256:")
    resolved = build_registry().call(
        "resolve_image",
        {"image": out["image"]},
        ToolContext(images=RegistryImages(lambda _: None)),
    )
    assert resolved.digest == out["digest"]
    assert out["pinned"] == f"{registries['none'].host}/acme/shop@{out['digest']}"
    # progress: ours, the daemon's build steps, and its push
    assert f"building {out['image']} with docker" in lines
    assert any(line.startswith("STEP ") and "COPY hello.txt" in line for line in lines)
    assert any(out["digest"] in line for line in lines)


@pytest.mark.integration
def test_the_oci_labels_and_build_args_are_on_the_pushed_image(pushed, daemon):
    out, _ = pushed
    want = {
        "org.opencontainers.image.revision": REVISION,
        "org.opencontainers.image.source": SOURCE,
        "greeting": "hello from 1",  # from the build argument
    }
    local = daemon.api.inspect_image(out["image"])["Config"]["Labels"]
    assert want.items() <= local.items()
    # and in the registry: the manifest the digest names, then its config blob
    repo = out["pinned"].split("@")[0]
    host, _, name = repo.partition("/")
    manifest = httpx.get(
        f"http://{host}/v2/{name}/manifests/{out['digest']}",
        headers={
            "Accept": "application/vnd.oci.image.manifest.v1+json, "
            "application/vnd.docker.distribution.manifest.v2+json"
        },
    )
    manifest.raise_for_status()
    config = httpx.get(f"http://{host}/v2/{name}/blobs/{manifest.json()['config']['digest']}")
    config.raise_for_status()
    assert want.items() <= json.loads(config.content)["config"]["Labels"].items()


@pytest.mark.integration
def test_a_push_with_basic_auth_reaches_the_registry(daemon, registries, tmp_path):
    lines: list[str] = []
    out = _build(
        registries["basic"], _context(tmp_path, "basic\n"), "2", Credentials(USER, PASSWORD), lines
    )
    resolved = RegistryImages(lambda _: Credentials(USER, PASSWORD)).resolve(out["image"])
    assert resolved.digest == out["digest"]


@pytest.mark.integration
def test_a_push_the_registry_refuses_names_the_registry_and_not_the_password(
    daemon, registries, tmp_path
):
    wrong = "wrong-password-xyz"
    host = registries["basic"].host
    with pytest.raises(IntegrationError) as caught:
        _build(registries["basic"], _context(tmp_path, "x\n"), "3", Credentials(USER, wrong), [])
    message = caught.value.message
    assert f"registry {host}" in message
    assert "refused" in message
    assert wrong not in message
    assert caught.value.service == "registry"


@pytest.mark.integration
def test_pushing_an_image_never_built_here_is_an_integration_error(daemon, registries):
    reference = f"{registries['none'].host}/acme/never-built:1"
    with pytest.raises(IntegrationError) as caught:
        RegistryImages(lambda _: None).push(reference)
    assert reference in caught.value.message


def test_no_daemon_at_docker_host_is_none_and_leaves_no_socket_open(tmp_path, monkeypatch):
    """The docker SDK leaves its socket unclosed when a unix socket refuses the connection;
    a machine without a daemon (buildah's case) asks that on every build."""
    pytest.importorskip("docker")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'docker.sock'}")
    gc.collect()  # what earlier tests left for the collector is not this call's
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert DockerDaemon.reachable(lambda _: None) is None
        gc.collect()
    sockets = [
        str(w.message)
        for w in seen
        if issubclass(w.category, ResourceWarning) and "socket" in str(w.message)
    ]
    assert sockets == []


@pytest.mark.integration
def test_a_push_the_registry_is_slow_to_accept_still_reports_its_digest(
    daemon, registries, tmp_path
):
    slow = registries["slow"]
    out = _build(slow, _context(tmp_path, "slow\n"), "4", None, [])
    assert slow.held  # the manifest's upload was held
    assert RegistryImages(lambda _: None).resolve(out["image"]).digest == out["digest"]
