#include "common/record.h"

#include <zlib.h>

uint32_t rec_crc_with(const struct rec_hdr *h, uint32_t payload_crc)
{
	const uint8_t *b = (const uint8_t *)h;
	uint32_t c = mi_crc32(b + 4, REC_HDR_LEN - 4 + h->id_len);
	/* zlib's combine costs ~150 ns whatever the length; going over a
	 * small payload again (in the ring, in cache) is cheaper */
	if (h->plen < 512)
		return mi_crc32_update(c, b + REC_HDR_LEN + h->id_len, h->plen);
	return (uint32_t)crc32_combine(c, payload_crc, (z_off_t)h->plen);
}

uint32_t rec_crc(const struct rec_hdr *h)
{
	const uint8_t *b = (const uint8_t *)h;
	return mi_crc32(b + 4, REC_HDR_LEN - 4 + h->id_len + (size_t)h->plen);
}

void rec_build_data(void *dst, const uint8_t *id, uint8_t id_len, uint16_t topic, uint32_t slot,
		    uint64_t seq, uint64_t ts_ns, uint64_t srv_ns, const void *payload,
		    uint32_t plen, uint32_t payload_crc)
{
	struct rec_hdr *h = dst;
	uint8_t *b = dst;
	h->plen = plen;
	h->type = REC_DATA;
	h->id_len = id_len;
	h->topic = topic;
	h->slot = slot;
	h->seq = seq;
	h->ts_ns = ts_ns;
	h->srv_ns = srv_ns;
	memcpy(b + REC_HDR_LEN, id, id_len);
	memcpy(b + REC_HDR_LEN + id_len, payload, plen);
	uint32_t end = REC_HDR_LEN + id_len + plen, total = rec_size(id_len, plen);
	memset(b + end, 0, total - end);
	h->crc = rec_crc_with(h, payload_crc);
}

void rec_build_mark(void *dst, uint64_t shm_id, uint32_t nrings, const uint64_t *pos, uint64_t srv_ns,
		    const struct rec_mark_bind *b)
{
	struct rec_hdr *h = dst;
	uint8_t *p = (uint8_t *)dst + REC_HDR_LEN;
	static const struct rec_mark_bind none;
	if (!b)
		b = &none;
	memset(h, 0, sizeof(*h));
	h->plen = REC_MARK_PLEN(nrings);
	h->type = REC_MARK;
	h->srv_ns = srv_ns;
	mi_put64(p, shm_id);
	mi_put32(p + 8, nrings);
	mi_put32(p + 12, b->nrec);
	for (uint32_t i = 0; i < nrings; i++)
		mi_put64(p + 16 + 8 * i, pos[i]);
	uint8_t *t = p + 16 + 8 * nrings;
	mi_put64(t, b->lsn);
	mi_put32(t + 8, b->digest);
	mi_put32(t + 12, b->prev);
	uint32_t end = REC_HDR_LEN + h->plen, total = rec_size(0, h->plen);
	memset((uint8_t *)dst + end, 0, total - end);
	h->crc = rec_crc(h);
}
