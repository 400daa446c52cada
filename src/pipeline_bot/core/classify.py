"""What a path is: docs, a test, a migration, a manifest, a lockfile ... by name and location."""

from __future__ import annotations

import re
from enum import StrEnum
from functools import lru_cache

from pipeline_bot.core.globs import GlobClassifier, PathMatcher
from pipeline_bot.models import FileChange


class Kind(StrEnum):
    DOCS = "docs"
    TEST = "test"
    MIGRATION = "migration"
    KUBERNETES = "kubernetes-manifest"
    HELM = "helm-chart"
    TERRAFORM = "terraform"
    DOCKERFILE = "dockerfile"
    CI = "ci-workflow"
    DEPENDENCY = "dependency-manifest"
    LOCKFILE = "lockfile"
    REPO_META = "repo-meta"
    CODE = "code"
    OTHER = "other"


NOT_DEPLOYABLE = frozenset({Kind.DOCS, Kind.TEST, Kind.CI, Kind.REPO_META})

# First match wins, so the specific kinds come before the broad ones.
_KIND_GLOBS: tuple[tuple[Kind, tuple[str, ...]], ...] = (
    (
        Kind.CI,
        (
            ".github/workflows/**",
            ".github/actions/**",
            ".gitlab-ci.yml",
            ".circleci/**",
            "Jenkinsfile",
            "azure-pipelines.yml",
            ".buildkite/**",
            ".drone.yml",
        ),
    ),
    (
        Kind.LOCKFILE,
        (
            "package-lock.json",
            "npm-shrinkwrap.json",
            "yarn.lock",
            "pnpm-lock.yaml",
            "poetry.lock",
            "uv.lock",
            "Pipfile.lock",
            "pdm.lock",
            "go.sum",
            "Cargo.lock",
            "Gemfile.lock",
            "composer.lock",
            "mix.lock",
            "packages.lock.json",
        ),
    ),
    (
        Kind.DEPENDENCY,
        (
            "package.json",
            "requirements*.txt",
            "requirements/*.txt",
            "pyproject.toml",
            "setup.py",
            "setup.cfg",
            "Pipfile",
            "go.mod",
            "Cargo.toml",
            "Gemfile",
            "*.gemspec",
            "pom.xml",
            "build.gradle",
            "build.gradle.kts",
            "composer.json",
            "*.csproj",
            "mix.exs",
            "deno.json",
        ),
    ),
    (
        Kind.MIGRATION,
        (
            "**/migrations/**",
            "**/migration/**",
            "**/migrate/**",
            "**/alembic/versions/**",
            "**/flyway/**",
            "**/liquibase/**",
            "*.sql",
        ),
    ),
    (
        Kind.TEST,
        (
            "**/tests/**",
            "**/test/**",
            "**/__tests__/**",
            "**/spec/**",
            "**/specs/**",
            "**/testdata/**",
            "**/e2e/**",
            "test_*.py",
            "*_test.py",
            "conftest.py",
            "*_test.go",
            "*.test.[jt]s",
            "*.test.[jt]sx",
            "*.spec.[jt]s",
            "*.spec.[jt]sx",
            "*Test.java",
            "*Tests.java",
            "*Test.kt",
            "*Tests.cs",
            "*_spec.rb",
            "*_test.rb",
        ),
    ),
    (Kind.HELM, ("Chart.yaml", "**/charts/**", "**/helm/**", "values*.yaml", ".helmignore")),
    (
        Kind.TERRAFORM,
        ("*.tf", "*.tfvars", "*.tf.json", "*.tfvars.json", "terragrunt.hcl", ".terraform.lock.hcl"),
    ),
    (
        Kind.DOCKERFILE,
        (
            "Dockerfile",
            "Dockerfile.*",
            "*.Dockerfile",
            "*.dockerfile",
            "Containerfile",
            "docker-compose*.yml",
            "docker-compose*.yaml",
            "compose.yml",
            "compose.yaml",
            ".dockerignore",
        ),
    ),
    (
        Kind.KUBERNETES,
        (
            "**/k8s/**",
            "**/kubernetes/**",
            "**/manifests/**",
            "**/kustomize/**",
            "kustomization.yaml",
            "kustomization.yml",
            "skaffold.yaml",
        ),
    ),
    (
        Kind.DOCS,
        (
            "**/docs/**",
            "**/doc/**",
            "*.md",
            "*.markdown",
            "*.rst",
            "*.adoc",
            "*.txt",
            "LICENSE*",
            "COPYING*",
            "NOTICE*",
            "AUTHORS*",
            "CHANGELOG*",
            "CHANGES*",
            "mkdocs.yml",
            ".readthedocs.y*ml",
        ),
    ),
    (
        Kind.REPO_META,
        (
            ".gitignore",
            ".gitattributes",
            ".editorconfig",
            "CODEOWNERS",
            ".github/ISSUE_TEMPLATE/**",
            ".github/PULL_REQUEST_TEMPLATE*",
            ".github/dependabot.yml",
            ".github/FUNDING.yml",
            ".pre-commit-config.yaml",
            ".vscode/**",
            ".idea/**",
        ),
    ),
)
_TESTS = PathMatcher(dict(_KIND_GLOBS)[Kind.TEST])
_DOCS = PathMatcher(dict(_KIND_GLOBS)[Kind.DOCS])
_KINDS = GlobClassifier((kind.value, globs) for kind, globs in _KIND_GLOBS)

