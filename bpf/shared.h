/* The one definition of what crosses the kernel/user boundary.
 *
 * zbanner_xdp/events.py mirrors these layouts as numpy dtypes and these
 * constants as Python values, and compiles this program with
 * -DZB_SHARED_CHECKS: static asserts of every size, offset and value it relies
 * on (expanded at the end), which make a drift between the two sides a
 * compile error instead of silently garbled records.
 */
#ifndef ZB_SHARED_H
#define ZB_SHARED_H

/* Bytes of the first data segment copied into a banner record: enough for
 * an HTTP head, a ServerHello or a greeting; the rest is not needed to
 * classify and would only cost ring-buffer space. */
#define ZB_DATA_MAX 1024

enum zb_kind {
	ZB_KIND_SYNACK = 1,
	ZB_KIND_RST = 2,
	ZB_KIND_ZEROWIN = 3,
	ZB_KIND_BANNER = 4,
	ZB_KIND_ICMP = 5,
	ZB_KIND_UDP = 6,
	ZB_KIND_ECHOREPLY = 7,
	ZB_KIND_FIN = 8, /* a FIN without data acking our whole probe: the server closed (multi-step probes) */
	ZB_KIND_ACKED = 9, /* a pure ACK of our whole probe: the server has our request (multi-step probes) */
};

/* Per-CPU counters, one slot per outcome of the XDP program. */
enum zb_counter {
	ZB_CNT_RX = 0,          /* every frame the program saw */
	ZB_CNT_PASS,            /* not addressed to the scan: untouched */
	ZB_CNT_SYNACK,
	ZB_CNT_RST,
	ZB_CNT_ZEROWIN,
	ZB_CNT_BANNER,
	ZB_CNT_REPEAT,          /* duplicate inside the dedup window */
	ZB_CNT_BAD_COOKIE,      /* to our IP and port range, cookie wrong */
	ZB_CNT_RINGBUF_FULL,    /* ours, valid, but lost: user space too slow */
	ZB_CNT_IGNORED,         /* ours, valid, nothing to record (a pure ACK, a later segment) */
	ZB_CNT_ICMP,            /* ICMP errors quoting one of our probes */
	ZB_CNT_UDP,
	ZB_CNT_ECHOREPLY,
	ZB_CNT_RST_UNVALIDATED, /* bare RST (no ack) on a probed 4-tuple */
	ZB_CNT_KERNEL_REPLIES,  /* answers the program sent itself */
	ZB_CNT_NO_ROOM,         /* an answer that did not fit the frame's buffer */
	ZB_CNT_FIN,             /* FIN without data acking our whole probe */
	ZB_CNT_ACKED,           /* pure ACK of our whole probe, reported (multi-step probes) */
	ZB_CNT_MAX = 18,
};

/* Host byte order unless the name says raw (raw = network order as it sits
 * in the packet, which is how the cookie consumes it). */
struct zb_event {
	__u64 ts_ns;            /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u32 saddr;            /* responder, raw */
	__u32 daddr;            /* us, raw */
	__u32 seq;
	__u32 ack;
	__u32 icmp_responder;   /* raw; source of an ICMP error, else 0 */
	__u16 sport;            /* responder's port */
	__u16 dport;            /* ours */
	__u16 window;
	__u16 ipid;
	__u16 data_len;         /* bytes valid in the banner record's data[] */
	__u16 payload_len;      /* TCP payload length on the wire */
	__u8 ttl;
	__u8 kind;              /* enum zb_kind */
	__u8 tcp_flags;
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 repeat;
	__u8 variant;           /* probe + probes * attempt, from the port */
	__u8 flags;             /* ZB_EV_* */
#if ZB_IPV6
	/* An IPv6 scan's program (one family a scan) records whole addresses here; saddr, daddr
	 * and icmp_responder above then hold their last 4 bytes. An IPv4 scan's records keep
	 * the 48 bytes above: its rings, copies and formatter do not pay for IPv6. */
	__u8 saddr6[16];        /* responder (of an ICMP error: the quoted destination), raw */
	__u8 icmp_responder6[16];
#endif
};

#define ZB_EV_UNVALIDATED 0x01  /* only the source-port slot matched (bare RST) */
#define ZB_EV_ANSWERED 0x02     /* the program already sent our answer (--kernel-replies) */

#ifndef ZB_IPV6
#define ZB_IPV6 0               /* 1: the scan's targets (and our address) are IPv6 */
#endif

/* zb_event.repeat: 0 for a first reply, else why it came again. */
#define ZB_REPEAT_DUP 1         /* a network duplicate */
#define ZB_REPEAT_RETRANSMIT 2  /* the server retransmitted: our answer was lost, answer again */

/* A probe's source port carries its variant, probe + ZB_PROBES * attempt
 * (zbanner_xdp/plan.py, split_variant there). */
struct zb_variant {
	__u32 probe;
	__u32 attempt;
};

static __always_inline struct zb_variant zb_split_variant(__u32 variant)
{
	struct zb_variant v = { variant % (__u32)ZB_PROBES, variant / (__u32)ZB_PROBES };
	return v;
}

/* In-kernel replies: the payload the program piggybacks on its ACK, as a
 * template it completes per target (zbanner_xdp/kpayload.py). Per probe one
 * entry per length of the target address's text, dotted (7-15) or RFC 5952
 * (2-39) (index probe * VARIANTS + that length): the text goes at ip_at;
 * ranges (a multiple of 8 bytes each)
 * get the target's pseudo-random bytes. csum is the template's partial
 * ones'-complement sum (native 16-bit words, zeros where the program writes),
 * precomputed by user space. */
