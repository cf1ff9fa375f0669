"""The distributed engines (issue 15): the Ansible playbook run for real over an inventory of local
hosts, each shard in a lab of its own; the merged output equals a single-machine scan."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.conftest import ROOT, VENV_BIN, ZB, privileged_reason
from tests.integration.conftest import read_records
from zbanner_xdp import lab

pytestmark = pytest.mark.privileged

SHARDS = 3
TARGETS = ["198.18.0.0/23", "198.18.2.0/24", "198.18.3.0/25"]  # open, RST, silent, half of no-echo
PORTS = "22,80,443"


def lab_prefixes(n: int) -> list[str]:
    """n lab prefixes of this run's family: zbk- gives zbk1-, zbk2-, …"""
    tag = lab.PREFIX.rstrip("-")[:3]
    return [f"{tag}{i + 1}-" for i in range(n)]


def _lab(prefix: str, cmd: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ZBANNER_LAB_PREFIX": prefix}
    return subprocess.run([ZB, "lab", cmd], capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture(scope="module")
def labs() -> Iterator[list[str]]:
    """SHARDS labs, one per 'host'; torn down whatever happens."""
    if privileged_reason():
        pytest.skip(privileged_reason() or "")
    prefixes = lab_prefixes(SHARDS)
    try:
        for p in prefixes:
            r = _lab(p, "up")
            assert r.returncode == 0, r.stderr
        yield prefixes
    finally:
        for p in prefixes:
            _lab(p, "down")


def _keys(path: Path) -> list[tuple]:
    return [(r["saddr"], r["sport"], r["probe"], r["classification"]) for r in read_records(path)]


def test_playbook_runs_the_shards_and_merges(labs: list[str], empty_blocklist: str, tmp_path: Path) -> None:
    hosts = []
    for i, prefix in enumerate(labs):
        wrap = f"ip netns exec {prefix}scan"
        hosts.append(
            f"host{i} ansible_connection=local zb_wrap='{wrap}' zb_bin={ZB} zb_workdir={tmp_path}/host{i}"
        )
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        "[scanners]\n" + "\n".join(hosts) + f"\n\n[all:vars]\nansible_python_interpreter={sys.executable}\n"
    )
    extra = {
        "zb_targets": TARGETS,
        "zb_ports": PORTS,
        "zb_seed": 1515,
        "zb_rate": "5K",
        "zb_cooldown": 1,
        "zb_global_args": ["--blocklist", empty_blocklist],
        "zb_collect": str(tmp_path / "collected"),
        "zb_merged": str(tmp_path / "merged.jsonl"),
        "zb_merge_bin": ZB,
    }
    env = {
        **os.environ,
        "ANSIBLE_HOME": str(tmp_path / "ansible"),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        "ANSIBLE_REMOTE_TEMP": str(tmp_path / "ansible-tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_LOCALHOST_WARNING": "0",
    }
    r = subprocess.run(
        [
            str(VENV_BIN / "ansible-playbook"),
            "-i",
            str(inventory),
            str(ROOT / "deploy" / "ansible" / "scan.yml"),
            "-e",
            orjson.dumps(extra).decode(),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    # Each shard ran in its own lab.
    for i in range(SHARDS):
        meta = orjson.loads((tmp_path / "collected" / f"shard-{i}.json").read_bytes())
        assert meta["options"]["shard"] == i and meta["options"]["shards"] == SHARDS
        assert meta["interface"] == f"{labs[i]}s0" and meta["reason"] == "completed"
    merged_meta = orjson.loads((tmp_path / "merged.jsonl.json").read_bytes())
    assert merged_meta["merged"]["shards"] == SHARDS

    # The same targets from one machine (the first lab), no shards.
    single = tmp_path / "single.jsonl"
    r = subprocess.run(
        lab.ns_exec_argv(
            f"{labs[0]}scan",
            [ZB, "--blocklist", empty_blocklist, "--seed", "1515", "--rate", "5K", "--cooldown", "1", "-q"]
            + ["-o", str(single), "scan", *TARGETS, "-p", PORTS],
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    merged = _keys(tmp_path / "merged.jsonl")
    assert len(merged) == len(set(merged))
    assert sorted(merged) == sorted(_keys(single))
    assert merged_meta["records_written"] == len(merged)
    # And the ground truth: 256 open addresses and 128 no-echo ones (TCP open) x 3 ports, 256 RSTing.
    classes = [k[3] for k in merged]
    assert classes.count("synack") == (256 + 128) * 3 and classes.count("rst") == 256 * 3
    assert len(classes) == (256 + 128 + 256) * 3
