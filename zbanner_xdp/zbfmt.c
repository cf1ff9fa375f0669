/* JSON lines for a batch of records: the hot loop of zbanner_xdp.jsonlines.
 *
 * Python describes a line as a list of columns (constant text, an unsigned
 * number, an IPv4 address, a word from a vocabulary, a timestamp, an IPv6
 * address), each with one value per row in a contiguous u64 array prepared by
 * numpy (an IPv6 address: two, its 16 bytes in network order), and this
 * writes every row. Compiled on first use by zbanner_xdp.fastfmt; without a
 * C compiler the numpy formatter produces the same bytes.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum { ZB_CONST = 0, ZB_UINT = 1, ZB_DOTTED = 2, ZB_WORD = 3, ZB_TIME = 4, ZB_IPV6 = 5 };

struct zb_col {
	uint32_t op;
	uint32_t len;         /* ZB_CONST: bytes; ZB_WORD: words */
	const uint8_t *bytes; /* ZB_CONST: the text; ZB_WORD: the vocabulary, concatenated */
	const uint32_t *offs; /* ZB_WORD: where each word starts (one more entry than words) */
	const uint64_t *vals; /* one per row */
	const uint8_t *valid; /* NULL, or one per row: 0 writes null */
};

static uint8_t *put_uint(uint8_t *p, uint64_t v)
{
	uint8_t tmp[20];
	int n = 0;
	do {
		tmp[n++] = (uint8_t)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		*p++ = tmp[--n];
	return p;
}

static uint8_t *put_fixed(uint8_t *p, uint64_t v, int width)
{
	for (int i = width - 1; i >= 0; i--) {
		p[i] = (uint8_t)('0' + v % 10);
		v /= 10;
	}
	return p + width;
}

/* Days since 1970-01-01 to a proleptic Gregorian date (the era-based civil
 * calendar conversion: 400-year eras of 146097 days). */
static void civil(int64_t days, int64_t *y, unsigned *m, unsigned *d)
{
	int64_t z = days + 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static uint8_t *put_time(uint8_t *p, uint64_t ms)
{
	int64_t days = (int64_t)(ms / 86400000u);
	uint64_t t = ms % 86400000u;
	int64_t y;
	unsigned m, d;
	civil(days, &y, &m, &d);
	*p++ = '"';
	p = put_fixed(p, (uint64_t)y, 4);
	*p++ = '-';
	p = put_fixed(p, m, 2);
	*p++ = '-';
	p = put_fixed(p, d, 2);
	*p++ = 'T';
	p = put_fixed(p, t / 3600000u, 2);
	*p++ = ':';
	p = put_fixed(p, t / 60000u % 60, 2);
	*p++ = ':';
	p = put_fixed(p, t / 1000u % 60, 2);
	*p++ = '.';
	p = put_fixed(p, t % 1000u, 3);
	*p++ = 'Z';
	*p++ = '"';
	return p;
}

/* An IPv6 address as RFC 5952 text (jsonlines.Lines.ipv6 writes the same): groups in lowercase hex
 * without leading zeros, the first longest run of two or more zero groups as "::". */
static uint8_t *put_ipv6(uint8_t *p, const uint8_t *a)
{
	static const char hex[] = "0123456789abcdef";
	unsigned g[8];
	int best_at = -1, best_len = 1, run = 0;
	for (int i = 0; i < 8; i++) {
		g[i] = ((unsigned)a[2 * i] << 8) | a[2 * i + 1];
		run = g[i] ? 0 : run + 1;
		if (run > best_len) {
			best_len = run;
			best_at = i - run + 1;
		}
	}
	*p++ = '"';
	for (int i = 0; i < 8; i++) {
		if (best_at >= 0 && i >= best_at && i < best_at + best_len) {
			if (i == best_at)
				*p++ = ':';
			if (i == 7)
				*p++ = ':';
			continue;
		}
		if (i)
			*p++ = ':';
		int started = 0;
		for (int k = 3; k >= 0; k--) {
			unsigned nib = (g[i] >> (4 * k)) & 0xf;
			if (nib || started || k == 0) {
				*p++ = (uint8_t)hex[nib];
				started = 1;
			}
		}
	}
	*p++ = '"';
	return p;
}

/* Returns the bytes written; the caller sizes `out` for the widest rows. */
size_t zb_format(const struct zb_col *cols, size_t ncols, size_t nrows, uint8_t *out)
{
	uint8_t *p = out;
	for (size_t r = 0; r < nrows; r++) {
		for (size_t c = 0; c < ncols; c++) {
			const struct zb_col *col = &cols[c];
			if (col->op == ZB_CONST) {
				memcpy(p, col->bytes, col->len);
				p += col->len;
				continue;
			}
			if (col->valid && !col->valid[r]) {
				memcpy(p, "null", 4);
				p += 4;
				continue;
			}
			uint64_t v = col->vals[r];
			switch (col->op) {
			case ZB_UINT:
				p = put_uint(p, v);
				break;
			case ZB_DOTTED:
				*p++ = '"';
				for (int i = 0; i < 4; i++) {
					if (i)
						*p++ = '.';
					p = put_uint(p, (v >> (8 * i)) & 0xff);
				}
				*p++ = '"';
				break;
			case ZB_WORD: {
				if (v >= col->len) /* len: how many words; never out of the table */
					v = 0;
				uint32_t a = col->offs[v], b = col->offs[v + 1];
				memcpy(p, col->bytes + a, b - a);
				p += b - a;
				break;
			}
			case ZB_TIME:
				p = put_time(p, v);
				break;
			case ZB_IPV6:
				p = put_ipv6(p, (const uint8_t *)&col->vals[2 * r]);
				break;
			}
		}
	}
	return (size_t)(p - out);
}

/* zbanner_xdp/fastfmt.py mirrors the ops and struct zb_col: it compiles this
 * with static asserts of their values and layout. */
#ifdef ZB_FMT_CHECKS
ZB_FMT_CHECKS
#endif
