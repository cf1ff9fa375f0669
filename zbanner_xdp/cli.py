"""Command line: `zbanner-xdp [global options] scan|lab|probes …`.

Every user error ends as one line on stderr and exit status 2; tracebacks
are for bugs only.
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys
from typing import Any, NoReturn

import click

from .config import ScanConfig, parse_port_range, parse_rate
from .kheaders import UnsafeCacheError

EXIT_USAGE = 2
_SNAP = "Bytes of each frame kept in the pcap (longer frames are cut, as tcpdump -s does)."


def _fail(msg: str) -> NoReturn:
    click.echo(f"zbanner-xdp: error: {msg}", err=True)
    sys.exit(EXIT_USAGE)


def _rate(_ctx: Any, _p: Any, value: str) -> float:
    try:
        return parse_rate(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _sports(_ctx: Any, _p: Any, value: str) -> tuple[int, int]:
    try:
        return parse_port_range(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _ip(_ctx: Any, _p: Any, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(
            ipaddress.IPv6Address(value)
            if ":" in value and "%" not in value
            else ipaddress.IPv4Address(value)
        )
    except ValueError:
        what = "IPv6" if ":" in value else "IPv4"
        raise click.BadParameter(f"invalid {what} address '{value}'") from None


def _mac(_ctx: Any, _p: Any, value: str | None) -> str | None:
    if value is None:
        return None
    from .packets import mac_bytes

    try:
        mac_bytes(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value.lower()


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--iface", "-i", help="Scan interface (default: the route to the first target).")
@click.option(
    "--rate",
    "-r",
    default="10K",
    show_default=True,
    callback=_rate,
    help="Packets per second: probes, and the replies that complete handshakes (ACK with the payload, "
    "RST), whether user space or the XDP program (--kernel-replies) sends them. K/M suffixes, fractions "
    "down to 0.01 (0.5 = one every 2 s); 0 = unlimited: as fast as the next hop takes them (the kernel "
    "generator slows down when the driver refuses its frames).",
)
@click.option(
    "--source-ip",
    "-S",
    callback=_ip,
    help="Source address, IPv4 or IPv6 as the targets (default: from the route).",
)
@click.option("--gateway-mac", "-G", callback=_mac, help="Next-hop MAC (default: from the neighbour table).")
@click.option(
    "--source-port",
    default="32768-61000",
    show_default=True,
    callback=_sports,
    help="Source port range LO-HI used for probes.",
)
@click.option(
    "--ttl", type=click.IntRange(1, 255), default=255, help="IP TTL of every packet sent [default: 255]."
)
@click.option(
    "--seed",
    type=click.IntRange(0, 2**64 - 1),
    help="Permutation seed: the same seed, the same order (default: random; needed with --shards).",
)
@click.option(
    "--shards",
    type=click.IntRange(1, 65535),
    default=1,
    help="Split the scan into this many disjoint parts (one per machine or process), all with one --seed "
    "[default: 1].",
)
@click.option(
    "--shard", type=click.IntRange(0, 65534), default=0, help="Which part this run scans: 0 to --shards - 1."
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Results file ('-' or none: stdout); a name ending in .gz or .zst is compressed.",
)
@click.option(
    "-O",
    "--output-format",
    type=click.Choice(["json", "csv"]),
    help="JSON lines, or CSV with a header row as ZMap writes it [default: csv for a name ending in "
    ".csv(.gz|.zst), else json].",
)
@click.option(
    "--metadata",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Write a JSON summary here at exit ('-': stdout, then -o must name a file).",
)
@click.option(
    "-f",
    "--output-fields",
    help="Fields of each record, in this order: saddr,sport,classification,… or a probe's parsed "
    "field, http.server (default: all; `zbanner-xdp probes --fields` lists them).",
)
@click.option(
    "--cooldown",
    default=8.0,
    show_default=True,
    type=click.FloatRange(0, 3600),
    help="Seconds to keep receiving after the last probe.",
)
@click.option("--max-targets", type=click.IntRange(1), help="Stop after this many (address, port) probes.")
@click.option(
    "--max-runtime", type=click.FloatRange(0, min_open=True), help="Stop sending after this many seconds."
)
@click.option(
    "-I",
    "--list-of-targets",
    metavar="FILE",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Scan the addresses, CIDRs and ranges in FILE, one a line ('-': stdin), with any TARGETs.",
)
@click.option(
    "--blocklist",
    type=click.Path(allow_dash=True),
    help="File of CIDRs never scanned; replaces the default reserved list (an empty file: none).",
)
@click.option(
    "--exclude",
    metavar="TARGETS",
    multiple=True,
    help="Never scan these addresses, CIDRs or ranges (a,b-c; repeatable), besides the blocklist.",
)
@click.option(
    "--exclude-file",
    metavar="FILE",
    multiple=True,
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Never scan those listed in FILE either (repeatable), besides the blocklist.",
)
@click.option("--allowlist", type=click.Path(allow_dash=True), help="File of CIDRs: scan only these.")
@click.option(
    "--tx",
    type=click.Choice(["auto", "xdp", "packet"]),
    default="auto",
    show_default=True,
    help="SYN path: kernel-side XDP generator, AF_PACKET, or the generator where it works.",
)
@click.option(
    "--tx-threads",
    type=click.IntRange(1, 1024),
    default=1,
    show_default=True,
    metavar="N",
    help="Kernel generator threads, each on a CPU of its own (no more than the CPUs allowed). More "
    "SYNs a second to a NIC with a queue per CPU; a banner scan's receiver needs a CPU too.",
)
@click.option("--dry-run", is_flag=True, help="Print the packets that would be sent; send nothing.")
@click.option(
    "--user",
    metavar="NAME",
    help="Once set up, scan as this user, with no capability it no longer needs [default: nobody when "
    "started as root].",
)
@click.option("-q", "--quiet", is_flag=True, help="No status line.")
@click.version_option(package_name="zbanner-xdp")
@click.pass_context
def main_group(ctx: click.Context, **opts: Any) -> None:
    """Stateless Internet-scale scanner and banner grabber with an XDP receive path, used as ZMap or
    masscan are:

    \b
      zbanner-xdp --rate 100K -o open.jsonl scan 203.0.113.0/24 -p 80,443
      zbanner-xdp -o ssh.csv -f saddr,ssh.software scan 203.0.113.0/24 -p 22 --probe ssh
      zbanner-xdp -o live.jsonl.gz scan 203.0.113.0/24 -p 80 --probe synscan,icmp-echo,udp-dns
      zbanner-xdp report live.jsonl.gz

    The options below are global: they may also follow the subcommand (scan … --rate 1M).
    `zbanner-xdp COMMAND --help` describes each command.
    """
    if opts["shard"] >= opts["shards"]:
        raise click.BadParameter(
            f"--shard {opts['shard']} must be below --shards {opts['shards']}", param_hint="--shard"
        )
    if opts["tx_threads"] > 1:
        if opts["tx"] == "packet":
            raise click.UsageError("--tx-threads: the kernel generator's threads (not with --tx packet)")
        cpus = len(os.sched_getaffinity(0))
        if opts["tx_threads"] > cpus:
            raise click.BadParameter(
                f"{opts['tx_threads']} threads, {cpus} CPUs allowed", param_hint="--tx-threads"
            )
    if opts["shards"] > 1 and opts["seed"] is None:
        # As ZMap: shards are disjoint and complete only under one permutation, and a seed each
        # shard derived by itself (from the time, the host) would differ from the others'.
        example = int.from_bytes(os.urandom(4), "little")
        raise click.UsageError(
            f"--shards {opts['shards']} needs --seed: every shard must use the same one, or they "
            f"overlap and miss targets (e.g. --seed {example} on every shard)"
        )
    ctx.obj = opts


class _ScanCommand(click.Command):
    """`scan --help` shows the global options as well: they may come before or after `scan`."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_options(ctx, formatter)
        parent = ctx.parent
        if parent is None:
            return
        rows = [r for p in parent.command.get_params(parent) if (r := p.get_help_record(parent)) is not None]
        with formatter.section("Global options (before or after `scan`)"):
            formatter.write_dl(rows)


