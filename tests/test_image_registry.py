"""Images end to end on this machine: buildah builds an image from scratch, pushes it to Debian's
docker-registry on 127.0.0.1 (no auth, htpasswd basic auth, and bearer tokens from a token
service double of ours that the registry verifies), the registry client resolves its digest, and
a deploy to the Kubernetes API test server runs it by digest and rolls back to the previous one.
A missing tag fails before anything is applied."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import shutil
import subprocess
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from pipeline_bot.errors import ImageError, IntegrationError
from pipeline_bot.integrations.images import Credentials, RegistryImages
from pipeline_bot.tools import ToolContext, build_registry
from tests.conftest import stop_process, wait_until_up
from tests.kube_control_plane import free_port

pytestmark = pytest.mark.integration

USER, PASSWORD = "alice", "s3cret-for-tests"


@pytest.fixture(autouse=True)
def _buildahs_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """This module is buildah's path: on a machine where a Docker daemon answers (a GitHub-hosted
    runner), the default rule would pick the daemon (tests/test_image_docker.py covers it), so
    the daemon is pointed at a socket nothing listens on."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'no-docker-here.sock'}")


def _need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        message = (
            f"{', '.join(missing)} missing: `apt-get install -y buildah docker-registry "
            "apache2-utils` (scripts/test does)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


class TokenServiceDouble:
    """A test double of a registry's token service (as GHCR's and Docker Hub's): answers
    GET /token?service=&scope= with a JWT signed by a key whose certificate the registry trusts,
    granting the scope's actions to alice with her password, and nothing to anyone else."""

    def __init__(self, folder: Path, service: str) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.service = service
        self.issuer = "token-service-double"
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.issuer)])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.cert_file = folder / "token-cert.pem"
        self.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        self.requests: list[dict[str, Any]] = []
        double = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = parse_qs(urlparse(self.path).query)
                auth = self.headers.get("Authorization", "")
                user = None
                if auth.startswith("Basic "):
                    name, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
                    if (name, pw) != (USER, PASSWORD):
                        self._answer(401, {"details": "incorrect username or password"})
                        return
                    user = name
                scopes = query.get("scope", [])
                double.requests.append({"user": user, "scope": scopes, "service": query})
                self._answer(200, {"token": double.token(user, scopes)})

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def token(self, user: str | None, scopes: list[str]) -> str:
        import jwt

        access = []
        for scope in scopes if user else []:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(dt.datetime.now(dt.UTC).timestamp())
        claims = {
            "iss": self.issuer,
            "sub": user or "",
            "aud": self.service,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"x5c": [self.x5c]})

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Registry:
    def __init__(self, host: str, proc: subprocess.Popen[bytes]) -> None:
        self.host = host
        self.proc = proc


