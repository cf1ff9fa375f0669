/* zbanner-xdp receive path.
 *
 * Recognises the replies to our probes without any per-connection state:
 * every SYN carried a keyed cookie as its sequence number, so a reply's
 * ack number tells whether (and to what) it answers. Replies that are ours
 * are deduplicated, copied to a ring buffer and consumed (XDP_DROP): the
 * host kernel never sees them, so it never answers our SYN-ACKs or banners
 * with RSTs of its own and no firewall rule is needed. Everything else
 * passes untouched.
 *
 * Compile-time parameters (-D, set by zbanner_xdp/bpfprog.py):
 *   ZB_SRC_IP_RAW     our IPv4 address as the raw packet word
 *   ZB_PORT_LO/HI     our source-port range (host order, inclusive)
 *   ZB_VARIANTS       probe variants; variant = (port - LO) % VARIANTS
 *   ZB_BANNERS        1: expect data segments acking our probe payload
 *   ZB_DEDUP_ENTRIES  size of the LRU duplicate filter
 *   ZB_DEDUP_WINDOW_NS  a repeat older than this is new again (0: never)
 *   ZB_EMIT_REPEATS   1: network duplicates also produce (flagged) records
 *   ZB_REANSWER_NS    a repeat this long after our answer is a retransmission
 *   ZB_RINGBUF_PAGES  ring buffer size in pages (power of two)
 */
#include <uapi/linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/in.h>

#include "shared.h"
#include "cookie.h"
#include "parsing.h"

BPF_RINGBUF_OUTPUT(events, ZB_RINGBUF_PAGES);
BPF_PERCPU_ARRAY(counters, __u64, ZB_CNT_MAX);
BPF_ARRAY(config, struct zb_config, 1);
BPF_ARRAY(probe_lens, struct zb_probe_len, ZB_VARIANTS);
BPF_TABLE("lru_hash", struct zb_dedup_key, struct zb_seen, dedup, ZB_DEDUP_ENTRIES);

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_PSH 0x08
#define TCP_ACK 0x10

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

/* Duplicate filter. A reply seen before inside the window is a repeat:
 * counted, never recorded twice. Network duplicates arrive together and are
 * dropped; a repeat arriving ZB_REANSWER_NS or more after we last answered
 * is the server retransmitting because our answer (ACK+probe, RST) was lost,
 * so it goes up once more flagged ZB_REPEAT_RETRANSMIT for user space to
 * answer again, and a lost ACK costs a delay instead of the banner. */
#define ZB_REPEAT_DUP 1
#define ZB_REPEAT_RETRANSMIT 2

static __always_inline __u8 classify_repeat(struct zb_dedup_key *k, __u64 now, int answerable)
{
	struct zb_seen *seen = dedup.lookup(k);
	if (!seen)
		return 0;
	if (ZB_DEDUP_WINDOW_NS && now - seen->first_ns > ZB_DEDUP_WINDOW_NS)
		return 0;
	if (answerable && now - seen->answered_ns >= ZB_REANSWER_NS) {
		seen->answered_ns = now;
		return ZB_REPEAT_RETRANSMIT;
	}
	return ZB_REPEAT_DUP;
}

static __always_inline int emit(struct xdp_md *ctx, struct iphdr *ip, struct tcphdr *tcp, __u8 kind,
				__u8 variant, __u32 data_off, __u32 payload_len)
{
	__u64 now = bpf_ktime_get_ns();
	struct zb_dedup_key key = {
		.saddr = ip->saddr, .sport = tcp->source, .dport = tcp->dest, .kind = kind,
	};
	int answerable = kind == ZB_KIND_SYNACK || kind == ZB_KIND_ZEROWIN || kind == ZB_KIND_BANNER;
	__u8 repeat = classify_repeat(&key, now, answerable);
	if (repeat) {
		count(ZB_CNT_REPEAT);
		if (repeat == ZB_REPEAT_DUP && !ZB_EMIT_REPEATS)
			return XDP_DROP;
	}

	struct zb_event *ev;
	__u64 copy = 0;
	if (kind == ZB_KIND_BANNER) {
		struct zb_banner_event *bev = events.ringbuf_reserve(sizeof(struct zb_banner_event));
		if (!bev) {
			count(ZB_CNT_RINGBUF_FULL);
			return XDP_DROP;
		}
		copy = payload_len < ZB_DATA_MAX ? payload_len : ZB_DATA_MAX;
		/* Keep clang from re-deriving `copy` after the check: the verifier
		 * must see the very register it bounded passed to the helper. */
		asm volatile("" : "+r"(copy));
		if (copy >= 1 && copy <= ZB_DATA_MAX) {
			if (bpf_xdp_load_bytes(ctx, data_off, bev->data, copy) < 0)
				copy = 0;
		} else {
			copy = 0;
		}
		ev = &bev->h;
	} else {
		ev = events.ringbuf_reserve(sizeof(struct zb_event));
		if (!ev) {
			count(ZB_CNT_RINGBUF_FULL);
			return XDP_DROP;
		}
	}
	if (!repeat) {
		struct zb_seen first = { .first_ns = now, .answered_ns = now };
		dedup.update(&key, &first);
	}

	ev->ts_ns = now;
	ev->saddr = ip->saddr;
	ev->daddr = ip->daddr;
	ev->seq = bpf_ntohl(tcp->seq);
	ev->ack = bpf_ntohl(tcp->ack_seq);
	ev->icmp_responder = 0;
	ev->sport = bpf_ntohs(tcp->source);
	ev->dport = bpf_ntohs(tcp->dest);
	ev->window = bpf_ntohs(tcp->window);
	ev->ipid = bpf_ntohs(ip->id);
	ev->data_len = copy;
	ev->payload_len = payload_len;
	ev->ttl = ip->ttl;
	ev->kind = kind;
	ev->tcp_flags = ((__u8 *)tcp)[13];
	ev->icmp_type = 0;
	ev->icmp_code = 0;
	ev->repeat = repeat;
	ev->variant = variant;
	ev->pad = 0;
	events.ringbuf_submit(ev, 0);
	return XDP_DROP;
}