_SCAN_HELP = """Scan TARGETs: addresses, CIDRs or ranges (198.18.0.10-198.18.0.99), with -I FILE's; none of
either = all of IPv4 minus the blocklist. IPv6 targets (2001:2::/120, a-b ranges) likewise, one family
a scan (README: IPv6).

Every (address, port) pair is probed once, in a seeded pseudo-random order; each probe of --probe
goes to every pair (TCP), or once per address (icmp-echo; UDP probes when there are TCP probes or no
-p). Replies and banners are written as they come (-o, JSON lines or CSV); a summary line ends the
scan, and --metadata gets the whole summary. Exit status: 0 done, 1 internal error, 2 bad usage,
3 done but something was lost (named), 4 output failed, 130/143 interrupted.
"""


@main_group.command(
    cls=_ScanCommand, help=_SCAN_HELP, short_help="Scan targets: SYN scan, banners, liveness (see --probe)."
)
@click.argument("target", nargs=-1)
@click.option(
    "-p",
    "--ports",
    help="Ports: 80,443,8000-8100. Needed with TCP probes; without it, UDP probes go to their own "
    "port (udp-dns 53) and icmp-echo needs none.",
)
@click.option(
    "--probe",
    default="synscan",
    show_default=True,
    help="Probe modules, comma-separated (synscan, http, tls, ssh, …, icmp-echo, udp-dns, jarm, lzr, auto; "
    "`zbanner-xdp probes` lists them).",
)
@click.option(
    "--probe-args",
    default="",
    help="Probe options k=v,k2=v2 (`zbanner-xdp probes` lists them); a comma ends a value only before "
    'another key=, and a value in quotes is taken as it is: path="/a?x=1,y=2".',
)
@click.option(
    "--ack-window",
    default=1024,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Receive window on our ACK: bounds the banner to one segment.",
)
@click.option(
    "--banner-bytes",
    default=None,
    callback=lambda _c, _p, v: 0 if v is None else _count(v, "--banner-bytes", 1, 65536),
    help="Read each banner past its first segment, up to this many bytes (1-65536): every in-order "
    "segment is acknowledged until N bytes, a FIN, or the probe's answer is complete (HTTP: the head "
    "and title; TLS: the certificate, with --probe-args max_version=1.2). Default: the first segment.",
)
@click.option(
    "--banner-table",
    default=str(ScanConfig.banner_table),
    show_default=True,
    callback=lambda _c, _p, v: _count(v, "--banner-table", 1, 1 << 24),
    help="With --banner-bytes: connections reassembled at once (and 256 MiB of data at most); past it "
    "the least recently active is written as it stands, marked truncated.",
)
@click.option(
    "--dedup-window",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds a reply counts as a repeat (0: for the whole scan).",
)
@click.option(
    "--reanswer-after",
    default=0.15,
    show_default=True,
    type=click.FloatRange(0),
    help="A SYN-ACK or banner repeated this many seconds after we answered it is the server "
    "retransmitting (our answer was lost): answer again (0: never).",
)
@click.option(
    "--dedup-entries",
    default="1M",
    show_default=True,
    callback=lambda _c, _p, v: _count(v, "--dedup-entries", 1 << 16, 1 << 26),
    help="Replies the duplicate filter remembers (16-way set-associative, oldest out; 20 bytes "
    "of kernel memory each). Size it to the replies a window of a few seconds brings.",
)
@click.option(
    "--step-table",
    default=str(ScanConfig.step_table),
    show_default=True,
    callback=lambda _c, _p, v: _count(v, "--step-table", 1, 1 << 24),
    help="Targets a multi-connection probe (jarm, lzr) may have in progress at once (~0.5 kB each); "
    "past it the oldest is written as it stands, marked incomplete.",
)
@click.option("--output-repeats", is_flag=True, help="Also write repeated replies (repeat: true).")
@click.option(
    "--retransmit",
    default=0,
    show_default=True,
    type=click.IntRange(0, 10),
    help="Send every probe this many extra times (replies dedup across copies).",
)
@click.option(
    "--retransmit-delay",
    default=20.0,
    show_default=True,
    type=click.FloatRange(0, 3600),
    help="Seconds between copies of a probe.",
)
@click.option(
    "--kernel-replies/--no-kernel-replies",
    default=None,
    help="Answer SYN-ACKs (ACK + the probe's payload, completed per target) and banners (RST) inside "
    "the XDP program; verified against the driver's counters, user space takes over where XDP "
    "transmits are not delivered (the metadata's kernel_replies says which ran). Default: wherever the "
    "scan allows (not with --pcap or --banner-bytes, where user space answers); --no-kernel-replies: "
    "always user space (slower, and its pace slows the SYNs at --rate 0).",
)
@click.option(
    "--tarpit-check",
    is_flag=True,
    help="Also SYN one random high port per address: tarpits answer every port.",
)
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False),
    help="Keep the scan's position here (atomically, every second and at exit): "
    "`zbanner-xdp resume FILE` continues it, also after a crash. Needs -o FILE.",
)
@click.option(
    "--pcap",
    type=click.Path(dir_okay=False),
    help="Also write every recorded reply's frame, as it arrived, to this pcap file (Ethernet).",
)
@click.option("--pcap-snaplen", default=1514, show_default=True, type=click.IntRange(64, 9216), help=_SNAP)
@click.pass_obj
def scan(
    obj: dict,
    target: tuple[str, ...],
    ports: str | None,
    probe: str,
    probe_args: str,
    ack_window: int,
    banner_bytes: int,
    banner_table: int,
    dedup_window: float,
    reanswer_after: float,
    dedup_entries: int,
    step_table: int,
    output_repeats: bool,
    retransmit: int,
    retransmit_delay: float,
    tarpit_check: bool,
    kernel_replies: bool | None,
    checkpoint: str | None,
    pcap: str | None,
    pcap_snaplen: int,
) -> None:
    from .probes import parse_probe_args

    try:
        args = parse_probe_args(probe_args)
    except ValueError as exc:  # ProbeArgError
        _fail(str(exc))
    probe_objs = _probe_objects(probe, args, probe_args, ports, tarpit_check)
    lo, hi = obj["source_port"]
    cfg = ScanConfig(
        targets=target,
        ports=ports or "",  # "": each UDP probe to its own port, once per address (plan.udp_once)
        probe=probe,
        probe_args=args,
        iface=obj["iface"],
        rate=obj["rate"],
        source_ip=obj["source_ip"],
        gateway_mac=obj["gateway_mac"],
        source_port_lo=lo,
        source_port_hi=hi,
        ttl=obj["ttl"],
        seed=obj["seed"],
        shards=obj["shards"],
        shard=obj["shard"],
        output=obj["output"],
        output_fields=_fields(obj["output_fields"]),
        output_format=obj["output_format"],
        metadata=obj["metadata"],
        cooldown=obj["cooldown"],
        max_targets=obj["max_targets"],
        max_runtime=obj["max_runtime"],
        blocklist=obj["blocklist"],
        allowlist=obj["allowlist"],
        list_of_targets=obj["list_of_targets"],
        exclude=tuple(obj["exclude"]),
        exclude_files=tuple(obj["exclude_file"]),
        dry_run=obj["dry_run"],
        quiet=obj["quiet"],
        ack_window=ack_window,
        banner_bytes=banner_bytes,
        banner_table=banner_table,
        dedup_window=dedup_window,
        reanswer_after=reanswer_after,
        dedup_entries=dedup_entries,
        step_table=step_table,
        output_repeats=output_repeats,
        retransmit=retransmit,
        retransmit_delay=retransmit_delay,
        tarpit_check=tarpit_check,
        tx=obj["tx"],
        tx_threads=obj["tx_threads"],
        kernel_replies=kernel_replies,
        checkpoint=checkpoint,
        pcap=pcap,
        pcap_snaplen=pcap_snaplen,
        user=obj["user"],
    )
    _run_scan(cfg, probe_objs)