def _start_registry(folder: Path, auth: str, token: TokenServiceDouble | None = None) -> Registry:
    folder.mkdir(parents=True)
    port = free_port()
    lines = [
        "version: 0.1",
        "log: {level: warn}",
        f"storage: {{filesystem: {{rootdirectory: {folder / 'data'}}}, delete: {{enabled: true}}}}",
        f"http: {{addr: '127.0.0.1:{port}', secret: {uuid.uuid4().hex}}}",
    ]
    if auth == "basic":
        htpasswd = subprocess.run(
            ["htpasswd", "-Bbn", USER, PASSWORD], capture_output=True, text=True, check=True
        ).stdout
        (folder / "htpasswd").write_text(htpasswd)
        lines.append(f"auth: {{htpasswd: {{realm: test, path: {folder / 'htpasswd'}}}}}")
    elif auth == "token":
        assert token is not None
        lines.append(
            f"auth: {{token: {{realm: '{token.realm}', service: {token.service}, "
            f"issuer: {token.issuer}, rootcertbundle: {token.cert_file}}}}}"
        )
    (folder / "config.yml").write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(folder / "config.yml")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    def probe() -> None:
        import socket

        socket.create_connection(("127.0.0.1", port), timeout=2).close()

    wait_until_up(proc, probe)
    return Registry(f"127.0.0.1:{port}", proc)


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Three registries on 127.0.0.1 (none, basic, token auth), stopped by process id."""
    _need("docker-registry", "htpasswd")
    folder = tmp_path_factory.mktemp("registries")
    token = TokenServiceDouble(folder, "test-registry")
    started: dict[str, Registry] = {}
    try:
        for auth in ("none", "basic", "token"):
            started[auth] = _start_registry(folder / auth, auth, token)
        yield started, token
    finally:
        for registry in started.values():
            stop_process(registry.proc)
        token.stop()


@pytest.fixture(scope="module")
def buildah_storage(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """buildah's storage in a folder of the tests' own (vfs: no overlay mounts needed)."""
    if os.geteuid() != 0:
        pytest.skip("buildah builds here as root (this project's CI runs as root)")
    _need("buildah")
    folder = tmp_path_factory.mktemp("buildah")
    conf = folder / "storage.conf"
    conf.write_text(
        f'[storage]\ndriver = "vfs"\ngraphroot = "{folder / "root"}"\n'
        f'runroot = "{folder / "runroot"}"\n'
    )
    mp = pytest.MonkeyPatch()
    mp.setenv("CONTAINERS_STORAGE_CONF", str(conf))
    yield folder
    mp.undo()


def _context(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Dockerfile").write_text("FROM scratch\nCOPY hello.txt /hello.txt\n")
    (folder / "hello.txt").write_text(text)
    return folder


def _creds(registry: str) -> Credentials | None:
    return Credentials(USER, PASSWORD)


def _ctx(creds: bool = True, progress: list[str] | None = None) -> ToolContext:
    images = RegistryImages(_creds if creds else lambda _: None)
    return ToolContext(images=images, progress=progress.append if progress is not None else None)


@pytest.fixture(scope="module")
def pushed(registries: Any, buildah_storage: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Two versions of one image built from scratch and pushed to each registry by build_image
    (buildah answers each registry's auth itself)."""
    regs, _ = registries
    work = tmp_path_factory.mktemp("contexts")
    tools = build_registry()
    out: dict[tuple[str, str], dict[str, Any]] = {}
    lines: list[str] = []
    for version in ("1", "2"):
        context = _context(work / version, f"hello {version}\n")
        for auth, reg in regs.items():
            out[auth, version] = tools.call(
                "build_image",
                {
                    "context": str(context),
                    "image": f"{reg.host}/acme/shop:{version}",
                    "commit_sha": "c0ffee" + version,
                    "source": "https://github.com/acme/shop",
                },
                _ctx(progress=lines),
            ).model_dump()
    return out, lines


def test_build_image_pushes_and_reports_the_digest_with_oci_labels(pushed, buildah_storage):
    out, lines = pushed
    one = out["none", "1"]
    assert one["pushed"]
    assert one["builder"] == "buildah"
    assert one["digest"].startswith("sha256:")
    assert one["pinned"].endswith("@" + one["digest"])
    assert one["labels"]["org.opencontainers.image.revision"] == "c0ffee1"
    assert out["none", "1"]["digest"] != out["none", "2"]["digest"]
    assert any(line.startswith("building ") for line in lines)  # progress came through
    inspect = subprocess.run(
        ["buildah", "inspect", "--type", "image", one["image"]],
        capture_output=True,
        text=True,
        check=True,
    )
    labels = json.loads(inspect.stdout)["OCIv1"]["config"]["Labels"]
    assert labels["org.opencontainers.image.source"] == "https://github.com/acme/shop"


@pytest.mark.parametrize("auth", ["none", "basic", "token"])
def test_a_tag_resolves_to_the_digest_that_was_pushed(pushed, registries, auth):
    out, _ = pushed
    regs, token = registries
    resolved = build_registry().call(
        "resolve_image", {"image": f"{regs[auth].host}/acme/shop:2"}, _ctx()
    )
    assert resolved.digest == out[auth, "2"]["digest"]
    assert resolved.media_type.startswith("application/vnd.oci.image.manifest")
    if auth == "token":
        assert any(
            r["user"] == USER and r["scope"] == ["repository:acme/shop:pull"]
            for r in token.requests
        )