int xdp_recv(struct xdp_md *ctx)
{
	struct zb_cursor c = { .pos = (void *)(long)ctx->data, .end = (void *)(long)ctx->data_end };
	__u16 proto;

	count(ZB_CNT_RX);
	if (!zb_parse_eth(&c, &proto) || proto != bpf_htons(ETH_P_IP))
		goto pass;
	struct iphdr *ip = zb_parse_ipv4(&c);
	if (!ip || ip->daddr != ZB_SRC_IP_RAW || ip->protocol != IPPROTO_TCP)
		goto pass;
	/* A fragment cannot be validated on its own: leave it to the kernel. */
	if (ip->frag_off & bpf_htons(0x3fff))
		goto pass;
	struct tcphdr *tcp = zb_parse_tcp(&c);
	if (!tcp)
		goto pass;
	__u16 dport = bpf_ntohs(tcp->dest);
	if (dport < ZB_PORT_LO || dport > ZB_PORT_HI)
		goto pass;

	__u32 zero = 0;
	struct zb_config *cfg = config.lookup(&zero);
	if (!cfg)
		goto pass;
	__u32 cookie = zb_cookie(cfg->k0, cfg->k1, ip->daddr, ip->saddr, tcp->dest, tcp->source);
	__u32 ack = bpf_ntohl(tcp->ack_seq);
	__u8 flags = ((__u8 *)tcp)[13];
	__u8 variant = (__u32)(dport - ZB_PORT_LO) % (__u32)ZB_VARIANTS;
	__u32 ip_len = bpf_ntohs(ip->tot_len);
	__u32 hdrs = (__u32)(ip->ihl * 4) + (__u32)(tcp->doff * 4);
	__u32 payload_len = ip_len > hdrs ? ip_len - hdrs : 0;
	__u32 data_off = (__u32)((long)c.pos - (long)ctx->data);

	if ((flags & (TCP_SYN | TCP_ACK)) == (TCP_SYN | TCP_ACK)) {
		if (ack - 1 != cookie)
			goto bad;
		if (tcp->window == 0) {
			count(ZB_CNT_ZEROWIN);
			return emit(ctx, ip, tcp, ZB_KIND_ZEROWIN, variant, data_off, 0);
		}
		count(ZB_CNT_SYNACK);
		return emit(ctx, ip, tcp, ZB_KIND_SYNACK, variant, data_off, 0);
	}

	__u32 plen = 0;
	if (ZB_BANNERS) {
		__u32 v = variant;
		struct zb_probe_len *pl = probe_lens.lookup(&v);
		if (pl)
			plen = pl->base + (pl->plus_ip_strlen ? dotted_len(ip->saddr) : 0);
	}

	if (flags & TCP_RST) {
		/* A RST answering the SYN acks cookie+1; some stacks ack cookie;
		 * one answering our probe data acks up to cookie+1+plen. */
		if (ack - cookie > 1 + plen)
			goto bad;
		count(ZB_CNT_RST);
		return emit(ctx, ip, tcp, ZB_KIND_RST, variant, data_off, 0);
	}

	if (!(flags & TCP_ACK) || (flags & TCP_SYN))
		goto bad;
	/* Data segments we take as a banner: ACK, PSH-ACK, FIN-ACK, FIN-PSH-ACK
	 * (ECN bits aside). URG and friends are not a server's first reply. */
	__u8 plain = (flags & 0x3f & ~(TCP_FIN | TCP_PSH | TCP_ACK)) == 0;
	/* Anything else acking inside our sequence space is ours: a pure ACK of
	 * the probe, a FIN, a later segment. Consume it silently so the kernel
	 * does not RST it; only the first data segment is the banner. */
	if (ack - cookie - 1 > plen)
		goto bad;
	if (ZB_BANNERS && plain && payload_len > 0 && ack == cookie + 1 + plen) {
		count(ZB_CNT_BANNER);
		return emit(ctx, ip, tcp, ZB_KIND_BANNER, variant, data_off, payload_len);
	}
	count(ZB_CNT_IGNORED);
	return XDP_DROP;

bad:
	count(ZB_CNT_BAD_COOKIE);
pass:
	count(ZB_CNT_PASS);
	return XDP_PASS;
}
