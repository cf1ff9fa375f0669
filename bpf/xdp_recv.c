/* zbanner-xdp receive path.
 *
 * Recognises the replies to our probes without any per-connection state:
 * every probe carried a keyed cookie (TCP sequence number, ICMP id/seq, DNS
 * id, NTP timestamp) and a source port derived from one, so a reply tells by
 * itself whether (and to what) it answers. Replies that are ours are
 * deduplicated, copied to a ring buffer and consumed (XDP_DROP): the host
 * kernel never sees them, so it never answers our SYN-ACKs or banners with
 * RSTs of its own and no firewall rule is needed. Everything else passes
 * untouched.
 *
 * Compile-time parameters (-D, set by zbanner_xdp/bpfprog.py):
 *   ZB_SRC_IP_RAW       our IPv4 address as the raw packet word
 *   ZB_IPV6             1: an IPv6 scan (our address ZB_SRC_IP6_W0..W3, its raw words); the
 *                       program then takes IPv6 frames only and IPv4 ones pass, as the other way round
 *   ZB_PORT_LO/HI       our source-port range (host order, inclusive)
 *   ZB_PROBES           probes in the scan (P)
 *   ZB_VARIANTS         P * attempts; variant = (port - LO) % VARIANTS,
 *                       probe = variant % P, attempt = variant / P (zb_split_variant)
 *   ZB_SLOTS            (HI - LO + 1) / VARIANTS; a probe's port is
 *                       LO + variant + VARIANTS * (cookie(us, them, 0, their port) % SLOTS)
 *   ZB_ICMP_VARIANT     the icmp-echo probe's index, or -1
 *   ZB_BANNERS          1: expect data segments acking our probe payload
 *   ZB_SEGMENTS         1 (--banner-bytes): every data segment and FIN acking our probe goes up,
 *                       never deduplicated here: user space reassembles them in sequence order,
 *                       and it alone knows which bytes are new (zbanner_xdp/segments.py)
 *   ZB_DEDUP_BUCKETS    buckets of the duplicate filter (ZB_DEDUP_WAYS replies each),
 *                       a power of two
 *   ZB_DEDUP_WINDOW_NS  a repeat older than this is new again (0: never)
 *   ZB_EMIT_REPEATS     1: network duplicates also produce (flagged) records
 *   ZB_REANSWER_NS      a repeat this long after our answer is a retransmission (0: never)
 *   ZB_RINGBUF_PAGES    small-record ring size in pages (power of two)
 *   ZB_BANNER_PAGES     banner ring size in pages (power of two)
 *   ZB_SHORT_PAGES      > 0: banners of up to ZB_SHORT_MAX bytes go to a ring of their own
 *                       (`shorts`, this many pages); 0: every banner to `banners`
 *   ZB_GENERATOR        1: also the kernel-side SYN generator (xdp_gen)
 *   ZB_GEN_SLOTS        entries in the generator's target ring
 *   ZB_KERNEL_REPLIES   1: answer SYN-ACKs and banners in the program (XDP_TX)
 *   ZB_TTL, ZB_ACK_WINDOW  for those answers
 *   ZB_PCAP_SNAP        > 0 (--pcap): every recorded reply's first ZB_PCAP_SNAP bytes (a multiple
 *                       of 8) also go to the `frames` ring (ZB_PCAP_PAGES pages), for the pcap file
 *   ZB_SHARED_CHECKS    static asserts that events.py mirrors shared.h (see there)
 */
#include <uapi/linux/bpf.h>
/* The uapi headers: the kernel-internal linux/ip.h and friends pull in most of
 * the kernel and tripled the compile time of every scan (1.7 s -> 0.6 s). */
#include <uapi/linux/if_ether.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/tcp.h>
#include <uapi/linux/udp.h>
#include <uapi/linux/icmp.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ipv6.h>
#include <uapi/linux/icmpv6.h>

#include "shared.h"
#include "cookie.h"
#include "csum.h"
#include "parsing.h"

/* Two rings, one record size each: user space reads a whole batch as one
 * strided numpy view of the mmapped ring instead of walking it record by
 * record. */
BPF_RINGBUF_OUTPUT(events, ZB_RINGBUF_PAGES);
BPF_RINGBUF_OUTPUT(banners, ZB_BANNER_PAGES);
#if ZB_SHORT_PAGES
#if ZB_SEGMENTS
#error "the short-banner ring would reorder a connection's segments (user space never asks for both)"
#endif
BPF_RINGBUF_OUTPUT(shorts, ZB_SHORT_PAGES);
#endif
BPF_PERCPU_ARRAY(counters, __u64, ZB_CNT_MAX);
BPF_ARRAY(config, struct zb_config, 1);
BPF_ARRAY(probe_info, struct zb_probe_info, ZB_PROBES);
/* An array, not an LRU hash: an LRU insert (lock, list moves, evictions)
 * cost ~200 ns per reply, more than the rest of the program together. */
BPF_ARRAY(dedup, struct zb_dedup_bucket, ZB_DEDUP_BUCKETS);
#if ZB_KERNEL_REPLIES
/* Per probe, one template per length of the target address's text (shared.h). */
BPF_ARRAY(kpayload, struct zb_kpayload, ZB_PROBES * ZB_KP_VARIANTS);
/* Where an answer's per-target parts are made (the address's text, a range's bytes): the
 * program's 512-byte stack has no room left for an IPv6 text's 40 bytes. */
struct zb_kr_buf {
	__u64 w[6];
};
BPF_PERCPU_ARRAY(kr_buf, struct zb_kr_buf, 1);
#endif
#ifndef ZB_PCAP_SNAP
#define ZB_PCAP_SNAP 0
#endif
#if ZB_PCAP_SNAP
/* --pcap: a copy of the frame as it arrived (the pcap writer's records, zbanner_xdp/pcap.py). A
 * ring of its own, so a scan without --pcap pays nothing and the other rings keep their layout. */
struct zb_frame {
	__u64 ts_ns;            /* the same bpf_ktime_get_ns() as the reply's event */
	__u32 len;              /* the frame's length on the wire */
	__u32 caplen;           /* bytes copied into data[] */
	__u8 data[ZB_PCAP_SNAP];
};
BPF_RINGBUF_OUTPUT(frames, ZB_PCAP_PAGES);
BPF_ARRAY(pcap_lost, __u64, 1);  /* frames the ring had no room for */
#endif
#if ZB_GENERATOR
BPF_F_TABLE("array", __u32, struct zb_gen_target, gen_targets, ZB_GEN_SLOTS, BPF_F_MMAPABLE);
BPF_ARRAY(gen_state, struct zb_gen_state, 1);
BPF_ARRAY(gen_template, struct zb_gen_template, 1);
#endif

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_PSH 0x08
#define TCP_ACK 0x10

/* Handler results besides XDP_DROP (ours, consumed). */
#define ZB_ANSWER 100 /* emit(): recorded (or a retransmission), to be answered */
#define ZB_NOT_OURS (-1)
#define ZB_BAD (-2) /* to our address and ports, but fails validation */

/* Everything emit() needs to know about one reply, host order unless raw. */
struct zb_reply {
	__u32 target_raw;
	__u32 us_raw;
	__u32 seq;
	__u32 ack;
	__u32 icmp_responder_raw;
	__u32 data_off;
	__u16 target_port;
	__u16 our_port;
	__u16 key_port;
	__u16 window;
	__u16 ipid;
	__u16 payload_len;
	__u8 ttl;
	__u8 kind;
	__u8 tcp_flags;
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 variant;
	__u8 flags;
	__u8 with_data;
	__u8 kernel_answer;     /* the program will answer this reply itself */
#if ZB_IPV6
	__u32 target6[4];       /* IPv6: the whole addresses (target_raw etc. their last words) */
	__u32 responder6[4];
#endif
};

/* The network layer of a reply, either family: what the handlers need of it. IPv4 fills us and
 * them (raw); IPv6 also the whole addresses (their last words in us and them). */
struct zb_l3 {
	__u32 us;
	__u32 them;
#if ZB_IPV6
	__u32 us6[4];
	__u32 them6[4];
#endif
	__u32 l4_len;           /* bytes from the transport header to the end of the IP payload */
	__u16 ipid;             /* IPv4 ID; IPv6: 0 */
	__u8 ttl;               /* TTL / hop limit */
	__u8 plain;             /* right after Ethernet, IPv4 with a 20-byte header or IPv6 without extension
				 * headers: the layout in-kernel replies rewrite */
};

static __always_inline void l3_target(struct zb_reply *r, struct zb_l3 *a)
{
	r->target_raw = a->them;
	r->us_raw = a->us;
#if ZB_IPV6
	__builtin_memcpy(r->target6, a->them6, 16);
#endif
}

