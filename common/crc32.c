/* CRC-32 (IEEE 802.3, reflected 0xEDB88320: zlib's crc32), slicing by 8.
 *
 * zlib 1.2.13 takes ~2 ns a byte on the 36-150 byte buffers of a frame
 * (hcrc, pcrc, record) on this hardware, where the server computes three
 * or four CRCs per frame; eight table lookups per 8 bytes take half that.
 * From about 512 bytes on zlib's braided code is the faster, so long
 * buffers go to it.  Results are zlib's bit for bit (tests/unit/test_frame.c
 * compares them over every length, alignment and seed). */
#include <stdint.h>
#include <string.h>
#include <zlib.h>

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

uint32_t mi_crc32_update(uint32_t crc, const void *buf, size_t len)
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
	uint32_t c = ~crc;
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
	return ~c;
}

uint32_t mi_crc32(const void *buf, size_t len)
{
	return mi_crc32_update(0, buf, len);
}
