"""deploy/: the Kubernetes manifests against the Kubernetes schema (kubernetes-validate), what the
scan Job must say, the Dockerfile's base and packages, the Ansible playbook's syntax. (The playbook
itself runs in tests/integration/test_distributed.py.)"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.conftest import ROOT, VENV_BIN
from zbanner_xdp import privdrop

K8S = ROOT / "deploy" / "k8s"
K8S_VERSION = "1.30"  # backoffLimitPerIndex (used by the scan Job) is beta, on by default, from 1.29


def _docs(name: str) -> list[dict]:
    return list(yaml.safe_load_all((K8S / name).read_text()))


@pytest.mark.parametrize("name", sorted(p.name for p in K8S.glob("*.yaml")))
def test_manifests_validate_against_the_kubernetes_schema(name: str) -> None:
    for doc in _docs(name):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_validation_is_real() -> None:
    job = _docs("scan-job.yaml")[0]
    job["spec"]["template"]["spec"]["hostNetwrok"] = True  # a typo strict validation must catch
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    job = _docs("scan-job.yaml")[0]
    job["spec"]["completions"] = "four"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, K8S_VERSION, strict=True)


def test_scan_job_is_an_indexed_job_of_shards() -> None:
    job = _docs("scan-job.yaml")[0]
    spec = job["spec"]
    pod = spec["template"]["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"]
    script = pod["containers"][0]["args"][0]
    shards = int(re.search(r"--shards (\d+)", script).group(1))  # type: ignore[union-attr]
    assert shards == spec["completions"]
    assert "--shard $JOB_COMPLETION_INDEX" in script and "--seed " in script
    assert "--checkpoint" in script and "zbanner-xdp resume" in script
    subprocess.run(["sh", "-n", "-c", script], check=True)  # the script parses
    assert pod["hostNetwork"] is True
    sc = pod["containers"][0]["securityContext"]
    assert sc["privileged"] is False and sc["capabilities"]["drop"] == ["ALL"]
    # The same list as the scanner's own (privdrop.py), which the lab tests try.
    assert sc["capabilities"]["add"] == privdrop.container_caps()
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env["ZBANNER_CACHE_DIR"].startswith("/var/cache/zbanner-xdp/")  # not the 0777 emptyDir itself
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert "/results" in mounts and mounts["/lib/modules"]["readOnly"]
    vols = {v["name"]: v for v in pod["volumes"]}
    assert (
        vols["results"]["persistentVolumeClaim"]["claimName"]
        == _docs("results-pvc.yaml")[0]["metadata"]["name"]
    )
    anti = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert anti["topologyKey"] == "kubernetes.io/hostname"


def test_merge_job_merges_the_shards_volume() -> None:
    job = _docs("merge-job.yaml")[0]
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["args"][:2] == ["merge", "/results/shards"] and "-o" in c["args"]
    assert "hostNetwork" not in job["spec"]["template"]["spec"]
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_dockerfile_debian12_bcc_from_debian_and_the_project() -> None:
    text = (K8S / "Dockerfile").read_text()
    assert re.search(r"^FROM debian:12", text, re.M)
    assert "python3-bpfcc" in text and "--system-site-packages" in text
    assert "pip install --no-cache-dir /src" in text
    assert not re.search(r"pip install[^\n]*\bbcc\b", text)  # never PyPI's unrelated bcc


def test_playbook_syntax(tmp_path: Path) -> None:
    inv = tmp_path / "inventory.ini"
    inv.write_text("[scanners]\nhost0 ansible_connection=local\n")
    env = {**os.environ, "ANSIBLE_HOME": str(tmp_path), "ANSIBLE_LOCAL_TEMP": str(tmp_path)}
    r = subprocess.run(
        [
            str(VENV_BIN / "ansible-playbook"),
            "--syntax-check",
            "-i",
            str(inv),
            str(ROOT / "deploy/ansible/scan.yml"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert r.returncode == 0, r.stdout + r.stderr