/* The cookie of a 4-tuple; `a` gives the addresses (us, them), as the family has them. */
static __always_inline __u32 l3_cookie(struct zb_config *cfg, struct zb_l3 *a, __u16 our_port_raw,
				       __u16 their_port_raw)
{
#if ZB_IPV6
	return zb_cookie6(cfg->k0, cfg->k1, a->us6, a->them6, our_port_raw, their_port_raw);
#else
	return zb_cookie(cfg->k0, cfg->k1, a->us, a->them, our_port_raw, their_port_raw);
#endif
}

static __always_inline void count(__u32 idx)
{
	__u64 *v = counters.lookup(&idx);
	if (v)
		*v += 1;
}

static __always_inline __u32 dotted_len(__u32 raw)
{
	__u32 n = 3;
#pragma unroll
	for (int i = 0; i < 4; i++) {
		__u32 b = (raw >> (8 * i)) & 0xff;
		n += 1 + (b >= 10) + (b >= 100);
	}
	return n;
}

#if ZB_IPV6
/* Group i (0-7) of an IPv6 address given as four raw words (the packet's bytes loaded
 * little-endian). */
static __always_inline __u32 group6(const __u32 *w, int i)
{
	__u32 word = w[i / 2];
	return (i % 2 == 0) ? (((word & 0xff) << 8) | ((word >> 8) & 0xff))
			    : ((((word >> 16) & 0xff) << 8) | (word >> 24));
}

/* A 0-8 value's "is not zero", a 0-0xff one's, a group's "is zero": 0/1 without a branch. */
#define ZB_NZ8(x) (((x) + 7) >> 3)
#define ZB_NZFF(x) (((x) + 0xff) >> 8)
#define ZB_Z16(g) ((((g) + 0xffff) >> 16) ^ 1)
/* A group's hex digits without leading zeros (1-4), without a branch. */
#define ZB_HEX_DIGITS(g) (1 + (((g) + 0xfff0) >> 16) + (((g) + 0xff00) >> 16) + (((g) + 0xf000) >> 16))

/* The first longest run of two or more zero groups: *at its first group, *len its length; 8 and
 * 0 if there is none. Without branches (bit masks: k's bit i says groups i..i+j are all zero), so
 * that inlined twice or thrice it adds no paths for the verifier to walk. */
static __always_inline void zero_run6(const __u32 *w, __u32 *at, __u32 *len)
{
	__u32 k = 0;
#pragma unroll
	for (int i = 0; i < 8; i++)
		k |= ZB_Z16(group6(w, i)) << i;
	__u32 l = 0, last = 0;
#pragma unroll
	for (int j = 0; j < 8; j++) {
		__u32 nz = ZB_NZFF(k);
		l += nz;
		last = (last & (nz - 1)) | (k & -nz); /* the last non-empty mask: runs of length l */
		k &= k >> 1;
	}
	__u32 b = last & -last; /* its first run's bit */
	__u32 first = ZB_NZFF(b & 0xaa) + 2 * ZB_NZFF(b & 0xcc) + 4 * ZB_NZFF(b & 0xf0);
	__u32 run = (l + 6) >> 3; /* l >= 2 */
	*at = 8 - run * (8 - first);
	*len = run * l;
}

/* The length of an IPv6 address's RFC 5952 text (Python's ipaddress): groups in hex without
 * leading zeros, the first longest run of two or more zero groups written "::". */
static __always_inline __u32 text6_len(const __u32 *w)
{
	__u32 digits = 0, at, len;
#pragma unroll
	for (int i = 0; i < 8; i++) {
		__u32 g = group6(w, i);
		digits += ZB_HEX_DIGITS(g);
	}
	zero_run6(w, &at, &len);
	/* The run's groups (one digit each) go; "::" stands for the colons around and inside it. */
	__u32 after = 8 - at - len, run = ZB_NZ8(len);
	return digits - len + run * (at - ZB_NZ8(at) + after - ZB_NZ8(after) + 2) + (1 - run) * 7;
}

#if ZB_KERNEL_REPLIES
/* The RFC 5952 text itself (text6_len's rules), first character first, into t[] (48 bytes of a
 * map value: its length (2-39) and zeros past it; 0 if it does not fit). A group's part (nothing
 * inside the zero run, "::" at its start, else an optional ':' and 1-4 hex digits) goes in as
 * one 8-byte store, the next part overwriting its zeros; it is chosen with 0/1 arithmetic rather
 * than branches, so the verifier does not walk every combination of 8 groups. */
static __always_inline __u32 text6_text(const __u32 *w, __u8 *t)
{
	__u32 at, len;
	zero_run6(w, &at, &len);
#pragma unroll
	for (int j = 0; j < 6; j++)
		((__u64 *)t)[j] = 0; /* what an earlier answer left past this one's end */
	__u64 pos = 0, end = at + len;
#pragma unroll
	for (int i = 0; i < 8; i++) {
		__u64 g = group6(w, i);
		__u64 nd = ZB_HEX_DIGITS(g);
		__u64 from = ((i + 16 - (__u64)at) >> 4) & 1; /* i >= at (both 0-8) */
		__u64 in = from & (((end + 15 - i) >> 4) & 1); /* ... and i < at + len */
		__u64 start = from & ((((__u64)at + 16 - i) >> 4) & 1); /* i == at */
		__u64 plain = 1 - in;
		__u64 x = end ^ i;
		__u64 sep = i ? plain & ((x | -x) >> 63) : 0; /* not first, not right after the run */
		__u64 hex = 0; /* the 4 digits, the last in the low byte */
#pragma unroll
		for (int j = 0; j < 4; j++) {
			__u64 nib = (g >> (4 * j)) & 0xf;
			hex |= (nib + '0' + ((nib + 6) >> 4) * ('a' - '0' - 10)) << (8 * j);
		}
		/* In memory order (the first digit in the low byte), without the leading zeros. */
		__u64 digits = __builtin_bswap32((__u32)hex) >> (8 * (4 - nd));
		__u64 part = start * 0x3a3a + plain * (sep * ':' + (digits << (8 * sep)));
		if (pos > 40)
			return 0;
		*(zb_u64_any *)(t + pos) = part;
		pos += start * 2 + plain * (nd + sep); /* 0-5 characters */
	}
	return (__u32)pos;
}
#endif
#endif

#if ZB_KERNEL_REPLIES
/* What the answer needs from the reply, read before the frame is resized. */
struct zb_kr {
	__u8 mac[12];
	__u32 us;
	__u32 them;
	__be16 our_port;
	__be16 their_port;
	__u32 their_seq;
	__u32 their_ack;
	__u32 plen;
	__u32 kp_index; /* the template's entry (ZB_KP_INDEX) */
	__u8 with_payload;
	__u8 ok;
#if ZB_IPV6
	__u32 us6[4];
	__u32 them6[4];
#endif
};

/* A probe's template for a target (`x`: anything with its them/them6): one per length of the
 * address's text (kpayload.py). */
#if ZB_IPV6
#define ZB_KP_INDEX(probe, x) ((probe) * ZB_KP_VARIANTS + text6_len((x)->them6)) /* 2-39 */
#else
#define ZB_KP_INDEX(probe, x) ((probe) * ZB_KP_VARIANTS + dotted_len((x)->them)) /* 7-15 */
#endif
static __always_inline struct zb_kpayload *kp_at(__u32 i)
{
	return kpayload.lookup(&i);
}

/* Our answer's headers: Ethernet, IP, TCP (20 bytes, no options); the payload follows. */
#if ZB_IPV6
#define ZB_KR_HDRS 74
#else
#define ZB_KR_HDRS 54
#endif

/* The dotted address as text, first character first, in out[] (16 bytes,
 * zero-padded): built right-aligned in a 128-bit value, moved left, stored
 * most significant byte first. No variable-offset stack writes, which the
 * verifier would refuse. Returns its length (7-15). */
static __always_inline __u32 dotted_text(__u32 raw, __u64 out[2])
{
	__u64 hi = 0, lo = 0;
	__u32 n = 0;
#define ZB_PUT(c)                                   \
	do {                                        \
		hi = (hi << 8) | (lo >> 56);        \
		lo = (lo << 8) | (__u64)(c);        \
		n++;                                \
	} while (0)
#pragma unroll
	for (int i = 0; i < 4; i++) {
		__u32 b = (raw >> (8 * i)) & 0xff;
		if (b >= 100)
			ZB_PUT('0' + b / 100);
		if (b >= 10)
			ZB_PUT('0' + (b / 10) % 10);
		ZB_PUT('0' + b % 10);
		if (i < 3)
			ZB_PUT('.');
	}
#undef ZB_PUT
	__u32 shift = (16 - n) * 8; /* 8-72 bits */
	if (shift >= 64) {
		hi = lo << (shift - 64);
		lo = 0;
	} else {
		hi = (hi << shift) | (lo >> (64 - shift));
		lo <<= shift;
	}
	out[0] = __builtin_bswap64(hi); /* little-endian hosts: the first character lands first */
	out[1] = __builtin_bswap64(lo);
	return n;
}

