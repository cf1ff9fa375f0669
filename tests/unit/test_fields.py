"""The output table (zbanner_xdp/fields.py) against what is generated from it and what it names."""

from __future__ import annotations

import subprocess

from tests.conftest import ROOT, ZB
from zbanner_xdp import fields
from zbanner_xdp.events import EVENT_DTYPE
from zbanner_xdp.output import select_fields
from zbanner_xdp.probes import all_probes
from zbanner_xdp.report import REQUIRED_FIELDS

BEGIN = "<!-- fields: generated from zbanner_xdp/fields.py; tests/unit/test_fields.py keeps them equal -->\n"
END = "<!-- /fields -->\n"


def test_the_readme_lists_the_fields_of_the_table() -> None:
    readme = (ROOT / "README.md").read_text()
    assert readme.count(BEGIN) == readme.count(END) == 1, "the README's field list lost its markers"
    listed = readme[readme.index(BEGIN) + len(BEGIN) : readme.index(END)]
    assert listed == fields.markdown(), "README.md's field list differs; paste this:\n" + fields.markdown()


def test_every_field_read_from_the_event_is_a_member_of_it() -> None:
    for f in fields.FIELDS:
        assert f.event is None or f.event in EVENT_DTYPE.names, f.name


def test_names_are_unique_and_the_record_keeps_the_table_order() -> None:
    assert len(set(fields.NAMES)) == len(fields.NAMES)
    assert select_fields(["http"], None) == [*fields.NAMES, "http"]
    assert tuple(f.name for f in fields.FIELDS if f.required) == REQUIRED_FIELDS


def test_probes_fields_prints_the_table_and_every_parsing_probe() -> None:
    r = subprocess.run([ZB, "probes", "--fields"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == fields.text(all_probes())
    names = [line.split()[0] for line in r.stdout.splitlines() if line and not line.startswith(" ")]
    parsing = [c.name for c in all_probes() if c.kind.parses]
    assert names[: len(fields.NAMES) + len(parsing)] == [*fields.NAMES, *parsing]