#define ZB_KPAYLOAD_MAX 1024
#define ZB_KP_VARIANTS 40
#define ZB_KP_RANGES 4
#define ZB_KP_RANGE_MAX 32
#define ZB_KP_NONE 0xffff
struct zb_kpayload {
	__u32 enabled;
	__u32 len;
	__u32 csum;
	__u32 handshake;        /* 0: SYN-only probe, a SYN-ACK gets a RST */
	__u64 seed;             /* of the ranges' bytes */
	__u16 ip_at;            /* ZB_KP_NONE: the address is not in the payload */
	__u16 range_at[ZB_KP_RANGES];   /* ZB_KP_NONE: unused */
	__u16 range_len[ZB_KP_RANGES];
	__u16 pad;
	__u32 pad2;
	__u8 data[ZB_KPAYLOAD_MAX];
};

struct zb_banner_event {
	struct zb_event h;
	__u8 data[ZB_DATA_MAX];
};

/* A segment of at most ZB_SHORT_MAX bytes (most greetings: SSH, FTP, SMTP, POP, IMAP, Redis), in a
 * ring of its own when the scan has one (ZB_SHORT_PAGES): a quarter of a zb_banner_event, so the
 * same memory holds ~3.5 times the banners a slow receiver has not read yet. */
#define ZB_SHORT_MAX 256
struct zb_short_event {
	struct zb_event h;
	__u8 data[ZB_SHORT_MAX];
};

/* Per-scan secret written by user space before the first SYN goes out. */
struct zb_config {
	__u64 k0;
	__u64 k1;
};

/* What the program must know of each probe to validate its replies
 * without state. TCP: the length of the payload piggybacked on our ACK,
 * base + (plus_ip_strlen ? strlen(dotted target address) : 0). UDP: where
 * the reply echoes our cookie (DNS transaction id, NTP origin timestamp). */
struct zb_probe_info {
	__u32 base;
	__u8 plus_ip_strlen;
	__u8 proto;             /* IPPROTO_TCP / IPPROTO_UDP / IPPROTO_ICMP */
	__u8 cookie_len;        /* 0, 2 or 4 bytes echoed in a UDP reply */
	__u8 flags;             /* ZB_PROBE_* */
	__u16 reply_cookie_off; /* offset of those bytes in the UDP reply payload */
	__u16 udp_len;          /* UDP probes: length of our datagram (header included) */
	__u32 udp_tmpl_sum;     /* its payload's 16-bit word sum, cookie bytes zeroed */
	__u16 cookie_off;       /* where our datagram carries the cookie (even) */
	__u16 pad3;
};

/* zb_probe_info.flags. ZB_PROBE_ACKS: report a pure ACK of the whole probe
 * (ZB_KIND_ACKED). A multi-step probe's "no answer" counts only once the
 * server is known to have our request; a lost request is no answer. Only for
 * those probes: most servers ACK a request before answering it, and a banner
 * scan has no use for one more event per connection. */
#define ZB_PROBE_ACKS 0x01

/* Retransmitted copies of a probe use another attempt's source port; the
 * key folds them back (port - probes * attempt) so their replies dedup. */
struct zb_dedup_key {
#if ZB_IPV6
	__u32 saddr_hi[3];
#endif
	__u32 saddr;
	__u16 sport;
	__u16 dport;
	__u32 kind;             /* kind | icmp_type << 8 */
};

/* Kernel-side SYN generator (--tx xdp): user space fills gen_targets and
 * runs the program over a template frame with BPF_PROG_TEST_RUN in live-frame
 * mode; each run takes the next target and transmits its SYN (XDP_TX). */

struct zb_gen_target {
	__u32 daddr_raw;
	__u16 dport_raw;
	__u8 variant;
	__u8 pad;
#if ZB_IPV6
	__u8 daddr6[16];        /* an IPv6 scan's target, raw (daddr_raw unused) */
#endif
};

#if ZB_IPV6
#define ZB_GEN_FRAME 78 /* Ethernet + IPv6 (40) + TCP (24, MSS option) */
#define ZB_GEN_TEMPLATE 80
#else
#define ZB_GEN_FRAME 58 /* Ethernet + IPv4 (20) + TCP (24, MSS option) */
#define ZB_GEN_TEMPLATE 64
#endif

struct zb_gen_template {
	__u8 frame[ZB_GEN_TEMPLATE]; /* the first ZB_GEN_FRAME bytes are the SYN template */
};

struct zb_gen_state {
	__u64 next;             /* index of the next target to send */
	__u64 end;              /* stop before this index */
	__u64 sent;             /* unused (the layout user space mirrors) */
};

/* Duplicate filter: a set-associative cache of replies seen. A key hashes
 * to one bucket of ZB_DEDUP_WAYS slots (a connection's SYN-ACK and banner to
 * the same one); a new key takes the bucket's first empty slot, else its
 * oldest. Times are in units of 2^20 ns (~1.05 ms), 0 = empty slot. */
#define ZB_DEDUP_WAYS 16
#define ZB_DEDUP_SHIFT 20

struct zb_dedup_slot {
	__u32 saddr;            /* IPv6: the address's last 4 bytes */
	__u32 ports;            /* sport | dport << 16 */
	__u32 kind;
	__u32 first_t;          /* when the reply was first seen */
	__u32 answered_t;       /* when we last answered it */
#if ZB_IPV6
	__u32 saddr_hi[3];      /* IPv6: the address's first 12 bytes: a key is the whole address */
#endif
};

struct zb_dedup_bucket {
	struct zb_dedup_slot slot[ZB_DEDUP_WAYS];
};

#ifdef ZB_SHARED_CHECKS
ZB_SHARED_CHECKS
#endif

#endif
