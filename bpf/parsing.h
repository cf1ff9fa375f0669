/* Cursor-style header parsers: each checks its header fits before the
 * verifier lets us read it, advances the cursor, and returns NULL when the
 * frame is too short, so callers just pass anything they cannot parse. */
#ifndef ZB_PARSING_H
#define ZB_PARSING_H

struct zb_cursor {
	void *pos;
	void *end;
};

static __always_inline struct ethhdr *zb_parse_eth(struct zb_cursor *c, __u16 *proto)
{
	struct ethhdr *eth = c->pos;
	if ((void *)(eth + 1) > c->end)
		return NULL;
	c->pos = eth + 1;
	*proto = eth->h_proto;
	/* One 802.1Q tag: scan interfaces behind a VLAN trunk still work. */
	if (*proto == bpf_htons(ETH_P_8021Q)) {
		struct vlan_hdr { __be16 tci; __be16 proto; } *vh = c->pos;
		if ((void *)(vh + 1) > c->end)
			return NULL;
		*proto = vh->proto;
		c->pos = vh + 1;
	}
	return eth;
}

static __always_inline struct iphdr *zb_parse_ipv4(struct zb_cursor *c)
{
	struct iphdr *ip = c->pos;
	if ((void *)(ip + 1) > c->end)
		return NULL;
	__u32 hl = ip->ihl * 4;
	if (hl < sizeof(*ip) || c->pos + hl > c->end)
		return NULL;
	c->pos += hl;
	return ip;
}

static __always_inline struct tcphdr *zb_parse_tcp(struct zb_cursor *c)
{
	struct tcphdr *tcp = c->pos;
	if ((void *)(tcp + 1) > c->end)
		return NULL;
	__u32 hl = tcp->doff * 4;
	if (hl < sizeof(*tcp) || c->pos + hl > c->end)
		return NULL;
	c->pos += hl;
	return tcp;
}

#endif