/* A template range's bytes for one target: SplitMix64 (probes/base.py range_bytes is the same). */
static __always_inline void kp_range(__u64 seed, __u32 ip, __u32 port, __u32 r, __u32 len, __u64 w[4])
{
	__u64 x = seed ^ ((__u64)ip << 32) ^ ((__u64)port << 16) ^ r;
#pragma unroll
	for (int j = 0; j < 4; j++) {
		x += 0x9E3779B97F4A7C15ULL;
		__u64 z = x;
		z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
		z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
		w[j] = (__u32)j < len / 8 ? z ^ (z >> 31) : 0; /* zeros past the range: no checksum share */
	}
}

/* A region's word sum as part of the payload's: folded to 16 bits, byte-swapped at an odd
 * offset (its bytes then sit in the other halves of the payload's words). */
static __always_inline __u32 csum_at(__u64 part, __u32 offset)
{
	part = (part & 0xffff) + (part >> 16);
	part = (part & 0xffff) + (part >> 16);
	part = (part & 0xffff) + (part >> 16);
	if (offset & 1)
		part = ((part & 0xff) << 8) | (part >> 8);
	return (__u32)part;
}
#endif

/* Duplicate filter. A reply seen before inside the window is a repeat:
 * counted, never recorded twice. Network duplicates arrive together and are
 * dropped; a repeat arriving ZB_REANSWER_NS or more after we last answered
 * is the server retransmitting because our answer (ACK+probe, RST) was lost,
 * so it goes up once more flagged ZB_REPEAT_RETRANSMIT for user space to
 * answer again, and a lost ACK costs a delay instead of the banner. */
static __always_inline struct zb_dedup_bucket *dedup_bucket(struct zb_dedup_key *k)
{
	/* Keys are already validated replies (a forger cannot choose them without the cookie key), so
	 * speed wins over a keyed hash; but every bit of the key must reach the bucket index. The
	 * first mixing (32-bit multiplies, then one shift) kept only bits 15-31 of the address's and
	 * ports' products: a /16 of targets on one port filled 80k of 131k buckets, up to 16 keys
	 * each, and evicted hundreds of entries a scan (their repeats recorded again). MurmurHash3's
	 * 64-bit finalizer over the whole key instead; zbanner_xdp/events.py dedup_index mirrors it. */
	__u64 h = (__u64)k->saddr | ((__u64)(k->sport | ((__u32)k->dport << 16)) << 32);
#if ZB_IPV6
	h ^= ((__u64)k->saddr_hi[0] | ((__u64)k->saddr_hi[1] << 32)) * 0x9E3779B97F4A7C15ULL;
	h ^= (__u64)k->saddr_hi[2] * 0xC2B2AE3D27D4EB4FULL;
#endif
	/* A connection's SYN-ACK (zero-window or not) and its banner share a bucket: the banner's run
	 * then finds the cache line the SYN-ACK's loaded. A random bucket of the 20 MiB default table
	 * is a cache miss, about half of this program's time (perf, SSH banners from the emulator);
	 * the other kinds (a FIN, a RST, ICMP) keep buckets of their own. */
	__u32 kind = k->kind;
	if (kind != ZB_KIND_SYNACK && kind != ZB_KIND_ZEROWIN && kind != ZB_KIND_BANNER)
		h ^= (__u64)kind * 0x165667B19E3779F9ULL;
	h ^= h >> 33;
	h *= 0xFF51AFD7ED558CCDULL;
	h ^= h >> 33;
	h *= 0xC4CEB9FE1A85EC53ULL;
	h ^= h >> 33;
	__u32 idx = (__u32)h & (ZB_DEDUP_BUCKETS - 1);
	return dedup.lookup(&idx);
}

static __always_inline int dedup_find(struct zb_dedup_bucket *b, struct zb_dedup_key *k)
{
	__u32 ports = k->sport | ((__u32)k->dport << 16);
#pragma unroll
	for (int i = 0; i < ZB_DEDUP_WAYS; i++) {
		struct zb_dedup_slot *s = &b->slot[i];
		/* Slots fill in order (dedup_insert takes the first empty one) and are never emptied:
		 * past the first empty one there is nothing, and a sparse bucket's later cache lines
		 * are never read. */
		if (!s->first_t)
			break;
		if (s->saddr == k->saddr && s->ports == ports && s->kind == k->kind
#if ZB_IPV6
		    && s->saddr_hi[0] == k->saddr_hi[0] && s->saddr_hi[1] == k->saddr_hi[1] &&
		    s->saddr_hi[2] == k->saddr_hi[2]
#endif
		)
			return i;
	}
	return -1;
}

/* How long ago a slot's key was first seen, in the filter's units. first_t is stored as now_t | 1 (0
 * marks an empty slot), one unit ahead when now_t was even: without the bit, a slot written in this
 * very unit has age 0, not 2^32 - 1 (which took a repeat for one past the window, recorded again). */
static __always_inline __u32 slot_age(__u32 first_t, __u32 now_t)
{
	return now_t - (first_t & ~1u);
}

static __always_inline __u8 classify_repeat(struct zb_dedup_bucket *b, struct zb_dedup_key *k, __u32 now_t,
					    int answerable, struct zb_dedup_slot **expired)
{
	*expired = 0;
	if (!b)
		return 0;
	int i = dedup_find(b, k);
	if (i < 0 || i >= ZB_DEDUP_WAYS)
		return 0;
	struct zb_dedup_slot *seen = &b->slot[i];
	if (ZB_DEDUP_WINDOW_NS && slot_age(seen->first_t, now_t) > (__u32)(ZB_DEDUP_WINDOW_NS >> ZB_DEDUP_SHIFT)) {
		/* Seen longer ago than the window: new again. Its slot starts the new window once the
		 * reply is recorded (dedup_renew): a second slot for the key would never be found, this
		 * one coming first, so every later repeat was taken for new and added yet another slot,
		 * pushing other keys out. */
		*expired = seen;
		return 0;
	}
	if (answerable && ZB_REANSWER_NS && now_t - seen->answered_t >= (__u32)(ZB_REANSWER_NS >> ZB_DEDUP_SHIFT)) {
		seen->answered_t = now_t;
		return ZB_REPEAT_RETRANSMIT;
	}
	return ZB_REPEAT_DUP;
}

/* A key seen again after the window: its slot starts the new one. */
static __always_inline void dedup_renew(struct zb_dedup_slot *s, __u32 now_t)
{
	s->first_t = now_t | 1;
	s->answered_t = now_t;
}

/* Remember a first reply in the bucket's empty or oldest slot. */
static __always_inline void dedup_insert(struct zb_dedup_bucket *b, struct zb_dedup_key *k, __u32 now_t)
{
	if (!b)
		return;
	int victim = 0;
	__u32 max_age = 0;
#pragma unroll
	for (int i = 0; i < ZB_DEDUP_WAYS; i++) {
		__u32 t = b->slot[i].first_t;
		if (!t) {
			victim = i;
			break;
		}
		__u32 age = slot_age(t, now_t);
		if (age >= max_age) {
			max_age = age;
			victim = i;
		}
	}
	if (victim < 0 || victim >= ZB_DEDUP_WAYS)
		return;
	struct zb_dedup_slot *s = &b->slot[victim];
	s->saddr = k->saddr;
#if ZB_IPV6
	__builtin_memcpy(s->saddr_hi, k->saddr_hi, 12);
#endif
	s->ports = k->sport | ((__u32)k->dport << 16);
	s->kind = k->kind;
	s->first_t = now_t | 1;  /* never 0: that marks an empty slot */
	s->answered_t = now_t;
}

#if ZB_PCAP_SNAP
/* The frame's first bytes, as they arrived, for the pcap: called only for replies that will be
 * recorded, before anything (an in-kernel answer) could rewrite the frame. */
static __always_inline void pcap_copy(struct xdp_md *ctx, __u64 now)
{
	struct zb_frame *f = frames.ringbuf_reserve(sizeof(struct zb_frame));
	if (!f) {
		__u32 zero = 0;
		__u64 *lost = pcap_lost.lookup(&zero);
		if (lost)
			__sync_fetch_and_add(lost, 1);
		return;
	}
	__u64 len = bpf_xdp_get_buff_len(ctx);
	__u64 cap = len < ZB_PCAP_SNAP ? len : ZB_PCAP_SNAP;
	asm volatile("" : "+r"(cap)); /* the verifier must see the register it bounded (see emit()) */
	if (cap >= 1 && cap <= ZB_PCAP_SNAP) {
		if (bpf_xdp_load_bytes(ctx, 0, f->data, cap) < 0)
			cap = 0;
	} else {
		cap = 0;
	}
	f->ts_ns = now;
	f->len = len;
	f->caplen = cap;
	frames.ringbuf_submit(f, 0);
}
#endif

