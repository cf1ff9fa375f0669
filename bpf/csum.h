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

#endif
