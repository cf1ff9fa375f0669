/* zbanner-xdp target emulator: a stateless TCP "host" in XDP.
 *
 * Answers TCP for a whole address range the way a server stack would, but
 * without any per-connection state, so lab tests can build hosts with exotic
 * behaviour (zero-window SYN-ACKs, fixed banners) and benchmarks measure the
 * scanner instead of the target's kernel:
 *
 *   SYN            open port: SYN-ACK, seq = keyed hash of the 4-tuple (ISN)
 *                  closed:    RST-ACK, seq 0
 *   ACK, ack=ISN+1 with payload (client-first probe), or bare when
 *                  ZE_SERVER_FIRST: one PSH|ACK segment carrying the banner
 *   ACK of the banner, RST, FIN, anything else TCP to the range: dropped
 *                  (the emulated host never says anything else)
 * With ZE_RESPONSE a canned response (the `response` map) takes the banner's
 * place, sent in segments of at most ZE_SEG bytes, still without state:
 *   ACK, ack=ISN+1+k, k < len (k = 0: as the banner above; k > 0: the client
 *                  acknowledged k bytes): the segment at byte k, as long as
 *                  ZE_SEG, the ACK's window and the bytes left allow (shorter
 *                  where the frame's buffer has no room: halved until it
 *                  fits); the last one carries PSH|FIN. A repeated ACK gets the
 *                  same segment again: the client's duplicate ACK is our
 *                  retransmission timer. k = len or len+1 (all acked, FIN
 *                  acked): dropped; anything else: bad_ack.
 *   not IPv4 TCP to the range: XDP_PASS, so a real stack on the same
 *                  interface keeps serving its own addresses
 *
 * Every reply is the received frame rewritten in place and sent back with
 * XDP_TX. zbanner_xdp/lab/emulator.py computes the same open/closed hash and ISN
 * (both are cookie.h's SipHash, keyed differently), so tests know the truth.
 *
 * Compile-time parameters (-D, set by zbanner_xdp/lab/emulator.py):
 *   ZE_NET_RAW, ZE_MASK_RAW  answered range: (daddr & MASK) == NET, raw words
 *   ZE_OPEN_PERMIL    0..1000: share of (ip, port) that is open
 *   ZE_PORT_FILTER    1: a port must also be set in the `ports` bitmap
 *   ZE_WINDOW         the SYN-ACK's window (0: zero-window host)
 *   ZE_MSS            MSS option in the SYN-ACK (0: no options at all)
 *   ZE_SERVER_FIRST   1: the handshake's bare ACK already gets the banner
 *   ZE_SINK           1: answer nothing, drop (and count) every frame to the range:
 *                     a silent network for measuring a sender alone
 *   ZE_RESPONSE       1: answer with the canned response in `response[0]`, not the banner
 *   ZE_SEG            1..ZE_SEG_MAX: a response segment's largest payload
 *   ZE_CHECKS         static asserts that emulator.py's mirror of the constants is right
 * Run-time configuration (maps written from Python):
 *   config[0]         hash keys, the banner and its precomputed checksum
 *   ports[0]          65536-bit bitmap of open ports (ZE_PORT_FILTER)
 *   response[0]       the canned response and its prefix checksums (ZE_RESPONSE)
 */
#include <uapi/linux/bpf.h>
/* The uapi headers: the kernel-internal linux/ip.h and friends pull in most of
 * the kernel and tripled the compile time of every scan (1.7 s -> 0.6 s). */
#include <uapi/linux/if_ether.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/ipv6.h>
#include <uapi/linux/tcp.h>
#include <uapi/linux/in.h>

#include "cookie.h"
#include "csum.h"
#include "parsing.h"

#define ZE_BANNER_MAX 1024
#define ZE_HEAD_SPARE 32
#define ZE_RESP_MAX 65536       /* a power of two: the verifier bounds an offset by masking */
#define ZE_SEG_MAX 1460
/* Tries at a response segment's length where the frame has no room: 1460 -> 730 -> 365 -> 183 -> 92 */
#define ZE_ROOM_TRIES 5