@pytest.mark.parametrize("auth", ["basic", "token"])
def test_a_registry_that_refuses_an_anonymous_pull_is_an_integration_error(registries, auth):
    regs, _ = registries
    images = RegistryImages(lambda _: None)
    with pytest.raises(IntegrationError) as caught:
        images.resolve(f"{regs[auth].host}/acme/shop:1")
    assert "no credentials are configured" in caught.value.message
    assert caught.value.status == 401


def test_wrong_credentials_are_refused_and_the_password_is_never_said(registries):
    regs, _ = registries
    images = RegistryImages(lambda _: Credentials(USER, "wrong-password-xyz"))
    for auth in ("basic", "token"):
        with pytest.raises(IntegrationError) as caught:
            images.resolve(f"{regs[auth].host}/acme/shop:1")
        assert "wrong-password-xyz" not in caught.value.message


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ("acme/shop:9", "'9' is not in"),
        ("acme/nothing:1", "repository"),
    ],
)
def test_a_missing_tag_or_repository_is_an_image_error(pushed, registries, image, message):
    regs, _ = registries
    with pytest.raises(ImageError) as caught:
        RegistryImages(_creds).resolve(f"{regs['basic'].host}/{image}")
    assert message in caught.value.message


def test_an_unreachable_registry_is_an_integration_error():
    with pytest.raises(IntegrationError) as caught:
        RegistryImages(lambda _: None).resolve(f"127.0.0.1:{free_port()}/acme/shop:1")
    assert "cannot be reached" in caught.value.message


# ------------------------------------------------------------------ deploy by digest


