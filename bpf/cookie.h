/* The SYN cookie: low 32 bits of SipHash-2-4 keyed per scan over the
 * 12-byte message  our_ip | their_ip | our_port | their_port  (all in
 * network order, exactly as the bytes sit in the packet).
 * zbanner_xdp/cookie.py implements the same function; tests feed both the
 * same frames (BPF_PROG_TEST_RUN) and the reference SipHash vectors.
 */
#ifndef ZB_COOKIE_H
#define ZB_COOKIE_H

#define ZB_ROTL(x, b) (__u64)(((x) << (b)) | ((x) >> (64 - (b))))

#define ZB_SIPROUND                                                        \
	do {                                                               \
		v0 += v1; v1 = ZB_ROTL(v1, 13); v1 ^= v0; v0 = ZB_ROTL(v0, 32); \
		v2 += v3; v3 = ZB_ROTL(v3, 16); v3 ^= v2;                  \
		v0 += v3; v3 = ZB_ROTL(v3, 21); v3 ^= v0;                  \
		v2 += v1; v1 = ZB_ROTL(v1, 17); v1 ^= v2; v2 = ZB_ROTL(v2, 32); \
	} while (0)

/* Raw values are the packet's bytes loaded as little-endian integers, so
 * m0/m1 are exactly SipHash's little-endian message words. */
static __always_inline __u32 zb_cookie(__u64 k0, __u64 k1, __u32 our_ip_raw, __u32 their_ip_raw,
				       __u16 our_port_raw, __u16 their_port_raw)
{
	__u64 v0 = k0 ^ 0x736f6d6570736575ULL;
	__u64 v1 = k1 ^ 0x646f72616e646f6dULL;
	__u64 v2 = k0 ^ 0x6c7967656e657261ULL;
	__u64 v3 = k1 ^ 0x7465646279746573ULL;
	__u64 m0 = (__u64)our_ip_raw | ((__u64)their_ip_raw << 32);
	/* 4 tail bytes plus the message length (12) in the top byte. */
	__u64 m1 = (__u64)our_port_raw | ((__u64)their_port_raw << 16) | (12ULL << 56);

	v3 ^= m0; ZB_SIPROUND; ZB_SIPROUND; v0 ^= m0;
	v3 ^= m1; ZB_SIPROUND; ZB_SIPROUND; v0 ^= m1;
	v2 ^= 0xff;
	ZB_SIPROUND; ZB_SIPROUND; ZB_SIPROUND; ZB_SIPROUND;
	return (__u32)(v0 ^ v1 ^ v2 ^ v3);
}

/* IPv6: the 36-byte message  our_ip | their_ip | our_port | their_port  (16-byte
 * addresses, network order), as cookie.py's cookie_scalar6. Each address is
 * passed as its four raw 32-bit words (the packet's bytes loaded as
 * little-endian integers, 2-byte aligned is enough), so word pairs are
 * SipHash's little-endian message words. */
#define ZB_SIPWORD(m) do { v3 ^= (m); ZB_SIPROUND; ZB_SIPROUND; v0 ^= (m); } while (0)
static __always_inline __u32 zb_cookie6(__u64 k0, __u64 k1, const __u32 *us, const __u32 *them,
					__u16 our_port_raw, __u16 their_port_raw)
{
	__u64 v0 = k0 ^ 0x736f6d6570736575ULL;
	__u64 v1 = k1 ^ 0x646f72616e646f6dULL;
	__u64 v2 = k0 ^ 0x6c7967656e657261ULL;
	__u64 v3 = k1 ^ 0x7465646279746573ULL;
	__u64 m;
	m = (__u64)us[0] | ((__u64)us[1] << 32); ZB_SIPWORD(m);
	m = (__u64)us[2] | ((__u64)us[3] << 32); ZB_SIPWORD(m);
	m = (__u64)them[0] | ((__u64)them[1] << 32); ZB_SIPWORD(m);
	m = (__u64)them[2] | ((__u64)them[3] << 32); ZB_SIPWORD(m);
	m = (__u64)our_port_raw | ((__u64)their_port_raw << 16) | (36ULL << 56); ZB_SIPWORD(m);
	v2 ^= 0xff;
	ZB_SIPROUND; ZB_SIPROUND; ZB_SIPROUND; ZB_SIPROUND;
	return (__u32)(v0 ^ v1 ^ v2 ^ v3);
}

#endif
