/* Ones'-complement fold of a 64-bit partial sum (bpf_csum_diff results,
 * pseudo headers, a payload's precomputed word sum) into a checksum field,
 * for both XDP programs: the receiver's answers and generator, and the lab's
 * emulator. zbanner_xdp/packets.py folds the frames it builds the same way. */
#ifndef ZB_CSUM_H
#define ZB_CSUM_H

static __always_inline __u16 zb_csum_fold(__u64 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* The sum of n bytes as 32-bit words (n a constant multiple of 4): what bpf_csum_diff(0, 0, p, n, 0)
 * adds up, folded later by zb_csum_fold. Inline, not the helper: a call (and csum_partial's
 * alignment handling) for a 20-byte header cost more than the sum itself, and a SYN, an answer
 * took two or three (perf, SSH banners from the emulator: csum_partial a third of xdp_recv's own
 * time). Packet pointers: the caller has checked the n bytes are in the frame. */
typedef __u32 __attribute__((may_alias)) zb_u32_any; /* read over any type: headers, u64 arrays */
typedef __u64 __attribute__((may_alias)) zb_u64_any; /* written over bytes: a text built in a map value */

static __always_inline __u64 zb_words(const void *p, const int n)
{
	const zb_u32_any *w = p;
	__u64 sum = 0;
#pragma unroll
	for (int i = 0; i < n / 4; i++)
		sum += w[i];
	return sum;
}

#endif