def _probe_objects(
    probe: str, args: dict[str, str], probe_args: str, ports: str | None, tarpit_check: bool
) -> list[Any]:
    """--probe NAME[,NAME…] with --probe-args, as probe objects; a bad one: one line, exit 2."""
    from .probes import ProbeArgError, UnknownProbeError, auto, get_probe
    from .targets import TargetError, parse_ports

    names = [n.strip().lower() for n in probe.split(",") if n.strip()]
    try:
        if (len(names) > 1 or auto.NAME in names) and args:
            raise ProbeArgError("--probe-args needs a single --probe (and not auto)")
        if len(set(names)) != len(names) or not names:
            raise ProbeArgError(f"invalid --probe list '{probe}'")
        probe_objs = []
        for n in names:
            if n == auto.NAME:
                if not ports:
                    _fail("--probe auto needs -p/--ports")
                try:
                    probe_objs += auto.expand(parse_ports(ports))
                except TargetError as exc:
                    _fail(str(exc))
            else:
                probe_objs.append(get_probe(n, args))
        taken = [p.name for p in probe_objs]
        if len(set(taken)) != len(taken):
            raise ProbeArgError(f"--probe {probe}: auto already includes {', '.join(sorted(set(taken)))}")
    except (UnknownProbeError, ProbeArgError) as exc:
        msg = str(exc)
        if "does not accept" in msg and "," in probe_args:
            msg += "; a value holding ',key=' must be quoted: --probe-args 'path=\"/a?x=1,y=2\"'"
        _fail(msg)
    tcp = [p.name for p in probe_objs if p.transport == "tcp"]
    if not ports and (tcp or tarpit_check):
        what = f"TCP probes ({', '.join(tcp)})" if tcp else "--tarpit-check"
        _fail(f"-p/--ports is needed for {what}; only ICMP and UDP probes go without")
    return probe_objs