static __always_inline int emit(struct xdp_md *ctx, struct zb_reply *r)
{
	__u64 now = bpf_ktime_get_ns();
	struct zb_dedup_key key = {
		.saddr = r->target_raw,
		.sport = r->target_port,
		.dport = r->key_port,
		.kind = r->kind | ((__u32)r->icmp_type << 8),
	};
#if ZB_IPV6
	__builtin_memcpy(key.saddr_hi, r->target6, 12);
#endif
	int answerable = r->kind == ZB_KIND_SYNACK || r->kind == ZB_KIND_ZEROWIN || r->kind == ZB_KIND_BANNER;
	__u32 now_t = (__u32)(now >> ZB_DEDUP_SHIFT);
	struct zb_dedup_bucket *bucket = dedup_bucket(&key);
	/* With ZB_SEGMENTS a banner's later segments share the first one's key: the filter would
	 * take them for repeats. User space orders them by sequence number instead. */
	int segment = ZB_SEGMENTS && (r->kind == ZB_KIND_BANNER || r->kind == ZB_KIND_FIN);
	if (segment)
		bucket = 0;
	struct zb_dedup_slot *expired;
	__u8 repeat = classify_repeat(bucket, &key, now_t, answerable, &expired);
	int answer = answerable && repeat != ZB_REPEAT_DUP;
	int verdict = answer && r->kernel_answer ? ZB_ANSWER : XDP_DROP;
	if (repeat) {
		count(ZB_CNT_REPEAT);
		if (repeat == ZB_REPEAT_DUP && !ZB_EMIT_REPEATS)
			return XDP_DROP;
	}
#if ZB_PCAP_SNAP
	/* What user space records: not a FIN or an ACK (only a multi-step probe's step evidence), not a
	 * repeat passed up only to be answered again (unless --output-repeats records repeats). */
	if (r->kind != ZB_KIND_FIN && r->kind != ZB_KIND_ACKED && (!repeat || ZB_EMIT_REPEATS))
		pcap_copy(ctx, now);
#endif

	struct zb_event *ev;
	__u64 copy = 0;
	if (r->with_data) {
		__u8 *data;
		__u64 room;
#if ZB_SHORT_PAGES
		/* User space enables the short ring only for scans whose banners are one segment each
		 * (no --banner-bytes, no multi-connection probe): a connection's segments never need
		 * ordering across the two rings. */
		if (r->payload_len <= ZB_SHORT_MAX) {
			struct zb_short_event *sev = shorts.ringbuf_reserve(sizeof(struct zb_short_event));
			if (!sev) {
				count(ZB_CNT_RINGBUF_FULL);
				return verdict;
			}
			ev = &sev->h;
			data = sev->data;
			room = ZB_SHORT_MAX;
		} else
#endif
		{
			struct zb_banner_event *bev = banners.ringbuf_reserve(sizeof(struct zb_banner_event));
			if (!bev) {
				count(ZB_CNT_RINGBUF_FULL);
				return verdict;
			}
			ev = &bev->h;
			data = bev->data;
			room = ZB_DATA_MAX;
		}
		copy = r->payload_len < room ? r->payload_len : room;
		/* Keep clang from re-deriving `copy` after the check: the verifier
		 * must see the very register it bounded passed to the helper. */
		asm volatile("" : "+r"(copy));
		if (copy >= 1 && copy <= room) {
			if (bpf_xdp_load_bytes(ctx, r->data_off, data, copy) < 0)
				copy = 0;
		} else {
			copy = 0;
		}
	} else {
		ev = events.ringbuf_reserve(sizeof(struct zb_event));
		if (!ev) {
			count(ZB_CNT_RINGBUF_FULL);
			return verdict;
		}
	}
	if (expired)
		dedup_renew(expired, now_t);
	else if (!repeat)
		dedup_insert(bucket, &key, now_t);

	ev->ts_ns = now;
	ev->saddr = r->target_raw;
	ev->daddr = r->us_raw;
	ev->seq = r->seq;
	ev->ack = r->ack;
	ev->icmp_responder = r->icmp_responder_raw;
	ev->sport = r->target_port;
	ev->dport = r->our_port;
	ev->window = r->window;
	ev->ipid = r->ipid;
	ev->data_len = copy;
	ev->payload_len = r->payload_len;
	ev->ttl = r->ttl;
	ev->kind = r->kind;
	ev->tcp_flags = r->tcp_flags;
	ev->icmp_type = r->icmp_type;
	ev->icmp_code = r->icmp_code;
	ev->repeat = repeat;
	ev->variant = r->variant;
	ev->flags = r->flags | (verdict == ZB_ANSWER ? ZB_EV_ANSWERED : 0);
#if ZB_IPV6
	__builtin_memcpy(ev->saddr6, r->target6, 16);
	__builtin_memcpy(ev->icmp_responder6, r->responder6, 16);
#endif
	events.ringbuf_submit(ev, 0);
	return verdict;
}

#if ZB_KERNEL_REPLIES
/* Turn the reply in place into our answer, in two steps around emit(): a
 * SYN-ACK becomes the ACK carrying the probe's payload (or a RST for
 * SYN-only probes), a zero-window SYN-ACK or a banner becomes a RST. The
 * handshake then never touches user space. Step one reads what the answer
 * needs and sizes the frame; if it cannot, user space answers instead. */
static __always_inline void kernel_reply_prepare(struct xdp_md *ctx, __u8 kind, __u32 probe, struct zb_kr *kr)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
#if ZB_IPV6
	struct ipv6hdr *ip6 = (void *)(eth + 1);
	struct tcphdr *tcp = (void *)(ip6 + 1);
	kr->ok = 0;
	if ((void *)(tcp + 1) > end)
		return;
	__builtin_memcpy(kr->us6, &ip6->daddr, 16);
	__builtin_memcpy(kr->them6, &ip6->saddr, 16);
	kr->us = kr->us6[3];
	kr->them = kr->them6[3];
#else
	struct iphdr *ip = (void *)(eth + 1);
	struct tcphdr *tcp = (void *)(ip + 1);
	kr->ok = 0;
	if ((void *)(tcp + 1) > end)
		return;
	kr->us = ip->daddr;
	kr->them = ip->saddr;
#endif
	kr->kp_index = ZB_KP_INDEX(probe, kr); /* found once, kept for finishing the answer */
	struct zb_kpayload *kp = kp_at(kr->kp_index);
	if (!kp || !kp->enabled)
		return;
	__builtin_memcpy(kr->mac, eth->h_dest, 12);
	kr->our_port = tcp->dest;
	kr->their_port = tcp->source;
	kr->their_seq = bpf_ntohl(tcp->seq);
	kr->their_ack = bpf_ntohl(tcp->ack_seq);
	kr->with_payload = kind == ZB_KIND_SYNACK && kp->handshake;
	kr->plen = kr->with_payload ? kp->len : 0;
	if (kr->plen > ZB_KPAYLOAD_MAX)
		return;
	/* On a veth, XDP may run on the skb's own buffer with only a few bytes
	 * of tailroom: grow at the tail when possible, else at the head. */
	int delta = (int)(ZB_KR_HDRS + kr->plen) - (int)(end - data);
	if (delta < 0 || delta > 0) {
		if (bpf_xdp_adjust_tail(ctx, delta)) {
			/* Growing at the head must leave room to spare: with under
			 * ~50 bytes of headroom a veth accepts XDP_TX and then loses
			 * the frame. Take 32 more than needed, then give them back. */
			if (delta < 0 || bpf_xdp_adjust_head(ctx, -(delta + 32))) {
				count(ZB_CNT_NO_ROOM);
				return;
			}
			if (bpf_xdp_adjust_head(ctx, 32))
				return;
		}
	}
	kr->ok = 1;
}

