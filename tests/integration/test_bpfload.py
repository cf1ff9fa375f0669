"""The compiled-program cache: a cache hit must load the very program a compile gives.

Each test gets its own cache directory (ZBANNER_BPF_CACHE_DIR), so the
first RecvProgram compiles and the next one loads from what was saved.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from zbanner_xdp import bpfload, bpfsys, events
from zbanner_xdp.events import EVENT_DTYPE, Counter
from zbanner_xdp.receiver import RingReader

from .test_xdp_program import KEY, LO, PAYLOAD, PROBE_INFO, US, XDP_DROP, XDP_PASS, cookie, frame

pytestmark = pytest.mark.privileged

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "bpf-cache"
    d.mkdir(mode=0o700)
    monkeypatch.setenv("ZBANNER_BPF_CACHE_DIR", str(d))
    monkeypatch.delenv("ZBANNER_BPF_CACHE", raising=False)
    return d


def _params(**kw):
    from zbanner_xdp.bpfprog import ProgParams

    base = dict(
        src_ip=US,
        port_lo=LO,
        port_hi=61000,
        banners=True,
        dedup_entries=1024,
        ringbuf_pages=64,
        banner_pages=64,
        generator=True,
        gen_slots=1024,
    )
    base.update(kw)
    return ProgParams(**base)


def _program(**kw):
    from zbanner_xdp.bpfprog import RecvProgram

    return RecvProgram(_params(**kw), KEY, probe_infos=[PROBE_INFO])


def _behaviour(prog) -> list:
    """Verdicts, records and counters for a fixed set of frames."""
    ring = RingReader(prog, 64)
    try:
        c = cookie(sport=40100)
        verdicts = [
            bpfsys.prog_test_run(prog.prog_fd, f)[0]
            for f in (
                frame(0x12, c + 1, seq=5, sport=40100),  # SYN-ACK: recorded
                frame(0x12, c + 1, seq=5, sport=40100),  # the same again: a repeat
                frame(0x12, c, sport=40100),  # one off: not ours
                frame(0x18, c + 1 + len(PAYLOAD), seq=6, sport=40100, payload=b"SSH-2.0-x\r\n"),  # banner
            )
        ]
        small, big, _ = ring.poll(0)
        recs = [
            (int(e["kind"]), int(e["sport"]), int(e["dport"]), int(e["seq"]), int(e["repeat"]))
            for e in np.concatenate([small[list(EVENT_DTYPE.names)], big["h"][list(EVENT_DTYPE.names)]])
        ]
        counters = prog.counters()
        return [
            verdicts,
            recs,
            [int(counters[c]) for c in (Counter.SYNACK, Counter.BANNER, Counter.BAD_COOKIE)],
        ]
    finally:
        ring.close()


def test_a_hit_loads_the_program_a_compile_gives(cache_dir: Path) -> None:
    first = _program()
    try:
        assert first.compiled
        compiled = _behaviour(first)
    finally:
        first.close()
    assert len(list(cache_dir.glob("*.json"))) == 1
    second = _program()
    try:
        assert not second.compiled
        assert _behaviour(second) == compiled
    finally:
        second.close()
    verdicts, recs, counters = compiled
    assert verdicts == [XDP_DROP, XDP_DROP, XDP_PASS, XDP_DROP]
    assert [r[0] for r in recs] == [events.Kind.SYNACK, events.Kind.BANNER]
    assert counters == [2, 1, 1]  # SYN-ACKs seen (the repeat too), banners, bad cookies


def test_other_options_are_another_entry(cache_dir: Path) -> None:
    for ttl in (64, 65):
        p = _program(ttl=ttl)
        assert p.compiled
        p.close()
    assert len(list(cache_dir.glob("*.json"))) == 2
    p = _program(ttl=64)
    assert not p.compiled
    p.close()


def test_a_broken_entry_is_compiled_again(cache_dir: Path) -> None:
    _program().close()
    (entry,) = cache_dir.glob("*.json")
    for damage in ("{not json", json.dumps({"format": bpfload.FORMAT, "maps": [], "progs": {}})):
        entry.write_text(damage)
        p = _program()
        try:
            assert p.compiled
            assert _behaviour(p)[0] == [XDP_DROP, XDP_DROP, XDP_PASS, XDP_DROP]
        finally:
            p.close()
    # Instructions the kernel refuses (a map reference pointing nowhere) also mean: compile.
    data = json.loads(entry.read_text())
    for prog in data["progs"].values():
        prog["relocs"] = []
    entry.write_text(json.dumps(data))
    p = _program()
    assert p.compiled
    p.close()


def test_a_hit_does_not_import_bcc(cache_dir: Path) -> None:
    _program().close()
    code = (
        "import sys\n"
        "from tests.integration.test_bpfload import _program\n"
        "p = _program()\n"
        "print(p.compiled, 'bcc' in sys.modules)\n"
        "p.close()\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "False"]


def test_a_layout_drift_fails_the_compile(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """shared.h static-asserts every struct user space writes: a Python-side change cannot load."""
    from zbanner_xdp.bpfprog import BpfSetupError

    drifted = np.dtype([("k1", "<u8"), ("k0", "<u8"), ("extra", "<u4")])
    monkeypatch.setitem(events.SHARED_STRUCTS, "zb_config", drifted)
    with pytest.raises(BpfSetupError, match="cannot build the XDP program"):
        _program()
    assert not list(cache_dir.glob("*.json"))


@pytest.mark.parametrize(("name", "value"), [("REPEAT_RETRANSMIT", 3), ("DATA_MAX", 2048), ("N_COUNTERS", 9)])
def test_a_constant_drift_fails_the_compile(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: int
) -> None:
    """shared.h static-asserts every constant user space relies on (kinds, counters, flags, limits)."""
    from zbanner_xdp.bpfprog import BpfSetupError

    monkeypatch.setattr(events, name, value)
    with pytest.raises(BpfSetupError, match="cannot build the XDP program"):
        _program()
    assert not list(cache_dir.glob("*.json"))