def _run_scan(cfg: ScanConfig, probe_objs: list[Any], resume: Any = None) -> None:
    """Run a scan (or a resumed one) to its end: notes, warnings, the summary line, the exit status."""
    from .scanner import EXIT_SIGINT, ScanError, Scanner, exit_status, unanswered_warning

    try:
        scanner = Scanner(cfg, probe_objs) if resume is None else Scanner(cfg, probe_objs, resume)
        if cfg.dry_run:
            scanner.dry_run(sys.stdout)
            return
        summary = scanner.run()
    except ScanError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        click.echo("zbanner-xdp: interrupted (third signal): results cut short", err=True)
        sys.exit(EXIT_SIGINT)
    if summary.get("error"):
        click.echo(f"zbanner-xdp: error: {summary['error']}", err=True)
    # The scan did not run as asked (a fallback): said even with -q.
    for note in (summary.get("tx_note"), (summary.get("kernel_replies") or {}).get("note")):
        if note:
            click.echo(f"zbanner-xdp: note: {note}", err=True)
    warning = unanswered_warning(summary)
    if warning:
        click.echo(f"zbanner-xdp: warning: {warning}", err=True)
    code = exit_status(summary)
    if not cfg.quiet or code:
        click.echo(summary_line(summary), err=True)
    sys.exit(code)