def _deployment(kube_api, namespace: str) -> dict[str, Any] | None:
    import urllib.error
    import urllib.request

    url = f"{kube_api.url}/apis/apps/v1/namespaces/{namespace}/deployments/shop"
    req = urllib.request.Request(url, headers={"Authorization": "Bearer test-server-token"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def _deploy(cli, repo, image, *args):
    return cli(
        "deploy", "--repo", str(repo.root), "-e", "production", "--image", image,
        "--strategy", "rolling", "--timeout", "30s", "--format", "json", *args,
    )  # fmt: skip


@pytest.fixture
def by_digest(deploy_env, registries, monkeypatch):
    regs, _ = registries
    monkeypatch.setenv("PIPELINE_BOT_PIN_DIGEST", "true")
    monkeypatch.setenv("PIPELINE_BOT_REGISTRY_USERNAME", USER)
    monkeypatch.setenv("PIPELINE_BOT_REGISTRY_PASSWORD", PASSWORD)
    monkeypatch.setenv("DOCKER_CONFIG", str(deploy_env.root / "no-docker-config"))
    return deploy_env, regs["token"].host


def test_a_deploy_runs_the_digest_keeps_the_tag_and_rolls_back_to_the_previous_digest(
    cli, by_digest, pushed, kube_api, namespace
):
    repo, host = by_digest
    out, _ = pushed
    one, two = out["token", "1"]["digest"], out["token", "2"]["digest"]
    for version in ("1", "2"):
        result = _deploy(cli, repo, f"{host}/acme/shop:{version}")
        assert result.exit_code == 0, result.stderr
    data = result.json()
    assert data["image"] == f"{host}/acme/shop@{two}"
    deployment = _deployment(kube_api, namespace)
    template = deployment["spec"]["template"]
    assert template["spec"]["containers"][0]["image"] == f"{host}/acme/shop@{two}"
    assert template["metadata"]["annotations"]["pipeline-bot.dev/image-tag"] == "2"
    assert deployment["metadata"]["annotations"]["pipeline-bot.dev/image-tag"] == "2"
    status = cli("status", "--repo", str(repo.root), "-e", "production", "--format", "json")
    assert status.exit_code == 0, status.stderr
    assert two in status.stdout  # the deploy record keeps the digest
    back = cli("rollback", "--repo", str(repo.root), "-e", "production")
    assert back.exit_code == 0, back.stderr
    assert f"rolled back to {host}/acme/shop@{one}" in back.stdout
    deployment = _deployment(kube_api, namespace)
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(one)


def test_a_missing_tag_fails_before_anything_is_applied(
    cli, by_digest, pushed, kube_api, namespace
):
    repo, host = by_digest
    result = _deploy(cli, repo, f"{host}/acme/shop:404")
    assert result.exit_code == 2, result.stderr
    assert "'404' is not in" in result.stderr
    assert _deployment(kube_api, namespace) is None


def test_an_unreachable_registry_fails_the_deploy_with_exit_4_before_any_apply(
    cli, by_digest, kube_api, namespace
):
    repo, _ = by_digest
    result = _deploy(cli, repo, f"127.0.0.1:{free_port()}/acme/shop:1")
    assert result.exit_code == 4, result.stderr
    assert _deployment(kube_api, namespace) is None


def test_no_digest_deploys_the_tag_as_given(cli, by_digest, pushed, kube_api, namespace):
    repo, host = by_digest
    result = _deploy(cli, repo, f"{host}/acme/shop:1", "--no-digest")
    assert result.exit_code == 0, result.stderr
    assert result.json()["image"] == f"{host}/acme/shop:1"


# ------------------------------------------------------------------ the command line


def test_image_resolve_prints_the_digest_and_exits_2_for_a_missing_tag(
    cli, pushed, registries, monkeypatch, tmp_path
):
    out, _ = pushed
    regs, _ = registries
    monkeypatch.setenv("PIPELINE_BOT_REGISTRY_USERNAME", USER)
    monkeypatch.setenv("PIPELINE_BOT_REGISTRY_PASSWORD", PASSWORD)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    host = regs["basic"].host
    found = cli("image", "resolve", f"{host}/acme/shop:1")
    assert found.exit_code == 0, found.stderr
    assert found.stdout.startswith(f"{host}/acme/shop@{out['basic', '1']['digest']}")
    missing = cli("image", "resolve", f"{host}/acme/shop:7")
    assert missing.exit_code == 2
    assert "'7' is not in" in missing.stderr
    assert "tags there: 1, 2" in missing.stderr
    assert PASSWORD not in found.stdout + found.stderr + missing.stderr


def test_image_build_without_push_then_push_from_the_command_line(
    cli, registries, buildah_storage, tmp_path
):
    regs, _ = registries
    image = f"{regs['none'].host}/acme/cli:1"
    context = _context(tmp_path / "ctx", "from the command line\n")
    built = cli("image", "build", str(context), "-t", image, "--no-push", "--commit", "abc123")
    assert built.exit_code == 0, built.stderr
    assert built.stdout.strip() == f"built {image} (not pushed) (buildah)"
    assert cli("image", "resolve", image).exit_code == 2  # nothing pushed yet
    pushed = cli("image", "push", image, "--format", "json")
    assert pushed.exit_code == 0, pushed.stderr
    digest = pushed.json()["digest"]
    assert cli("image", "resolve", image).stdout.startswith(f"{image.rsplit(':', 1)[0]}@{digest}")


# ------------------------------------------------------------------ the Action


def test_the_action_builds_pushes_and_deploys_by_digest(
    base_repo, tmp_path, kube_api, namespace, registries, buildah_storage
):
    from tests.test_action import _run

    regs, _ = registries
    host = regs["token"].host
    base_repo.commit(
        "app and config",
        {
            ".github/pipeline-bot.yml": (
                f"version: 1\nenvironments:\n  - {{name: staging, namespace: {namespace}}}\n"
            ),
            "app/Dockerfile": "FROM scratch\nCOPY hello.txt /hello.txt\n",
            "app/hello.txt": "built by the Action\n",
        },
    )
    kubeconfig = kube_api.kubeconfig(tmp_path / "kc", namespace).read_text()
    proc, outputs, summary = _run(
        base_repo,
        tmp_path,
        "workflow_dispatch",
        {},
        COMMAND="deploy",
        ENVIRONMENT="staging",
        APP="shop",
        IMAGE=f"{host}/acme/action:1",
        BUILD="app",
        **{"PIN-DIGEST": "true", "REGISTRY-USERNAME": USER, "REGISTRY-PASSWORD": PASSWORD},
        STRATEGY="rolling",
        KUBECONFIG=kubeconfig,
        TIMEOUT="30",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert outputs["status"] == "succeeded"
    digest = RegistryImages(_creds).resolve(f"{host}/acme/action:1").digest
    assert f"pushed: `{host}/acme/action@{digest}`" in summary
    deployment = _deployment(kube_api, namespace)
    assert deployment is not None
    template = deployment["spec"]["template"]
    assert template["spec"]["containers"][0]["image"] == f"{host}/acme/action@{digest}"
    assert template["metadata"]["annotations"]["pipeline-bot.dev/image-tag"] == "1"
    printed = [line for line in proc.stdout.splitlines() if not line.startswith("::add-mask::")]
    assert not any(PASSWORD in line for line in printed)


def test_a_plan_with_one_missing_tag_applies_nothing(cli, by_digest, pushed, kube_api, namespace):
    repo, host = by_digest
    repo.commit(
        "two services",
        {
            ".github/pipeline-bot.yml": (
                "version: 1\nenvironments:\n"
                f"  - {{name: production, namespace: {namespace}}}\n"
                "services:\n"
                f"  - {{name: shop, paths: ['src/**'], image: {host}/acme/shop}}\n"
                f"  - {{name: cart, paths: ['cart/**'], image: {host}/acme/cart}}\n"
            )
        },
    )
    result = cli(
        "deploy", "--repo", str(repo.root), "-e", "production", "--image", "1", "--plan",
        "--strategy", "rolling", "--timeout", "30s",
    )  # fmt: skip
    assert result.exit_code == 2, result.stdout + result.stderr
    assert f"repository {host}/acme/cart does not exist" in result.stderr
    assert _deployment(kube_api, namespace) is None  # shop, whose image exists, was not applied


# ------------------------------------------------------------------ the App


def test_the_app_deploys_a_push_by_digest_and_names_tag_and_digest_in_the_deployment(
    tmp_path, registries, buildah_storage, kube_api, namespace
):
    import respx
    from fastapi.testclient import TestClient

    from pipeline_bot.app.context import AppServices
    from pipeline_bot.app.server import create_app
    from pipeline_bot.integrations.deliveries import DeliveryStore
    from pipeline_bot.integrations.github_app import GitHubApp
    from pipeline_bot.integrations.kubernetes import KubernetesCluster
    from pipeline_bot.integrations.store import SqlStore
    from tests.app_harness import API, API_TOKEN, HEAD, SECRET, Harness, config, private_key
    from tests.conftest import github_examples, webhook_example
    from tests.fakes.github_api import GitHubApiDouble

    regs, _ = registries
    host = regs["token"].host
    context = _context(tmp_path / "ctx", "pushed for the App\n")
    built = build_registry().call(
        "build_image", {"context": str(context), "image": f"{host}/acme/shop:{HEAD}"}, _ctx()
    )
    gh = GitHubApiDouble(github_examples())
    gh.config = config(namespace).replace("registry.local/shop", f"{host}/acme/shop")
    kubeconfig = kube_api.kubeconfig(tmp_path / "kubeconfig", namespace)
    url = f"sqlite:///{tmp_path / 'app.db'}"
    services = AppServices(
        deliveries=DeliveryStore(url),
        github=GitHubApp("1", private_key(), api_url=API),
        store=SqlStore(url),
        cluster=lambda env: KubernetesCluster.connect(kubeconfig=str(kubeconfig)),
        images=RegistryImages(_creds),
    )
    application = create_app(services, SECRET, api_token=API_TOKEN, mcp=False, start_worker=False)
    with respx.mock(assert_all_called=False) as mock:
        mock.route(url__startswith=API).mock(side_effect=gh.respx_side_effect)
        mock.route(host="127.0.0.1").pass_through()  # the registry and its token service
        with TestClient(application) as client:
            app = Harness(client, services, gh)
            payload = webhook_example("push")
            payload.update(ref="refs/heads/master", before="b" * 40, after=HEAD, deleted=False)
            app.deliver("push", payload, "push-1")
            app.work()
    created = gh.made("POST", r"/deployments$")
    assert len(created) == 1
    assert created[0].body["payload"]["tag"] == HEAD
    assert created[0].body["payload"]["digest"] == built.digest
    deployment = _deployment(kube_api, namespace)
    assert deployment is not None
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"{host}/acme/shop@{built.digest}"
