/* CRC-32 (IEEE 802.3, reflected 0xEDB88320: zlib's crc32).
 *
 * The server computes three or four CRCs per frame over 32-150 bytes
 * (hcrc, pcrc, record; sinkd checks the record's again), and with tables
 * they were half of ingestd's CPU time.  On x86-64 with PCLMULQDQ the
 * buffer is folded 64 bytes at a time by carry-less multiplication (Intel,
 * "Fast CRC Computation for Generic Polynomials Using PCLMULQDQ", 2009),
 * 16 at a time below that, and the tail (< 16 bytes) goes through the
 * tables: a 100-byte payload costs under half the table walk.  Without
 * PCLMULQDQ: slicing by 8 below 512 bytes (zlib 1.2.13 takes ~2 ns a byte
 * on short buffers, eight lookups per 8 bytes half that) and zlib's
 * braided code above.  Results are zlib's bit for bit (tests/unit/
 * test_frame.c compares both paths over every length, alignment and seed). */
#include <stdint.h>
#include <string.h>
#include <zlib.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "common/frame.h"

static uint32_t tab[8][256];

__attribute__((constructor)) static void crc32_tables(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0xEDB88320u : c >> 1;
		tab[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			tab[t][i] = (tab[t - 1][i] >> 8) ^ tab[0][tab[t - 1][i] & 0xff];
}

#define SHORT_MAX 512

/* c: the register (not inverted on entry or exit) */
static uint32_t tab_walk(uint32_t c, const uint8_t *p, size_t len)
{
	while (len >= 8) {
		uint64_t v;
		memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
		v = __builtin_bswap64(v);   /* the bytes in stream order, lowest first */
#endif
		v ^= c;
		c = tab[7][v & 0xff] ^ tab[6][(v >> 8) & 0xff] ^ tab[5][(v >> 16) & 0xff] ^ tab[4][(v >> 24) & 0xff] ^
		    tab[3][(v >> 32) & 0xff] ^ tab[2][(v >> 40) & 0xff] ^ tab[1][(v >> 48) & 0xff] ^ tab[0][v >> 56];
		p += 8;
		len -= 8;
	}
	while (len--)
		c = (c >> 8) ^ tab[0][(c ^ *p++) & 0xff];
	return c;
}

uint32_t mi_crc32_update_portable(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	if (len >= SHORT_MAX) {
		uLong z = crc;
		while (len > 0) {   /* zlib's length is a uInt */
			uInt n = len > (1u << 30) ? (1u << 30) : (uInt)len;
			z = crc32(z, p, n);
			p += n;
			len -= n;
		}
		return (uint32_t)z;
	}
	return ~tab_walk(~crc, p, len);
}

#if defined(__x86_64__)
/* Folding constants for the reflected polynomial, each x^n mod P(x) bit-
 * reflected and shifted left by one (the paper's k1..k6, mu, P'):
 *   fold 512 bits: x^(4*128+32), x^(4*128-32)
 *   fold 128 bits: x^(128+32), x^(128-32)
 *   64 -> 32 bits: x^64
 *   Barrett: P'(x) = 0x1DB710641, mu = x^64 / P(x) = 0x1F7011641 */
#define K_F512_LO 0x154442bd4ull
#define K_F512_HI 0x1c6e41596ull
#define K_F128_LO 0x1751997d0ull
#define K_F128_HI 0x0ccaa009eull
#define K_64 0x163cd6124ull
#define K_POLY 0x1db710641ull
#define K_MU 0x1f7011641ull

/* One fold: x * (hi, lo) carried forward 128 bits (or 512 with four
 * lanes), added to the next data block d. */
__attribute__((target("pclmul,sse2"))) static inline __m128i fold(__m128i x, __m128i k, __m128i d)
{
	__m128i lo = _mm_clmulepi64_si128(x, k, 0x00);
	__m128i hi = _mm_clmulepi64_si128(x, k, 0x11);
	return _mm_xor_si128(_mm_xor_si128(lo, hi), d);
}

/* The register c over n bytes, n >= 16 and a multiple of 16. */
__attribute__((target("pclmul,sse2"))) static uint32_t clmul_fold(uint32_t c, const uint8_t *p, size_t n)
{
	__m128i x0 = _mm_xor_si128(_mm_loadu_si128((const __m128i *)p), _mm_cvtsi32_si128((int)c));
	__m128i k = _mm_set_epi64x((long long)K_F128_HI, (long long)K_F128_LO);
	if (n >= 64) {
		__m128i k4 = _mm_set_epi64x((long long)K_F512_HI, (long long)K_F512_LO);
		__m128i x1 = _mm_loadu_si128((const __m128i *)(p + 16));
		__m128i x2 = _mm_loadu_si128((const __m128i *)(p + 32));
		__m128i x3 = _mm_loadu_si128((const __m128i *)(p + 48));
		for (p += 64, n -= 64; n >= 64; p += 64, n -= 64) {   /* four lanes, 512 bits a step */
			x0 = fold(x0, k4, _mm_loadu_si128((const __m128i *)p));
			x1 = fold(x1, k4, _mm_loadu_si128((const __m128i *)(p + 16)));
			x2 = fold(x2, k4, _mm_loadu_si128((const __m128i *)(p + 32)));
			x3 = fold(x3, k4, _mm_loadu_si128((const __m128i *)(p + 48)));
		}
		x0 = fold(x0, k, x1);   /* the lanes into one */
		x0 = fold(x0, k, x2);
		x0 = fold(x0, k, x3);
	} else {
		p += 16;
		n -= 16;
	}
	for (; n >= 16; p += 16, n -= 16)
		x0 = fold(x0, k, _mm_loadu_si128((const __m128i *)p));
	/* 128 -> 96 -> 64 bits */
	__m128i mask32 = _mm_set_epi32(0, -1, 0, -1);
	__m128i t = _mm_clmulepi64_si128(x0, k, 0x10);
	x0 = _mm_xor_si128(_mm_srli_si128(x0, 8), t);
	t = _mm_srli_si128(x0, 4);
	x0 = _mm_clmulepi64_si128(_mm_and_si128(x0, mask32), _mm_cvtsi64_si128((long long)K_64), 0x00);
	x0 = _mm_xor_si128(x0, t);
	/* Barrett reduction to 32 bits */
	__m128i pm = _mm_set_epi64x((long long)K_MU, (long long)K_POLY);
	t = _mm_clmulepi64_si128(_mm_and_si128(x0, mask32), pm, 0x10);
	t = _mm_clmulepi64_si128(_mm_and_si128(t, mask32), pm, 0x00);
	x0 = _mm_xor_si128(x0, t);
	return (uint32_t)_mm_cvtsi128_si32(_mm_srli_si128(x0, 4));
}

static int have_clmul;

__attribute__((constructor)) static void crc32_probe(void)
{
	__builtin_cpu_init();
	have_clmul = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse2");
}

uint32_t mi_crc32_update(uint32_t crc, const void *buf, size_t len)
{
	if (!have_clmul || len < 16)
		return mi_crc32_update_portable(crc, buf, len);
	const uint8_t *p = buf;
	size_t n = len & ~(size_t)15;
	uint32_t c = clmul_fold(~crc, p, n);
	return ~tab_walk(c, p + n, len - n);
}
#else
uint32_t mi_crc32_update(uint32_t crc, const void *buf, size_t len)
{
	return mi_crc32_update_portable(crc, buf, len);
}
#endif

uint32_t mi_crc32(const void *buf, size_t len)
{
	return mi_crc32_update(0, buf, len);
}