def _pairs(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"


def summary_line(r: dict) -> str:
    """One line a person reads at the end of a scan; every loss named."""
    from .scanner import losses, unanswered

    lost = losses(r)
    tail = f"LOST: {_pairs(lost)}" if lost else "nothing lost"
    quiet = unanswered(r)
    if quiet:
        tail += "; handshakes without an answer: " + ", ".join(
            f"{name} {n} of {total}" for name, (n, total) in quiet.items()
        )
    refused = (r.get("kernel_replies") or {}).get("refused", 0)
    if refused and (r.get("options") or {}).get("reanswer_after", 1):
        tail += (
            f"; {refused} in-kernel answers refused by the driver (answered again if the server "
            "retransmitted in time; if not, a handshake without an answer)"
        )
    if r["drops"].get("output_lost"):
        tail += " (output_lost: records received but not written)"
    if r.get("output_cut_line"):
        tail += "; the output's last line is cut"
    return (
        f"zbanner-xdp: {r['reason']}: {r['packets_sent']['probes']} probes, "
        f"{r['packets_sent']['replies']} replies, {r['hits']} hits, "
        f"{r['records_written']} records written (responses: {_pairs(r['responses'])}); "
        f"{tail}; {r['duration_s']} s"
    )


@main_group.command(name="probes", short_help="List the probe modules, their arguments and output fields.")
@click.option("--fields", "output_fields", is_flag=True, help="List the output records' fields instead.")
def probes_cmd(output_fields: bool) -> None:
    """List probe modules and their output fields."""
    from . import fields
    from .probes import all_probes, auto

    if output_fields:
        click.echo(fields.text(all_probes()), nl=False)
        return
    for cls in all_probes():
        fields = ", ".join(cls.fields) or "-"
        click.echo(f"{cls.name:<10} port {cls.default_port:<5} {cls.description}")
        click.echo(f"{'':<10} fields: {fields}")
        if cls.steps > 1:
            click.echo(f"{'':<10} up to {cls.steps} connections per target, one record")
        for k, v in cls.args_help.items():
            click.echo(f"{'':<10} --probe-args {k}=…: {v}")
    click.echo(f"{auto.NAME:<10} each port its well-known probe, every other port {auto.OTHER}:")
    click.echo(auto.describe())


@main_group.command(
    name="report", short_help="Liveness report of a results file (Bano et al. 2018): who answered what."
)
@click.argument("results")
@click.option("--json", "json_out", help="Also write the report as JSON ('-': stdout instead of text).")
@click.option(
    "--png", "png_out", help="Cross-protocol heatmap PNG ('-': stdout; needs matplotlib: zbanner-xdp[plot])."
)
@click.option(
    "--metadata",
    "metadata",
    type=click.Path(dir_okay=False),
    help="The scan's summary (its --metadata file): counts become shares of the targets scanned.",
)
@click.option(
    "--blocks",
    is_flag=True,
    help="Per /24 block: alive addresses per probe key and their distribution (--png: a histogram).",
)
def report_cmd(
    results: str, json_out: str | None, png_out: str | None, metadata: str | None, blocks: bool
) -> None:
    """Liveness taxonomy (Bano et al. 2018) of a results file written by a scan as JSON lines, with every
    field (.gz and .zst read as they are, '-' = stdin): per probe key, how many targets were
    network-alive, transport-active, transport-alive, application-active and application-alive (defined
    at the end of the report); replies by type; unique coverage; the cross-protocol matrix; tarpits."""
    from .report import ReportError, run_report

    try:
        code = run_report(results, json_out, png_out, metadata, blocks)
    except ReportError as exc:
        _fail(str(exc))
    sys.exit(code)


@main_group.command(name="resume", short_help="Continue a scan from its --checkpoint file.")
@click.argument("checkpoint_file", metavar="FILE")
@click.option("-q", "--quiet", "quiet_resume", is_flag=True, help="No status line.")
@click.pass_obj
def resume_cmd(obj: dict, checkpoint_file: str, quiet_resume: bool) -> None:
    """Continue the scan a --checkpoint FILE describes (same options, same output, appended)."""
    import dataclasses

    from . import checkpoint

    try:
        doc = checkpoint.load(checkpoint_file)
    except checkpoint.CheckpointError as exc:
        _fail(str(exc))
    cfg = checkpoint.config_of(doc)
    cfg = dataclasses.replace(
        cfg,
        quiet=cfg.quiet or quiet_resume or obj["quiet"],
        dry_run=False,
        checkpoint=os.path.abspath(checkpoint_file),  # where it is now, if it was moved
        user=obj["user"] or cfg.user,
        # How many threads send is this machine's business (merge treats it as local too).
        tx_threads=min(cfg.tx_threads, len(os.sched_getaffinity(0))),
    )
    probe_objs = _probe_objects(cfg.probe, dict(cfg.probe_args), "", cfg.ports, cfg.tarpit_check)
    _run_scan(cfg, probe_objs, checkpoint.Resume(os.path.abspath(checkpoint_file), doc))


@main_group.command(name="merge", short_help="Merge the shards of one scan into one output.")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option(
    "-o", "--output", "merged", required=True, type=click.Path(dir_okay=False), help="Merged results."
)
@click.option("--metadata", "merged_meta", type=click.Path(dir_okay=False), help="Combined metadata here.")
def merge_cmd(directory: str, merged: str, merged_meta: str | None) -> None:
    """Merge the shards of one scan: DIR holds NAME.jsonl with its --metadata NAME.json per shard."""
    from .merge import MergeError, merge

    try:
        doc = merge(directory, merged, merged_meta)
    except MergeError as exc:
        _fail(f"merge: {exc}")
    m = doc["merged"]
    click.echo(
        f"zbanner-xdp: merged {m['shards']} shards: {doc['records_written']} records, "
        f"{m['duplicates_dropped']} cross-shard duplicates dropped",
        err=True,
    )


_LAB_HELP = """The built-in network-namespace lab: real servers behind a router, for demos, tests
and benchmarks.

Three namespaces, zbl-scan, zbl-rtr and zbl-tgt with the default prefix (and
zbl-wire with --wire). The scanner runs in the first, with an empty blocklist
(the default one reserves the lab's 198.18.0.0/15):

\b
  ip netns exec zbl-scan zbanner-xdp --blocklist EMPTY scan 198.18.0.0/24 -p 80

198.18.0.0/16 answers with nginx, OpenSSH, vsftpd, redis, dnsmasq and chrony,
198.19.0.0/16 with the router's ICMP errors; their IPv6 twins 2001:2::/112 and
2001:2::1:0/112 the same way (the default IPv6 blocklist reserves 2001:2::/48
too); `lab status` prints the address plan (README, "The lab").

Several labs coexist, one per prefix (--prefix, or ZBANNER_LAB_PREFIX; default zbl-).
`down` and a rebuilding `up` refuse while another process uses the lab — holds a
lease (lab.using(), as the test suite does) or runs in its namespaces (a scan) —
and say whose it is; --force does it anyway.
"""


def _lab_prefix(_ctx: Any, _p: Any, value: str | None) -> str | None:
    import re

    # (topology.py checks ZBANNER_LAB_PREFIX the same way when the lab is imported.)
    if value is not None and not re.fullmatch(r"[a-z0-9]{1,4}-", value):
        raise click.BadParameter(f"'{value}': 1-4 lowercase letters or digits and a final '-', e.g. zbu-")
    return value


@main_group.group(help=_LAB_HELP, short_help="The built-in network-namespace lab (demo, tests, benchmarks).")
@click.option(
    "--prefix",
    callback=_lab_prefix,
    help="The lab's name prefix: its namespaces, interfaces and state dir "
    "[default: $ZBANNER_LAB_PREFIX, else zbl-].",
)
def lab(prefix: str | None) -> None:
    if prefix is not None:
        os.environ["ZBANNER_LAB_PREFIX"] = prefix  # read when the lab package is imported, below


def _labmod() -> Any:
    try:
        from . import lab as labmod
    except ValueError as exc:  # a bad ZBANNER_LAB_PREFIX
        _fail(str(exc))
    return labmod


def _lab_fail(exc: RuntimeError) -> NoReturn:
    msg = str(exc)
    _fail(msg if msg.startswith("lab:") else f"lab: {msg}")


@lab.command("up", short_help="Build the lab (idempotent); print its status.")
@click.option(
    "--wire", is_flag=True, help="With the fault wire (a user-space netem) between scanner and router."
)
@click.option("--force", is_flag=True, help="Rebuild even a complete lab, even one another process uses.")
def lab_up(wire: bool, force: bool) -> None:
    """Build the lab, or check that it is complete: a complete lab of the same kind is left as it is; a
    partial one, or one of the other kind (--wire or not), is torn down and rebuilt."""
    labmod = _labmod()
    try:
        labmod.up(force=force, wire=wire)  # tears down by itself on failure, keeping the logs it names
    except RuntimeError as exc:
        _lab_fail(exc)
    click.echo(labmod.format_status(labmod.status()))


@lab.command("down", short_help="Remove the lab: namespaces, links, servers, state.")
@click.option("--force", is_flag=True, help="Even while another process uses it.")
def lab_down(force: bool) -> None:
    """Remove every piece of the lab of this prefix that exists, even a half-built one; nothing of
    another prefix. Refused while another process uses the lab (see `zbanner-xdp lab --help`)."""
    labmod = _labmod()
    try:
        removed = labmod.down(force=force)
    except RuntimeError as exc:
        _lab_fail(exc)
    click.echo("lab: removed " + (", ".join(removed) if removed else "nothing"))
    if not removed:
        mine = f"{labmod.PREFIX}scan"
        others = sorted(n.removesuffix("scan") for n in _netns_names() if n.endswith("-scan") and n != mine)
        if others:
            click.echo(f"lab: no lab {labmod.PREFIX!r} here; there are {', '.join(others)} (see --prefix)")


def _netns_names() -> list[str]:
    try:
        return os.listdir("/run/netns")
    except OSError:
        return []


@lab.command("status", short_help="What of the lab exists, whether it is complete, who uses it.")
@click.option("--json", "as_json", is_flag=True, help="As JSON.")
def lab_status(as_json: bool) -> None:
    """What of the lab exists (namespaces, links, routes, nftables, servers, the relay), whether it is
    complete, who built it and who uses it; the address plan."""
    labmod = _labmod()
    d = labmod.status()
    click.echo(json.dumps(d, indent=2) if as_json else labmod.format_status(d))


def _count(text: str, option: str, lo: int, hi: int) -> int:
    """A count with K/M suffixes, within [lo, hi]."""
    try:
        n = parse_rate(text)
    except ValueError:
        n = -1
    if not isinstance(n, int) or not lo <= n <= hi:  # (parse_rate allows fractions: 65536.5)
        raise click.BadParameter(f"invalid {option} '{text}' (a count from {lo} to {hi}; K and M work)")
    return n


def _fields(text: str | None) -> tuple[str, ...] | None:
    if text is None or text.strip() in ("", "*"):
        return None
    return tuple(f.strip() for f in text.split(","))


def _value_options(params: list[click.Parameter]) -> dict[str, bool]:
    """Every option name of `params` -> whether it takes a value."""
    takes_value: dict[str, bool] = {}
    for param in params:
        if isinstance(param, click.Option):
            for name in (*param.opts, *param.secondary_opts):
                takes_value[name] = not (param.is_flag or param.count)
    return takes_value


def _option_width(argv: list[str], j: int, takes_value: dict[str, bool]) -> int | None:
    """How many words the option at argv[j] spans (1 or 2), or None if it is not one of `takes_value`.

    Knows click's forms: `--opt=v`, `--opt v`, `-o v`, `-ov` and flags bundled
    with a short option (`-qo v`, `-qov`).
    """
    arg = argv[j]
    if arg.startswith("--"):
        name, eq, _ = arg.partition("=")
        if name not in takes_value:
            return None
        return 2 if takes_value[name] and not eq and j + 1 < len(argv) else 1
    for k in range(1, len(arg)):
        name = "-" + arg[k]
        if name not in takes_value:
            return None
        if takes_value[name]:  # the rest of the word is its value, or else the next word
            return 2 if k == len(arg) - 1 and j + 1 < len(argv) else 1
    return 1


def _hoist_global_options(argv: list[str]) -> list[str]:
    """Accept global options after the subcommand too (`scan 10.0.0.0/8 -p 80 --rate 1M`).

    They are moved in front of it, so click parses them as the group's. The
    subcommand is the first word that is neither a global option nor the value
    of one (`-o scan scan …` writes to the file `scan`); only `scan` hoists.
    """
    glob = _value_options(main_group.params)
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--" or not arg.startswith("-") or arg == "-":
            break
        i += _option_width(argv, i, glob) or 1  # (an unknown option: click reports it)
    if i >= len(argv) or argv[i] != "scan":
        return argv
    local = _value_options(scan.params)
    head, tail, moved = argv[:i], [], []
    j = i + 1
    while j < len(argv):
        arg = argv[j]
        if arg == "--":
            tail.extend(argv[j:])
            break
        if arg.startswith("-") and arg != "-":
            width = _option_width(argv, j, glob)
            if width is not None:
                moved.extend(argv[j : j + width])
            else:
                # scan's own option: its value stays with it, even one that looks like a global option
                width = _option_width(argv, j, local) or 1
                tail.extend(argv[j : j + width])
            j += width
        else:
            tail.append(arg)
            j += 1
    return [*head, *moved, "scan", *tail]


def main(argv: list[str] | None = None) -> None:
    argv = _hoist_global_options(list(sys.argv[1:] if argv is None else argv))
    try:
        main_group.main(args=argv, prog_name="zbanner-xdp", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        sys.exit(EXIT_USAGE)
    except click.UsageError as exc:
        _fail(exc.format_message().replace("\n", " "))
    except click.exceptions.Abort:
        _fail("aborted")
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        sys.exit(1)
    except UnsafeCacheError as exc:  # a cached artefact another user could have written (kheaders.py)
        _fail(str(exc))
    except Exception as exc:
        # A bug, not a user error: what was scanned is already flushed and the summary
        # written (the scanner's finally), so one line, and the traceback on request.
        if os.environ.get("ZBANNER_DEBUG"):
            raise
        click.echo(
            f"zbanner-xdp: internal error: {type(exc).__name__}: {exc} (ZBANNER_DEBUG=1 shows the traceback)",
            err=True,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