#ifndef ZE_RESPONSE
#define ZE_RESPONSE 0
#endif
#ifndef ZE_SEG
#define ZE_SEG ZE_SEG_MAX
#endif
#if ZE_RESPONSE
#define ZE_PAYLOAD_MAX ZE_SEG_MAX
#else
#define ZE_PAYLOAD_MAX ZE_BANNER_MAX
#endif

enum ze_counter {
	ZE_CNT_SYN_OPEN = 0,
	ZE_CNT_SYN_CLOSED,
	ZE_CNT_BANNER,
	ZE_CNT_DROPPED,         /* to the range, nothing to answer (or unanswerable) */
	ZE_CNT_BAD_ACK,         /* an ACK whose ack number is not ours */
	ZE_CNT_PASSED,          /* not IPv4 TCP to the range */
	ZE_CNT_NO_ROOM,         /* the reply would not fit the frame's buffer */
	ZE_CNT_SEGMENT,         /* response segments after the first (ZE_RESPONSE) */
	ZE_CNT_MAX,
};

struct ze_config {
	__u64 open_k0;          /* key of the open/closed hash */
	__u64 open_k1;
	__u64 isn_k0;           /* key of the SYN-ACK sequence numbers */
	__u64 isn_k1;
	__u32 banner_len;
	/* Ones'-complement sum of the banner as native 16-bit words (zero
	 * padded): the banner never changes, so summing it per packet would be
	 * wasted work and a verifier-unfriendly loop. */
	__u32 banner_csum;
	__u8 banner[ZE_BANNER_MAX];
};

struct ze_ports {
	__u8 bits[65536 / 8];
};

#if ZE_RESPONSE
struct ze_response {
	__u32 len;              /* 1..ZE_RESP_MAX */
	__u32 pad;
	/* psum[i]: the unfolded sum of bytes[0:i] as native 16-bit words, the
	 * last odd byte zero-padded (under 2^32 for ZE_RESP_MAX). A segment's
	 * sum is then psum[k+n] - psum[k] wherever it starts: no loop. */
	__u32 psum[ZE_RESP_MAX + 1];
	/* ZE_SEG_MAX bytes past the end, so the verifier can see any segment fit */
	__u8 bytes[ZE_RESP_MAX + ZE_SEG_MAX];
};
#endif

/* zbanner_xdp/lab/emulator.py mirrors ZE_BANNER_MAX and the counters: it
 * compiles this with static asserts of their values. */
#ifdef ZE_CHECKS
ZE_CHECKS
#endif

BPF_PERCPU_ARRAY(counters, __u64, ZE_CNT_MAX);
BPF_ARRAY(config, struct ze_config, 1);
BPF_ARRAY(ports, struct ze_ports, 1);
#if ZE_RESPONSE
BPF_ARRAY(response, struct ze_response, 1);
#endif

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_PSH 0x08
#define TCP_ACK 0x10

#define ZE_IP_DF 0x4000

struct ze_reply {
	struct iphdr ip;
	struct tcphdr tcp;
	__be32 mss_opt;
};

struct ze_l2 {
	struct ethhdr eth;
	__be16 vlan_tci;
	__be16 vlan_proto;
};

struct ze_pseudo {
	__be32 saddr;
	__be32 daddr;
	__u8 zero;
	__u8 proto;
	__be16 len;
};

static __always_inline void ze_count(__u32 idx)
{
	__u64 *v = counters.lookup(&idx);
	if (v)
		*v += 1;
}

/* A ones'-complement sum folded to 16 bits, not complemented. */
static __always_inline __u32 ze_fold16(__u64 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u32)sum;
}

static __always_inline int ze_is_open(struct ze_config *cfg, __u32 ip_raw, __u16 port_raw)
{
	if (ZE_PORT_FILTER) {
		__u32 zero = 0;
		struct ze_ports *p = ports.lookup(&zero);
		__u16 port = bpf_ntohs(port_raw);
		if (!p || !(p->bits[port >> 3] & (1 << (port & 7))))
			return 0;
	}
	if (ZE_OPEN_PERMIL >= 1000)
		return 1;
	if (ZE_OPEN_PERMIL <= 0)
		return 0;
	return zb_cookie(cfg->open_k0, cfg->open_k1, ip_raw, 0, port_raw, 0) % 1000 < ZE_OPEN_PERMIL;
}