_CODE_SUFFIXES = frozenset(
    [
        "py",
        "pyi",
        "go",
        "js",
        "mjs",
        "cjs",
        "ts",
        "tsx",
        "jsx",
        "java",
        "kt",
        "kts",
        "scala",
        "rb",
        "rs",
        "c",
        "cc",
        "cpp",
        "cxx",
        "h",
        "hpp",
        "cs",
        "php",
        "swift",
        "m",
        "mm",
        "ex",
        "exs",
        "erl",
        "clj",
        "fs",
        "vb",
        "lua",
        "pl",
        "r",
        "dart",
        "sh",
        "bash",
        "zsh",
        "ps1",
        "groovy",
        "sql",
        "vue",
        "svelte",
    ]
)
_KUBE_KINDS = frozenset(
    [
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "ReplicaSet",
        "Pod",
        "Service",
        "Ingress",
        "ConfigMap",
        "Secret",
        "Job",
        "CronJob",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ClusterRole",
        "ClusterRoleBinding",
        "Namespace",
        "PersistentVolumeClaim",
        "Kustomization",
        "Rollout",
        "CustomResourceDefinition",
        "Gateway",
        "HTTPRoute",
    ]
)
_AUTH = re.compile(
    r"(?:^|[/_.-])(?:auth|authn|authz|authenticat\w*|authori[sz]\w*|oauth2?|oidc|saml|sso|jwt|"
    r"security|crypto|cryptography|encryption|permissions?|login|logout|signin|signup|"
    r"sessions?|passwords?|rbac|iam|acl|credentials?|csrf|secrets?)(?:[/_.-]|$)",
    re.IGNORECASE,
)
# a word each of _AUTH's alternatives holds (lower case)
_AUTH_WORDS = re.compile(
    r"auth|oidc|saml|sso|jwt|security|crypto|encryption|permission|login|logout|signin|signup|"
    r"session|password|rbac|iam|acl|credential|csrf|secret"
)
_KEY_FILE = PathMatcher(
    (
        "*.pem",
        "*.key",
        "*.p12",
        "*.pfx",
        "id_rsa",
        "id_ecdsa",
        "id_ed25519",
        "*.jks",
        ".env",
        ".env.*",
    )
)


# A folder name says what a file is only for files that can be of that kind: Go code in `k8s/` or
# `charts/` is code, not a manifest or a chart.
_FOLDER_KIND_SUFFIXES = {
    Kind.KUBERNETES: frozenset({"yaml", "yml", "json", "jsonnet", "libsonnet", "cue"}),
    Kind.HELM: frozenset({"yaml", "yml", "tpl", "json", "txt", ""}),
}


# files that live in a migrations folder without being a migration (the path still counts them
# as one for the risk model's features, which were learned that way)
_NOT_MIGRATIONS = frozenset({".keep", ".gitkeep", ".gitignore", "__init__.py", "README"})
GITLINK = "160000"  # git's mode of a submodule entry: a commit of another repository


def kind_of(change: FileChange) -> Kind:
    """The one kind a changed file counts as; content signals refine what the path says. A
    submodule moved to another commit is a dependency change: its two-line patch ("Subproject
    commit ...") stands for all that changed in the other repository."""
    if GITLINK in (change.new_mode, change.old_mode):
        return Kind.DEPENDENCY
    kind = kind_of_path(change.path)
    if kind is Kind.MIGRATION and change.path.rsplit("/", 1)[-1] in _NOT_MIGRATIONS:
        return Kind.OTHER  # a migrations folder's keep file or package marker runs nothing
    if (
        kind is Kind.OTHER
        and change.path.endswith((".yaml", ".yml", ".json"))
        and _KUBE_KINDS.intersection(change.signals.kube_kinds)
    ):
        return Kind.KUBERNETES
    return kind


@lru_cache(maxsize=1 << 16)
def kind_of_path(path: str) -> Kind:
    """The kind a path says a file is, without looking at its content. Remembered: the rules,
    the model's features and the history replay each ask for the same paths."""
    label = _KINDS.classify(path)
    if label is not None:
        kind = Kind(label)
        if kind is Kind.MIGRATION and path.endswith((".md", ".txt")):
            return Kind.DOCS
        allowed = _FOLDER_KIND_SUFFIXES.get(kind)
        if allowed is None or suffix(path) in allowed or _named_file(kind, path):
            return kind
        if _DOCS(path):
            return Kind.DOCS
    if suffix(path) in _CODE_SUFFIXES:
        return Kind.CODE
    return Kind.OTHER


def _named_file(kind: Kind, path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return kind is Kind.HELM and name in ("Chart.yaml", ".helmignore")


def is_test_code(path: str) -> bool:
    """A test path holding code: where test definitions can be written (not a test's data,
    logs or snapshots)."""
    return suffix(path) in _CODE_SUFFIXES and _TESTS(path)


def suffix(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[-1].lower() if "." in name.lstrip(".") else ""


def is_auth_sensitive(path: str) -> bool:
    # _AUTH is tried at every offset; most paths hold none of its words, which one search of
    # the lower-cased path (the same as IGNORECASE for ASCII) rules out about six times faster
    if path.isascii() and _AUTH_WORDS.search(path.lower()) is None:
        return False
    return bool(_AUTH.search(path))


def is_key_file(path: str) -> bool:
    return _KEY_FILE(path)