static __always_inline int kernel_reply_finish(struct xdp_md *ctx, struct zb_kr *kr)
{
	struct zb_kpayload *kp = kp_at(kr->kp_index);
	if (!kp)
		return XDP_DROP;
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
#if ZB_IPV6
	struct ipv6hdr *ip6 = (void *)(eth + 1);
	struct tcphdr *tcp = (void *)(ip6 + 1);
#else
	struct iphdr *ip = (void *)(eth + 1);
	struct tcphdr *tcp = (void *)(ip + 1);
#endif
	if ((void *)(tcp + 1) > end)
		return XDP_DROP;
	__u32 plen = kr->plen;
	__u64 extra = 0; /* word sums of what the program writes into the template */

	__builtin_memcpy(eth->h_dest, kr->mac + 6, 6);
	__builtin_memcpy(eth->h_source, kr->mac, 6);
#if ZB_IPV6
	eth->h_proto = bpf_htons(ETH_P_IPV6);
	*(__be32 *)ip6 = bpf_htonl(6 << 28); /* version, no traffic class, flow label 0 */
	ip6->payload_len = bpf_htons(20 + plen);
	ip6->nexthdr = IPPROTO_TCP;
	ip6->hop_limit = ZB_TTL;
	__builtin_memcpy(&ip6->saddr, kr->us6, 16);
	__builtin_memcpy(&ip6->daddr, kr->them6, 16);
#else
	eth->h_proto = bpf_htons(ETH_P_IP);
	ip->version = 4;
	ip->ihl = 5;
	ip->tos = 0;
	ip->tot_len = bpf_htons(40 + plen);
	ip->frag_off = bpf_htons(0x4000);
	ip->ttl = ZB_TTL;
	ip->protocol = IPPROTO_TCP;
	ip->saddr = kr->us;
	ip->daddr = kr->them;
	ip->check = 0;
#endif

	/* ACK+payload: seq = their ack (cookie+1), ack = their seq+1. RST after
	 * a SYN-ACK or a banner: seq = their ack, nothing acked. */
	__u32 seq = kr->their_ack;
	__u32 ack = kr->with_payload ? kr->their_seq + 1 : 0;
	__u8 flags = kr->with_payload ? (plen ? TCP_PSH | TCP_ACK : TCP_ACK) : TCP_RST;
#if !ZB_IPV6
	ip->id = bpf_htons(seq >> 16);
#endif
	tcp->source = kr->our_port;
	tcp->dest = kr->their_port;
	tcp->seq = bpf_htonl(seq);
	tcp->ack_seq = bpf_htonl(ack);
	((__u8 *)tcp)[12] = 5 << 4;
	((__u8 *)tcp)[13] = flags;
	tcp->window = kr->with_payload ? bpf_htons(ZB_ACK_WINDOW) : 0;
	tcp->check = 0;
	tcp->urg_ptr = 0;

	if (plen) {
		__u64 n = plen;
		asm volatile("" : "+r"(n));
		if (n < 1 || n > ZB_KPAYLOAD_MAX)
			return XDP_DROP;
		if (bpf_xdp_store_bytes(ctx, ZB_KR_HDRS, kp->data, n))
			return XDP_DROP;
		/* The template's per-target parts: the address text, the pseudo-random ranges. */
		__u32 zero = 0;
		struct zb_kr_buf *kb = kr_buf.lookup(&zero);
		if (!kb)
			return XDP_DROP;
		__u64 *buf = kb->w;
		__u32 at = kp->ip_at;
		if (at != ZB_KP_NONE) {
#if ZB_IPV6
			__u64 tl = text6_text(kr->them6, (__u8 *)buf);
			asm volatile("" : "+r"(tl)); /* checked as the helper will see it */
			if (at > ZB_KPAYLOAD_MAX || at + tl > n || tl < 2 || tl > 39)
				return XDP_DROP;
			__u64 txt_sum = zb_words(buf, 40);
#else
			__u64 tl = dotted_text(kr->them, buf);
			asm volatile("" : "+r"(tl));
			if (at > ZB_KPAYLOAD_MAX || at + tl > n || tl < 7 || tl > 15)
				return XDP_DROP;
			__u64 txt_sum = zb_words(buf, 16);
#endif
			if (bpf_xdp_store_bytes(ctx, ZB_KR_HDRS + at, buf, tl))
				return XDP_DROP;
			extra += csum_at(txt_sum, at);
		}
#pragma unroll
		for (int r = 0; r < ZB_KP_RANGES; r++) {
			__u32 rat = kp->range_at[r], rlen = kp->range_len[r];
			if (rat == ZB_KP_NONE)
				continue;
			if (rat > ZB_KPAYLOAD_MAX || rlen < 8 || rlen > ZB_KP_RANGE_MAX || rat + rlen > n)
				return XDP_DROP;
			kp_range(kp->seed, bpf_ntohl(kr->them), bpf_ntohs(kr->their_port), r, rlen, buf);
			if (bpf_xdp_store_bytes(ctx, ZB_KR_HDRS + rat, buf, rlen))
				return XDP_DROP;
			extra += csum_at(zb_words(buf, ZB_KP_RANGE_MAX), rat);
		}
		data = (void *)(long)ctx->data;
		end = (void *)(long)ctx->data_end;
#if ZB_IPV6
		ip6 = data + sizeof(struct ethhdr);
		tcp = (void *)(ip6 + 1);
#else
		ip = data + sizeof(struct ethhdr);
		tcp = (void *)(ip + 1);
#endif
		if ((void *)(tcp + 1) > end)
			return XDP_DROP;
	}
#if ZB_IPV6
	/* pseudo header: both addresses, the TCP length, the next header */
	__u64 sum = zb_words(&ip6->saddr, 32) + bpf_htons(IPPROTO_TCP) + bpf_htons(20 + plen) +
		    zb_words(tcp, 20);
#else
	ip->check = zb_csum_fold(zb_words(ip, 20));
	__u32 us = kr->us, them = kr->them;
	__u64 sum = (us & 0xffff) + (us >> 16) + (them & 0xffff) + (them >> 16) + bpf_htons(IPPROTO_TCP) +
		    bpf_htons(20 + plen) + zb_words(tcp, 20);
#endif
	if (plen)
		sum += kp->csum + extra;
	tcp->check = zb_csum_fold(sum);
	count(ZB_CNT_KERNEL_REPLIES);
	return XDP_TX;
}
#endif

/* emit(), then the in-kernel answer where one is due. The frame is sized
 * for the answer first: emit() reads nothing from it but banner bytes, and
 * a banner's answer (a RST) only ever shrinks it. */
static __always_inline int emit_and_answer(struct xdp_md *ctx, struct zb_reply *r)
{
#if ZB_KERNEL_REPLIES
	struct zb_kr kr = {};
	__u32 probe = zb_split_variant(r->variant).probe;
	if (r->kernel_answer && r->kind != ZB_KIND_BANNER) {
		kernel_reply_prepare(ctx, r->kind, probe, &kr);
		r->kernel_answer = kr.ok;
	}
	int v = emit(ctx, r);
	if (v != ZB_ANSWER)
		return v;
	if (r->kind == ZB_KIND_BANNER) {
		kernel_reply_prepare(ctx, r->kind, probe, &kr);
		if (!kr.ok)
			return XDP_DROP;
	}
	return kernel_reply_finish(ctx, &kr);
#else
	int v = emit(ctx, r);
	return v == ZB_ANSWER ? XDP_DROP : v;
#endif
}

static __always_inline struct zb_config *get_config(void)
{
	__u32 zero = 0;
	return config.lookup(&zero);
}

static __always_inline struct zb_probe_info *get_probe(__u32 probe)
{
	return probe_info.lookup(&probe);
}

/* Our port -> variant, or -1 when it is not one of ours. */
static __always_inline int port_variant(__u16 our_port)
{
	if (our_port < ZB_PORT_LO || our_port > ZB_PORT_HI)
		return -1;
	__u32 off = (__u32)(our_port - ZB_PORT_LO);
	if (off / (__u32)ZB_VARIANTS >= (__u32)ZB_SLOTS)
		return -1;
	return off % (__u32)ZB_VARIANTS;
}

/* The port-slot check: all a bare RST or a quoted UDP header can offer. */
static __always_inline int slot_ok(struct zb_config *cfg, struct zb_l3 *a, __u16 our_port,
				   __be16 their_port_raw)
{
	__u32 c0 = l3_cookie(cfg, a, 0, their_port_raw);
	__u32 slot = (__u32)(our_port - ZB_PORT_LO) / (__u32)ZB_VARIANTS;
	return slot == c0 % (__u32)ZB_SLOTS;
}

static __always_inline __u16 key_port(__u16 our_port, __u32 variant)
{
	/* Fold retransmitted attempts onto the first attempt's port. */
	return our_port - (__u16)(zb_split_variant(variant).attempt * (__u32)ZB_PROBES);
}

static __always_inline __u32 probe_payload_len(struct zb_probe_info *pi, struct zb_l3 *a)
{
	if (!pi)
		return 0;
	if (!pi->plus_ip_strlen)
		return pi->base;
#if ZB_IPV6
	return pi->base + text6_len(a->them6);
#else
	return pi->base + dotted_len(a->them);
#endif
}

/* Can the program answer this reply itself? Only for probes user space
 * enabled (fixed payloads) and frames it knows how to rewrite. */
static __always_inline __u8 kernel_answers(struct xdp_md *ctx, struct zb_l3 *a, int variant)
{
#if ZB_KERNEL_REPLIES
	struct ethhdr *eth = (void *)(long)ctx->data;
	__be16 proto = bpf_htons(ZB_IPV6 ? ETH_P_IPV6 : ETH_P_IP);
	if ((void *)(eth + 1) > (void *)(long)ctx->data_end || eth->h_proto != proto || !a->plain)
		return 0;
	__u32 probe = zb_split_variant(variant).probe;
	struct zb_kpayload *kp = kp_at(ZB_KP_INDEX(probe, a));
	return kp && kp->enabled;
#else
	return 0;
#endif
}

