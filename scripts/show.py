"""Summarise a results file for the demo: counts, one sample record, metadata."""

from __future__ import annotations

import collections
import sys

import orjson


def main() -> None:
    results, meta_path = sys.argv[1], sys.argv[2]
    probe = sys.argv[3] if len(sys.argv) > 3 else None
    by_class: collections.Counter[str] = collections.Counter()
    by_net: collections.Counter[tuple[str, str, int]] = collections.Counter()
    samples: dict[str, dict] = {}
    with open(results, "rb") as fh:
        for line in fh:
            rec = orjson.loads(line)
            by_class[rec["classification"]] += 1
            net = ".".join(rec["saddr"].split(".")[:3]) + ".0/24"
            by_net[(net, rec["classification"], rec["sport"])] += 1
            samples.setdefault(rec["classification"], rec)
    print(f"records: {sum(by_class.values())}  by classification: {dict(by_class)}")
    if probe is None:
        for (net, cls, port), n in sorted(by_net.items()):
            print(f"  {net:<18} port {port:<5} {cls:<8} {n}")
    if probe and "banner" in samples:
        rec = samples["banner"]
        print(f"sample banner from {rec['saddr']}:{rec['sport']}: {rec['banner'][:120]!r}")
        print(f"parsed ({probe}): {orjson.dumps(rec[probe]).decode()[:400]}")
    with open(meta_path, "rb") as fh:
        meta = orjson.loads(fh.read())
    print(
        f"summary: {meta['reason']}, {meta['packets_sent']['probes']} probes + "
        f"{meta['packets_sent']['replies']} replies in {meta['duration_s']} s, "
        f"responses {meta['responses']}, drops {meta['drops']}"
    )


if __name__ == "__main__":
    main()
