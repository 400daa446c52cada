"""scripts/kube-control-plane's pure parts: the module pins, the cache key, the failure stages."""

from __future__ import annotations

import os
import re
import shutil

import pytest

from tests import kube_control_plane as kcp


def test_every_staging_module_is_pinned_to_the_release_of_kubernetes():
    text = (kcp.MODULES / "controlplane" / "go.mod").read_text()
    release = kcp.versions()["kubernetes"]
    minor = "v0." + release.removeprefix("v").split(".", 1)[1]
    pins = re.findall(r"^\s*(k8s\.io/[\w.-]+) => (k8s\.io/[\w.-]+) (v\S+)$", text, re.M)
    assert len(pins) > 25
    assert all(a == b and v == minor for a, b, v in pins), pins
    for name in ("api", "apiserver", "client-go", "apimachinery", "kube-scheduler"):
        assert f"k8s.io/{name}" in {a for a, _, _ in pins}
    assert "=> ./" not in text  # no upstream source, no local paths


def test_the_cache_key_names_the_versions():
    if shutil.which("go") is None and os.environ.get("CI") != "true":
        pytest.skip("go is missing: install Go 1.26 (scripts/kube-control-plane builds with it)")
    key = kcp.cache_key()
    v = kcp.versions()
    assert key.startswith(f"k8s-{v['kubernetes']}-etcd-{v['etcd']}-kwok-{v['kwok']}-go")
    assert kcp.bin_dir().parent.name == key


def test_cache_root_is_overridable(monkeypatch, tmp_path):
    monkeypatch.setenv("PIPELINE_BOT_KUBE_CACHE", str(tmp_path))
    assert kcp.cache_root() == tmp_path
    monkeypatch.delenv("PIPELINE_BOT_KUBE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert kcp.cache_root() == tmp_path / "xdg" / "pipeline-bot" / "kube"


def test_go_names_a_major_version_binary_by_the_element_before():
    assert kcp._go_output_name("go.etcd.io/etcd/server/v3") == "server"
    assert kcp._go_output_name("k8s.io/kubernetes/cmd/kube-apiserver") == "kube-apiserver"


def test_image_patterns_are_anchored_re2():
    assert kcp.glob_regex("registry.local/shop:*") == r"^registry\.local\/shop\:.*$"
    rx = re.compile(kcp.glob_regex("shop:broken-?"))
    assert rx.match("shop:broken-1")
    assert not rx.match("shop:broken-12")
    assert not rx.match("xshop:broken-1")


def test_failure_stages_win_over_the_normal_life_of_a_pod():
    normal = {s["metadata"]["name"]: s for s in kcp.pod_stages(200)}
    assert normal["pod-ready"]["spec"]["delay"] == {"durationMilliseconds": 200}
    for reason in (
        "ImagePullBackOff",
        "ErrImagePull",
        "CrashLoopBackOff",
        "Unready",
        "SlowStart:2",
    ):
        stage = kcp.failure_stage("shop:*", reason)
        assert stage["spec"]["weight"] > 1000 * normal["pod-create"]["spec"]["weight"]
        keys = [m["key"] for m in stage["spec"]["selector"]["matchExpressions"]]
        assert ".status.podIP" in keys
        assert any("test(" in k for k in keys)
    assert (
        kcp.failure_stage("a", "Unready")["metadata"]["name"]
        != kcp.failure_stage("a", "CrashLoopBackOff")["metadata"]["name"]
    )


def test_kubectl_1_33_pins_every_k8s_module_to_one_release():
    text = (kcp.MODULES / "kubectl-1.33" / "go.mod").read_text()
    staging = dict(
        re.findall(r"^\s*(k8s\.io/[\w.-]+) (v0\.\d+\.\d+)(?: // indirect)?$", text, re.M)
    )
    for name in ("api", "apimachinery", "client-go", "cli-runtime", "component-base", "kubectl"):
        assert f"k8s.io/{name}" in staging, staging
    assert set(staging.values()) == {kcp.versions()["kubectl-1.33"]}
    assert kcp.versions()["kubectl-1.33"].startswith("v0.33.")
    assert "replace" not in text  # no local paths, no upstream source


def test_kubectl_1_33_is_cached_apart_and_reports_its_release():
    assert "kubectl-1.33" in kcp.APART
    assert kcp.release_of("v0.33.13") == "v1.33.13"
    flags = kcp.component_base_ldflags("v1.33.13").split()
    assert "k8s.io/component-base/version.gitVersion=v1.33.13" in flags
    assert "k8s.io/component-base/version.gitMinor=33" in flags
    with pytest.raises(kcp.ControlPlaneError):
        kcp.release_of("v1.37.2")


def test_a_missing_client_does_not_keep_the_control_plane_from_starting(monkeypatch, tmp_path):
    if shutil.which("go") is None and os.environ.get("CI") != "true":
        pytest.skip("go is missing: install Go 1.26 (scripts/kube-control-plane builds with it)")
    monkeypatch.setenv("PIPELINE_BOT_KUBE_CACHE", str(tmp_path))
    missing = kcp.missing_binaries()
    assert "kube-apiserver" in missing
    assert "kubectl-1.33" not in missing
    assert kcp.kubectl_skewed().parent.parent.name.startswith("kubectl-1.33-v0.33.")