static __always_inline int handle_tcp(struct xdp_md *ctx, struct zb_cursor *c, struct zb_l3 *a)
{
	struct tcphdr *tcp = zb_parse_tcp(c);
	if (!tcp)
		return ZB_NOT_OURS;
	__u16 dport = bpf_ntohs(tcp->dest);
	int variant = port_variant(dport);
	if (variant < 0)
		return ZB_NOT_OURS;
	struct zb_config *cfg = get_config();
	if (!cfg)
		return ZB_NOT_OURS;

	__u32 cookie = l3_cookie(cfg, a, tcp->dest, tcp->source);
	__u32 ack = bpf_ntohl(tcp->ack_seq);
	__u8 flags = ((__u8 *)tcp)[13];
	__u32 hdrs = (__u32)(tcp->doff * 4);
	__u32 payload_len = a->l4_len > hdrs ? a->l4_len - hdrs : 0;

	struct zb_reply r = {
		.seq = bpf_ntohl(tcp->seq),
		.ack = ack,
		.data_off = (__u32)((long)c->pos - (long)ctx->data),
		.target_port = bpf_ntohs(tcp->source),
		.our_port = dport,
		.key_port = key_port(dport, variant),
		.window = bpf_ntohs(tcp->window),
		.ipid = a->ipid,
		.ttl = a->ttl,
		.tcp_flags = flags,
		.variant = variant,
	};
	l3_target(&r, a);

	if ((flags & (TCP_SYN | TCP_ACK)) == (TCP_SYN | TCP_ACK)) {
		if (ack - 1 != cookie)
			return ZB_BAD;
		r.kernel_answer = kernel_answers(ctx, a, variant);
		if (tcp->window == 0) {
			count(ZB_CNT_ZEROWIN);
			r.kind = ZB_KIND_ZEROWIN;
			return emit_and_answer(ctx, &r);
		}
		count(ZB_CNT_SYNACK);
		r.kind = ZB_KIND_SYNACK;
		return emit_and_answer(ctx, &r);
	}

	__u32 plen = 0;
	struct zb_probe_info *pi = 0;  /* looked up once: the length here, the flags for an ACK below */
	if (ZB_BANNERS) {
		pi = get_probe(zb_split_variant(variant).probe);
		plen = probe_payload_len(pi, a);
	}

	if (flags & TCP_RST) {
		r.kind = ZB_KIND_RST;
		if (!(flags & TCP_ACK)) {
			/* No ack to check: only the port slot says it is ours. */
			if (!slot_ok(cfg, a, dport, tcp->source))
				return ZB_BAD;
			count(ZB_CNT_RST_UNVALIDATED);
			r.flags = ZB_EV_UNVALIDATED;
			return emit(ctx, &r);
		}
		/* A RST answering the SYN acks cookie+1; some stacks ack cookie;
		 * one answering our probe data acks up to cookie+1+plen. */
		if (ack - cookie > 1 + plen)
			return ZB_BAD;
		count(ZB_CNT_RST);
		return emit(ctx, &r);
	}

	if (!(flags & TCP_ACK) || (flags & TCP_SYN))
		return ZB_BAD;
	/* Anything else acking inside our sequence space is ours: a pure ACK of
	 * the probe, a FIN, a later segment. Consume it silently so the kernel
	 * does not RST it; only the first data segment is the banner. */
	if (ack - cookie - 1 > plen)
		return ZB_BAD;
	/* Banners: ACK, PSH-ACK, FIN-ACK, FIN-PSH-ACK (ECN bits aside). */
	__u8 plain = (flags & 0x3f & ~(TCP_FIN | TCP_PSH | TCP_ACK)) == 0;
	if (ZB_BANNERS && plain && payload_len > 0 && ack == cookie + 1 + plen) {
		count(ZB_CNT_BANNER);
		r.kind = ZB_KIND_BANNER;
		r.payload_len = payload_len;
		r.with_data = 1;
		r.kernel_answer = kernel_answers(ctx, a, variant);
		return emit_and_answer(ctx, &r);
	}
	/* A FIN without data acking our whole probe: a multi-step probe's step may have drawn
	 * no answer (user space tells by its sequence number: data lost before it is
	 * retransmitted by the server, so such a FIN is no answer). Not answered: a RST
	 * would also cancel the retransmission of data lost before the FIN. */
	if (ZB_BANNERS && (flags & TCP_FIN) && payload_len == 0 && ack == cookie + 1 + plen) {
		count(ZB_CNT_FIN);
		r.kind = ZB_KIND_FIN;
		return emit(ctx, &r);
	}
	/* A pure ACK of our whole probe: the server has the request (a multi-step probe's proof that
	 * a step without answer is the server's silence, not a request lost on the way). */
	if (ZB_BANNERS && payload_len == 0 && ack == cookie + 1 + plen && plen) {
		if (pi && (pi->flags & ZB_PROBE_ACKS)) {
			count(ZB_CNT_ACKED);
			r.kind = ZB_KIND_ACKED;
			return emit(ctx, &r);
		}
	}
	count(ZB_CNT_IGNORED);
	return XDP_DROP;
}

static __always_inline int handle_udp(struct xdp_md *ctx, struct zb_cursor *c, struct zb_l3 *a)
{
	struct udphdr *udp = c->pos;
	if ((void *)(udp + 1) > c->end)
		return ZB_NOT_OURS;
	__u16 dport = bpf_ntohs(udp->dest);
	int variant = port_variant(dport);
	if (variant < 0)
		return ZB_NOT_OURS;
	struct zb_config *cfg = get_config();
	if (!cfg)
		return ZB_NOT_OURS;
	struct zb_probe_info *pi = get_probe(zb_split_variant(variant).probe);
	if (!pi || pi->proto != IPPROTO_UDP)
		return ZB_BAD;
	if (!slot_ok(cfg, a, dport, udp->source))
		return ZB_BAD;
	__u32 ulen = bpf_ntohs(udp->len);
	__u32 payload_len = ulen > sizeof(*udp) ? ulen - sizeof(*udp) : 0;
	__u32 data_off = (__u32)((long)(udp + 1) - (long)ctx->data);
	if (pi->cookie_len) {
		/* The reply must echo the cookie (DNS id, NTP origin timestamp). */
		__u32 cookie = l3_cookie(cfg, a, udp->dest, udp->source);
		__u8 b[4] = {};
		__u32 n = pi->cookie_len == 2 ? 2 : 4;
		if (pi->reply_cookie_off + n > payload_len)
			return ZB_BAD;
		if (n == 2) {
			if (bpf_xdp_load_bytes(ctx, data_off + pi->reply_cookie_off, b, 2) < 0)
				return ZB_BAD;
			if ((((__u32)b[0] << 8) | b[1]) != (cookie & 0xffff))
				return ZB_BAD;
		} else {
			if (bpf_xdp_load_bytes(ctx, data_off + pi->reply_cookie_off, b, 4) < 0)
				return ZB_BAD;
			if ((((__u32)b[0] << 24) | ((__u32)b[1] << 16) | ((__u32)b[2] << 8) | b[3]) != cookie)
				return ZB_BAD;
		}
	}
	struct zb_reply r = {
		.data_off = data_off,
		.target_port = bpf_ntohs(udp->source),
		.our_port = dport,
		.key_port = key_port(dport, variant),
		.ipid = a->ipid,
		.payload_len = payload_len,
		.ttl = a->ttl,
		.kind = ZB_KIND_UDP,
		.variant = variant,
		.with_data = 1,
	};
	l3_target(&r, a);
	count(ZB_CNT_UDP);
	return emit(ctx, &r);
}

/* The UDP checksum of our probe datagram for this 4-tuple, as sent (network
 * order): pseudo header, UDP header, the template's precomputed word sum
 * and the cookie's words, all as host-order 16-bit numbers. */
static __always_inline __u64 words16(__u32 raw)
{
	__u32 h = bpf_ntohl(raw);
	return (h >> 16) + (h & 0xffff);
}

static __always_inline __be16 udp_checksum(struct zb_config *cfg, struct zb_probe_info *pi, struct zb_l3 *a,
					   __be16 our_raw, __be16 their_raw)
{
	if (!pi)
		return 0;
	__u32 cookie = l3_cookie(cfg, a, our_raw, their_raw);
#if ZB_IPV6
	__u64 sum = 0;
#pragma unroll
	for (int i = 0; i < 4; i++)
		sum += words16(a->us6[i]) + words16(a->them6[i]);
#else
	__u64 sum = words16(a->us) + words16(a->them);
#endif
	sum += IPPROTO_UDP + 2 * (__u32)pi->udp_len + bpf_ntohs(our_raw) + bpf_ntohs(their_raw) + pi->udp_tmpl_sum;
	if (pi->cookie_len == 2)
		sum += cookie & 0xffff;
	else if (pi->cookie_len == 4)
		sum += (cookie >> 16) + (cookie & 0xffff);
	__u16 csum = zb_csum_fold(sum);
	return bpf_htons(csum ? csum : 0xffff);
}