int xdp_responder(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct zb_cursor c = { .pos = data, .end = data_end };
	__u16 proto;

	struct ethhdr *eth = zb_parse_eth(&c, &proto);
#if ZE_SINK && ZE_SINK6
	/* The IPv6 sink (--sink6 PREFIX, a /64 or shorter): TCP to it is dropped and counted, as
	 * IPv4 TCP to --net is; neighbour discovery and everything else passes. */
	if (eth && proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = c.pos;
		if ((void *)(ip6 + 1) > c.end)
			goto pass;
		__u64 hi;
		__builtin_memcpy(&hi, &ip6->daddr, sizeof(hi));
		if (ip6->nexthdr == IPPROTO_TCP && (hi & ZE_MASK6_RAW) == ZE_NET6_RAW)
			goto drop;
		goto pass;
	}
#endif
	if (!eth || proto != bpf_htons(ETH_P_IP))
		goto pass;
	struct iphdr *ip = zb_parse_ipv4(&c);
	if (!ip || (ip->daddr & ZE_MASK_RAW) != ZE_NET_RAW || ip->protocol != IPPROTO_TCP)
		goto pass;
#if ZE_SINK
	goto drop;
#endif
	/* From here on the frame is addressed to an emulated host: whatever we
	 * cannot answer is dropped, as a host would, never passed to the real
	 * stack behind us (which would RST it). The reply is built with a
	 * 20-byte IP header over the received one, so IP options are out, and
	 * a fragment cannot be answered on its own. */
	if (ip->ihl != 5 || (ip->frag_off & bpf_htons(0x3fff)))
		goto drop;
	struct tcphdr *tcp = zb_parse_tcp(&c);
	if (!tcp)
		goto drop;
	__u32 ip_len = bpf_ntohs(ip->tot_len);
	__u32 thl = tcp->doff * 4;
	if (ip_len < sizeof(*ip) + thl || (void *)ip + ip_len > data_end)
		goto drop;
	__u32 plen = ip_len - sizeof(*ip) - thl;

	__u32 zero = 0;
	struct ze_config *cfg = config.lookup(&zero);
	if (!cfg)
		goto drop;

	__u8 flags = ((__u8 *)tcp)[13];
	__u32 their_seq = bpf_ntohl(tcp->seq);
	__u32 their_ack = bpf_ntohl(tcp->ack_seq);
	__u32 isn = zb_cookie(cfg->isn_k0, cfg->isn_k1, ip->daddr, ip->saddr, tcp->dest, tcp->source);
	int open = ze_is_open(cfg, ip->daddr, tcp->dest);

	struct ze_reply r = {};
#if ZE_RESPONSE
	struct ze_response *rs = NULL;
	__u32 rk = 0;           /* the response's byte the segment starts at */
#endif
	__u32 opt_len = 0;
	__u32 blen = 0;
	__u8 out_flags;
	__u32 cnt;

	if ((flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN)) == TCP_SYN) {
		r.tcp.ack_seq = bpf_htonl(their_seq + 1);
		if (open) {
			out_flags = TCP_SYN | TCP_ACK;
			r.tcp.seq = bpf_htonl(isn);
			r.tcp.window = bpf_htons(ZE_WINDOW);
			if (ZE_MSS) {
				opt_len = 4;
				r.mss_opt = bpf_htonl(0x02040000 | ZE_MSS);
			}
			cnt = ZE_CNT_SYN_OPEN;
		} else {
			out_flags = TCP_RST | TCP_ACK;
			cnt = ZE_CNT_SYN_CLOSED;
		}
	} else if ((flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN)) == TCP_ACK) {
		if (!open)
			goto drop;
#if ZE_RESPONSE
		rs = response.lookup(&zero);
		if (!rs)
			goto drop;
		__u32 rlen = rs->len;
		rk = their_ack - isn - 1;
		if (rk >= rlen) {
			/* all of it acked, or its FIN too: nothing left to say */
			if (rk - rlen <= 1)
				goto drop;
			goto bad_ack;
		}
		if (rk == 0 && plen == 0 && !ZE_SERVER_FIRST)
			goto drop;
		__u32 win = bpf_ntohs(tcp->window);
		if (!win)
			goto drop;
		blen = rlen - rk;
		if (blen > ZE_SEG)
			blen = ZE_SEG;
		if (blen > win)
			blen = win;
		out_flags = TCP_ACK;
		r.tcp.seq = tcp->ack_seq;
		r.tcp.ack_seq = bpf_htonl(their_seq + plen);
		r.tcp.window = bpf_htons(65535);
		cnt = rk ? ZE_CNT_SEGMENT : ZE_CNT_BANNER;
#else
		blen = cfg->banner_len;
		if (their_ack != isn + 1) {
			/* The client acking our banner (or talking after it) is
			 * expected; anything else did not come from our SYN-ACK. */
			if (blen && their_ack - isn - 1 == blen)
				goto drop;
			goto bad_ack;
		}
		if (!blen || (plen == 0 && !ZE_SERVER_FIRST))
			goto drop;
		out_flags = TCP_PSH | TCP_ACK;
		r.tcp.seq = tcp->ack_seq;
		r.tcp.ack_seq = bpf_htonl(their_seq + plen);
		r.tcp.window = bpf_htons(65535);
		cnt = ZE_CNT_BANNER;
#endif
	} else {
		goto drop;
	}

	/* The verifier must see blen bounded by the map value for the copy,
	 * in the very register that reaches the helper (again below). */
	if (blen > ZE_PAYLOAD_MAX)
		goto drop;

	/* Everything the reply takes from the received frame, before the
	 * frame moves (growing at the front moves it). The link header stays
	 * on the stack; a VLAN tag stays as it was, so the reply leaves on the
	 * same VLAN. */
	struct ze_l2 l2;
	__u32 l3off = eth->h_proto == bpf_htons(ETH_P_8021Q) ? sizeof(l2) : sizeof(struct ethhdr);
	__builtin_memcpy(&l2, eth, sizeof(l2));  /* the frame holds IP+TCP after it: long enough */
	__builtin_memcpy(l2.eth.h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(l2.eth.h_source, eth->h_dest, ETH_ALEN);
	r.ip.saddr = ip->daddr;
	r.ip.daddr = ip->saddr;
	r.tcp.source = tcp->dest;
	r.tcp.dest = tcp->source;
	int frame_len = (int)(data_end - data);

	/* Grow at the tail where there is room (drivers with page-sized
	 * buffers), else at the front: a veth running XDP on an skb has almost
	 * no tailroom but at least XDP_PACKET_HEADROOM (256 bytes) in front. The
	 * front must keep ZE_HEAD_SPARE bytes beyond what adjust_head insists
	 * on: with less, the reply passes XDP_TX and then vanishes on the way
	 * into the peer veth (seen on 6.18 with <50 bytes of headroom left).
	 * Probing with a larger move and stepping back is the only way to ask
	 * for headroom: xdp_md does not expose it. A banner has one try; a
	 * response segment is halved until it fits (TCP takes any segmenting:
	 * on a veth that is ~180 bytes after a bare ACK). */
	__u32 hdr_len = sizeof(struct iphdr) + sizeof(struct tcphdr) + opt_len;
	int room = 0;
#pragma unroll
	for (int i = 0; i < (ZE_RESPONSE ? ZE_ROOM_TRIES : 1); i++) {
		int delta = (int)(l3off + hdr_len + blen) - frame_len;
		if (delta <= 0) {
			if (delta < 0 && bpf_xdp_adjust_tail(ctx, delta))
				goto drop;
			room = 1;
			break;
		}
		if (!bpf_xdp_adjust_tail(ctx, delta)) {
			room = 1;
			break;
		}
		if (!bpf_xdp_adjust_head(ctx, -(delta + ZE_HEAD_SPARE))) {
			if (bpf_xdp_adjust_head(ctx, ZE_HEAD_SPARE))
				goto drop;
			room = 1;
			break;
		}
		blen = (blen + 1) / 2;
	}
	if (!room) {
		ze_count(ZE_CNT_NO_ROOM);
		return XDP_DROP;
	}
	if (blen > ZE_PAYLOAD_MAX)
		goto drop;
	asm volatile("" : "+r"(blen));
#if ZE_RESPONSE
	if (rs && rk + blen == rs->len)
		out_flags |= TCP_PSH | TCP_FIN;
#endif

	__u32 tcp_len = sizeof(struct tcphdr) + opt_len + blen;
	r.ip.version = 4;
	r.ip.ihl = 5;
	r.ip.tot_len = bpf_htons(sizeof(struct iphdr) + tcp_len);
	r.ip.frag_off = bpf_htons(ZE_IP_DF);
	r.ip.ttl = 64;
	r.ip.protocol = IPPROTO_TCP;
	r.ip.check = zb_csum_fold(bpf_csum_diff(NULL, 0, (void *)&r.ip, sizeof(r.ip), 0));

	r.tcp.doff = (sizeof(struct tcphdr) + opt_len) / 4;
	((__u8 *)&r.tcp)[13] = out_flags;

	struct ze_pseudo ph = {
		.saddr = r.ip.saddr, .daddr = r.ip.daddr, .proto = IPPROTO_TCP, .len = bpf_htons(tcp_len),
	};
	__u64 sum = (__u32)bpf_csum_diff(NULL, 0, (void *)&ph, sizeof(ph), 0);
	if (opt_len)
		sum += (__u32)bpf_csum_diff(NULL, 0, (void *)&r.tcp, sizeof(r.tcp) + 4, 0);
	else
		sum += (__u32)bpf_csum_diff(NULL, 0, (void *)&r.tcp, sizeof(r.tcp), 0);
#if ZE_RESPONSE
	if (blen && rs) {
		/* rk < len <= ZE_RESP_MAX already: the mask only shows the verifier */
		rk &= ZE_RESP_MAX - 1;
		__u32 end = rk + blen;
		if (end > ZE_RESP_MAX)
			goto drop;
		__u32 part = ze_fold16(rs->psum[end] - rs->psum[rk]);
		/* Starting at an odd byte, the segment's words are the sum's
		 * bytes swapped (ones'-complement sums do not mind the order) */
		if (rk & 1)
			part = ((part & 0xff) << 8) | (part >> 8);
		sum += part;
	}
#else
	if (blen)
		sum += cfg->banner_csum;
#endif
	r.tcp.check = zb_csum_fold(sum);

	if (bpf_xdp_store_bytes(ctx, 0, &l2, l3off))
		goto drop;
	if (bpf_xdp_store_bytes(ctx, l3off, &r, hdr_len))
		goto drop;
#if ZE_RESPONSE
	if (blen && rs) {
		/* checked in the register the helper gets */
		__u64 n = blen;
		asm volatile("" : "+r"(n));
		if (n > ZE_PAYLOAD_MAX)
			goto drop;
		asm volatile("" : "+r"(n));  /* two plain compares: no (n - 1) range trick */
		if (n == 0)
			goto drop;
		if (bpf_xdp_store_bytes(ctx, l3off + hdr_len, rs->bytes + rk, n))
			goto drop;
	}
#else
	if (blen >= 1 && bpf_xdp_store_bytes(ctx, l3off + hdr_len, cfg->banner, blen))
		goto drop;
#endif
	ze_count(cnt);
	return XDP_TX;

bad_ack:
	ze_count(ZE_CNT_BAD_ACK);
	return XDP_DROP;
drop:
	ze_count(ZE_CNT_DROPPED);
	return XDP_DROP;
pass:
	ze_count(ZE_CNT_PASSED);
	return XDP_PASS;
}