static __always_inline int echo_matches(struct zb_config *cfg, struct zb_l3 *a, __be16 id, __be16 seq)
{
	__u32 cookie = l3_cookie(cfg, a, 0, 0);
	return bpf_ntohs(id) == (cookie >> 16) && bpf_ntohs(seq) == (cookie & 0xffff);
}

/* The quoted probe of an ICMP error (either family), from its transport header on: ours? The
 * reply `r` gets the target, ports and variant. `in` holds the quoted addresses (us, them). */
static __always_inline int quoted_probe(struct zb_config *cfg, struct zb_cursor *c, __u8 proto, __u8 echo_type,
					struct zb_l3 *in, struct zb_reply *r)
{
	__u8 *l4 = c->pos;
	if ((void *)(l4 + 8) > c->end)
		return ZB_BAD;
	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
		__be16 our_raw = *(__be16 *)l4;
		__be16 their_raw = *(__be16 *)(l4 + 2);
		__u16 our_port = bpf_ntohs(our_raw);
		int variant = port_variant(our_port);
		if (variant < 0)
			return ZB_NOT_OURS;
		if (proto == IPPROTO_TCP) {
			/* The quoted sequence number is our cookie (SYN), cookie+1
			 * (ACK+probe, RST) or up to cookie+1+payload (RST after a banner). */
			__u32 cookie = l3_cookie(cfg, in, our_raw, their_raw);
			__u32 seq = bpf_ntohl(*(__be32 *)(l4 + 4));
			__u32 plen = probe_payload_len(get_probe(zb_split_variant(variant).probe), in);
			if (seq - cookie > 1 + plen)
				return ZB_BAD;
			r->seq = seq;
		} else {
			if (!slot_ok(cfg, in, our_port, their_raw))
				return ZB_BAD;
			/* The quoted UDP checksum covers the cookie in our payload: it
			 * must be ours, or a forged quote could claim the dedup slot of
			 * the genuine error. */
			__be16 quoted = *(__be16 *)(l4 + 6);
			if (quoted != udp_checksum(cfg, get_probe(zb_split_variant(variant).probe), in, our_raw, their_raw))
				return ZB_BAD;
		}
		r->target_port = bpf_ntohs(their_raw);
		r->our_port = our_port;
		r->key_port = key_port(our_port, variant);
		r->variant = variant;
		r->seq = r->seq ? r->seq : bpf_ntohs(*(__be16 *)(l4 + 6)); /* UDP: the quoted checksum */
	} else if (proto == echo_type) {
		if (ZB_ICMP_VARIANT < 0 || l4[0] != (proto == IPPROTO_ICMP ? ICMP_ECHO : ICMPV6_ECHO_REQUEST))
			return ZB_NOT_OURS;
		if (!echo_matches(cfg, in, *(__be16 *)(l4 + 4), *(__be16 *)(l4 + 6)))
			return ZB_BAD;
		r->variant = ZB_ICMP_VARIANT < 0 ? 0 : ZB_ICMP_VARIANT;
	} else {
		return ZB_NOT_OURS;
	}
	return 0;
}

/* An echo reply to us (ICMP or ICMPv6): ours if it echoes the cookie in its id and sequence. */
static __always_inline int echo_reply(struct xdp_md *ctx, struct zb_config *cfg, struct zb_l3 *a, __be16 id,
				      __be16 sq)
{
	if (ZB_ICMP_VARIANT < 0)
		return ZB_NOT_OURS;
	if (!echo_matches(cfg, a, id, sq))
		return ZB_BAD;
	struct zb_reply r = {
		.seq = ((__u32)bpf_ntohs(id) << 16) | bpf_ntohs(sq),
		.ipid = a->ipid,
		.ttl = a->ttl,
		.kind = ZB_KIND_ECHOREPLY,
		.variant = ZB_ICMP_VARIANT < 0 ? 0 : ZB_ICMP_VARIANT,
	};
	l3_target(&r, a);
	count(ZB_CNT_ECHOREPLY);
	return emit(ctx, &r);
}

/* An ICMP(v6) error from a->them about the probe it quotes (c at the quoted transport header, q the
 * quoted addresses): recorded for the quoted target if the quote is ours. */
static __always_inline int icmp_error(struct xdp_md *ctx, struct zb_config *cfg, struct zb_cursor *c,
				      struct zb_l3 *a, struct zb_l3 *q, __u8 proto, __u8 echo_proto, __u8 type,
				      __u8 code)
{
	struct zb_reply r = {
		.target_raw = q->them,
		.us_raw = a->us,
		.icmp_responder_raw = a->them,
		.ipid = a->ipid,
		.ttl = a->ttl,
		.kind = ZB_KIND_ICMP,
		.icmp_type = type,
		.icmp_code = code,
	};
#if ZB_IPV6
	__builtin_memcpy(r.target6, q->them6, 16);
	__builtin_memcpy(r.responder6, a->them6, 16);
#endif
	int ret = quoted_probe(cfg, c, proto, echo_proto, q, &r);
	if (ret)
		return ret;
	count(ZB_CNT_ICMP);
	return emit(ctx, &r);
}

#if !ZB_IPV6
static __always_inline int handle_icmp(struct xdp_md *ctx, struct zb_cursor *c, struct zb_l3 *a)
{
	struct icmphdr *icmp = c->pos;
	if ((void *)(icmp + 1) > c->end)
		return ZB_NOT_OURS;
	struct zb_config *cfg = get_config();
	if (!cfg)
		return ZB_NOT_OURS;

	if (icmp->type == ICMP_ECHOREPLY)
		return echo_reply(ctx, cfg, a, icmp->un.echo.id, icmp->un.echo.sequence);

	__u8 t = icmp->type;
	if (t != ICMP_DEST_UNREACH && t != ICMP_SOURCE_QUENCH && t != ICMP_REDIRECT && t != ICMP_TIME_EXCEEDED &&
	    t != ICMP_PARAMETERPROB)
		return ZB_NOT_OURS;
	/* The quoted datagram: our own probe, as it left us. */
	c->pos = icmp + 1;
	struct iphdr *in = zb_parse_ipv4(c);
	if (!in || in->saddr != ZB_SRC_IP_RAW)
		return ZB_NOT_OURS;
	struct zb_l3 q = { .us = in->saddr, .them = in->daddr };
	return icmp_error(ctx, cfg, c, a, &q, in->protocol, IPPROTO_ICMP, t, icmp->code);
}
#endif

#if ZB_IPV6
static __always_inline int is_us6(const __u32 *w)
{
	return w[0] == ZB_SRC_IP6_W0 && w[1] == ZB_SRC_IP6_W1 && w[2] == ZB_SRC_IP6_W2 && w[3] == ZB_SRC_IP6_W3;
}

/* ICMPv6: echo replies to our echo requests, and errors (destination unreachable, packet too
 * big, time exceeded, parameter problem) quoting one of our probes. Anything else, neighbour
 * discovery above all, is not ours and passes. */
static __always_inline int handle_icmp6(struct xdp_md *ctx, struct zb_cursor *c, struct zb_l3 *a)
{
	struct icmp6hdr *icmp = c->pos;
	if ((void *)(icmp + 1) > c->end)
		return ZB_NOT_OURS;
	struct zb_config *cfg = get_config();
	if (!cfg)
		return ZB_NOT_OURS;
	__u8 t = icmp->icmp6_type;
	if (t == ICMPV6_ECHO_REPLY)
		return echo_reply(ctx, cfg, a, icmp->icmp6_dataun.u_echo.identifier,
				  icmp->icmp6_dataun.u_echo.sequence);
	if (t != ICMPV6_DEST_UNREACH && t != ICMPV6_PKT_TOOBIG && t != ICMPV6_TIME_EXCEED && t != ICMPV6_PARAMPROB)
		return ZB_NOT_OURS;
	/* The quoted datagram: our own probe as it left us (we send no extension headers). */
	c->pos = icmp + 1;
	struct ipv6hdr *in = c->pos;
	if ((void *)(in + 1) > c->end)
		return ZB_NOT_OURS;
	c->pos = in + 1;
	struct zb_l3 q = {};
	__builtin_memcpy(q.us6, &in->saddr, 16);
	__builtin_memcpy(q.them6, &in->daddr, 16);
	if (!is_us6(q.us6))
		return ZB_NOT_OURS;
	q.us = q.us6[3];
	q.them = q.them6[3];
	return icmp_error(ctx, cfg, c, a, &q, in->nexthdr, IPPROTO_ICMPV6, t, icmp->icmp6_code);
}
#endif

#if ZB_GENERATOR

/* The kernel-side SYN generator: a program of its own, run by user space
 * through BPF_PROG_TEST_RUN in live-frame mode, one SYN per run, XDP_TX on
 * the scan interface. The kernel recycles live-frame pages without
 * restoring their data (a page may come back holding whatever a peer made
 * of our SYN), so every run writes the whole frame from gen_template before
 * patching destination, ports, sequence number and checksums. */
int xdp_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	/* User space passes a template 2 bytes longer than the SYN, so this
	 * always changes the frame's length: only then does the kernel refresh
	 * the xdp_frame from our context. A recycled page's xdp_frame may hold
	 * whatever a peer last did with it (an emulator reflecting a 54-byte
	 * RST), and unrefreshed it would go out with that length. */
	int delta = ZB_GEN_FRAME - (int)(end - data);
	if (delta && bpf_xdp_adjust_tail(ctx, delta))
		return XDP_ABORTED;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (data + ZB_GEN_FRAME > end)
		return XDP_ABORTED;
	__u32 zero = 0;
	struct zb_gen_state *st = gen_state.lookup(&zero);
	struct zb_config *cfg = config.lookup(&zero);
	struct zb_gen_template *tpl = gen_template.lookup(&zero);
	if (!st || !cfg || !tpl)
		return XDP_ABORTED;
	__u64 idx = __sync_fetch_and_add(&st->next, 1);
	if (idx >= st->end)
		return XDP_DROP;
	__u32 slot = idx % ZB_GEN_SLOTS;
	struct zb_gen_target *t = gen_targets.lookup(&slot);
	if (!t)
		return XDP_DROP;
	__builtin_memcpy(data, tpl->frame, ZB_GEN_FRAME);

#if ZB_IPV6
	struct ipv6hdr *ip6 = data + sizeof(struct ethhdr);
	struct tcphdr *tcp = (void *)(ip6 + 1);
	__u32 variant = t->variant;
	__u32 us[4] = { ZB_SRC_IP6_W0, ZB_SRC_IP6_W1, ZB_SRC_IP6_W2, ZB_SRC_IP6_W3 };
	__u32 them[4];
	__builtin_memcpy(them, t->daddr6, 16);
	__u32 c0 = zb_cookie6(cfg->k0, cfg->k1, us, them, 0, t->dport_raw);
	__u16 sport = ZB_PORT_LO + variant + (__u16)(ZB_VARIANTS * (c0 % (__u32)ZB_SLOTS));
	__be16 sport_raw = bpf_htons(sport);
	__u32 seq = zb_cookie6(cfg->k0, cfg->k1, us, them, sport_raw, t->dport_raw);

	__builtin_memcpy(&ip6->daddr, them, 16);
	tcp->source = sport_raw;
	tcp->dest = t->dport_raw;
	tcp->seq = bpf_htonl(seq);
	tcp->check = 0;
	/* pseudo header: both addresses, the TCP length (24), the next header */
	__u64 sum = zb_words(&ip6->saddr, 32) + bpf_htons(IPPROTO_TCP) + bpf_htons(24) + zb_words(tcp, 24);
	tcp->check = zb_csum_fold(sum);
#else
	struct iphdr *ip = data + sizeof(struct ethhdr);
	struct tcphdr *tcp = (void *)(ip + 1);
	__u32 variant = t->variant;
	__u32 c0 = zb_cookie(cfg->k0, cfg->k1, ip->saddr, t->daddr_raw, 0, t->dport_raw);
	__u16 sport = ZB_PORT_LO + variant + (__u16)(ZB_VARIANTS * (c0 % (__u32)ZB_SLOTS));
	__be16 sport_raw = bpf_htons(sport);
	__u32 seq = zb_cookie(cfg->k0, cfg->k1, ip->saddr, t->daddr_raw, sport_raw, t->dport_raw);

	ip->daddr = t->daddr_raw;
	ip->id = bpf_htons(seq >> 16);
	ip->check = 0;
	tcp->source = sport_raw;
	tcp->dest = t->dport_raw;
	tcp->seq = bpf_htonl(seq);
	tcp->check = 0;
	ip->check = zb_csum_fold(zb_words(ip, 20));
	/* pseudo header: saddr, daddr, zero|proto, TCP length (24) */
	__u64 sum = (ip->saddr & 0xffff) + (ip->saddr >> 16) + (ip->daddr & 0xffff) + (ip->daddr >> 16) +
		    bpf_htons(IPPROTO_TCP) + bpf_htons(24);
	sum += zb_words(tcp, 24);
	tcp->check = zb_csum_fold(sum);
#endif
	/* (No count of frames sent here: the driver counts them, and a second atomic on the state's
	 * cache line would cost every frame, from every --tx-threads CPU.) */
	return XDP_TX;
}
#endif

#if ZB_IPV6
/* IPv6 extension headers skipped on the way to the transport header: hop-by-hop options, routing
 * and destination options, up to ZB_IPV6_EXT of them. A fragment header (like an IPv4 fragment,
 * it cannot be validated alone), ESP, AH or anything else: not ours, passed. */
#define ZB_IPV6_EXT 4

static __always_inline int l3_parse6(struct zb_cursor *c, struct zb_l3 *a, __u8 *proto, int plain_eth)
{
	struct ipv6hdr *ip6 = c->pos;
	if ((void *)(ip6 + 1) > c->end)
		return -1;
	__builtin_memcpy(a->us6, &ip6->daddr, 16);
	if (!is_us6(a->us6))
		return -1;
	__builtin_memcpy(a->them6, &ip6->saddr, 16);
	a->us = a->us6[3];
	a->them = a->them6[3];
	a->ttl = ip6->hop_limit;
	__u32 len = bpf_ntohs(ip6->payload_len);
	__u8 next = ip6->nexthdr;
	c->pos = ip6 + 1;
	a->plain = plain_eth && next == IPPROTO_TCP; /* no extension header */
#pragma unroll
	for (int i = 0; i < ZB_IPV6_EXT; i++) {
		if (next != IPPROTO_HOPOPTS && next != IPPROTO_ROUTING && next != IPPROTO_DSTOPTS)
			break;
		__u8 *h = c->pos;
		if ((void *)(h + 8) > c->end)
			return -1;
		__u32 hl = ((__u32)h[1] + 1) * 8;
		if (hl > len)
			return -1;
		next = h[0];
		len -= hl;
		c->pos += hl;
	}
	if (next == IPPROTO_HOPOPTS || next == IPPROTO_ROUTING || next == IPPROTO_DSTOPTS)
		return -1;
	a->l4_len = len;
	*proto = next;
	return 0;
}
#endif

int xdp_recv(struct xdp_md *ctx)
{
	struct zb_cursor c = { .pos = (void *)(long)ctx->data, .end = (void *)(long)ctx->data_end };
	__u16 proto;
	int ret = ZB_NOT_OURS;

	struct ethhdr *eth = zb_parse_eth(&c, &proto);
	count(ZB_CNT_RX);
#if ZB_IPV6
	if (!eth || proto != bpf_htons(ETH_P_IPV6))
		goto pass;
	struct zb_l3 a = {};
	__u8 l4;
	if (l3_parse6(&c, &a, &l4, c.pos == (void *)(eth + 1)))
		goto pass;
	if (l4 == IPPROTO_TCP)
		ret = handle_tcp(ctx, &c, &a);
	else if (l4 == IPPROTO_UDP)
		ret = handle_udp(ctx, &c, &a);
	else if (l4 == IPPROTO_ICMPV6)
		ret = handle_icmp6(ctx, &c, &a);
#else
	if (!eth || proto != bpf_htons(ETH_P_IP))
		goto pass;
	struct iphdr *ip = zb_parse_ipv4(&c);
	if (!ip || ip->daddr != ZB_SRC_IP_RAW)
		goto pass;
	/* A fragment cannot be validated on its own: leave it to the kernel. */
	if (ip->frag_off & bpf_htons(0x3fff))
		goto pass;
	__u32 ip_len = bpf_ntohs(ip->tot_len), ihl = ip->ihl * 4;
	struct zb_l3 a = {
		.us = ip->daddr,
		.them = ip->saddr,
		.l4_len = ip_len > ihl ? ip_len - ihl : 0,
		.ipid = bpf_ntohs(ip->id),
		.ttl = ip->ttl,
		.plain = ip->ihl == 5 && (void *)ip == (void *)(eth + 1),
	};
	if (ip->protocol == IPPROTO_TCP)
		ret = handle_tcp(ctx, &c, &a);
	else if (ip->protocol == IPPROTO_UDP)
		ret = handle_udp(ctx, &c, &a);
	else if (ip->protocol == IPPROTO_ICMP)
		ret = handle_icmp(ctx, &c, &a);
#endif
	if (ret == XDP_DROP || ret == XDP_TX)
		return ret;
	if (ret == ZB_BAD)
		count(ZB_CNT_BAD_COOKIE);
pass:
	count(ZB_CNT_PASS);
	return XDP_PASS;
}
