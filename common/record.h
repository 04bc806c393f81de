/* record — the WAL record, which is also the ring record.
 *
 * ingestd builds each record in its final form in the ring, so flusherd
 * writes ring memory to the segment file as it is (pwritev, no copy) and
 * sinkd reads the same bytes back through mmap.  Little-endian, every record
 * starts 8-byte aligned:
 *
 *   off size field   meaning
 *   0   4    crc     CRC-32 (zlib) of bytes 4 .. 40+id_len+plen-1
 *   4   4    plen    payload length
 *   8   1    type    REC_DATA, REC_MARK; REC_PAD only in rings
 *   9   1    id_len  device id length (0 for MARK and PAD)
 *   10  2    topic   topic id
 *   12  4    slot    device-table slot at write time (a hint; not stable
 *                    across a reboot of the shm region)
 *   16  8    seq     device sequence number
 *   24  8    ts_ns   device timestamp, or server time when the device sent 0
 *   32  8    srv_ns  server receive time, ns since the epoch
 *   40  ..   id      id_len bytes of device id, then plen payload bytes,
 *                    then zeros to the next multiple of 8
 *
 * REC_MARK ends every write flusherd makes: its payload says which ring
 * positions the WAL holds up to and including this write, and (in version-2
 * segments, common/seg.h) binds the MARK to its place in the log:
 *   off   size field
 *   0     8    shm_id   the ring epoch the positions belong to
 *   8     4    nrings
 *   12    4    nrec     records of the write before this MARK (0 in version 1)
 *   16    8*n  pos[n]   ring i's consumer position after this write
 *   16+8n 8    lsn      this MARK's own LSN                 } version 2
 *   24+8n 4    digest   CRC-32 of those records' crc fields } only
 *   28+8n 4    prev     crc of the segment's previous MARK  }
 *                       (of its header for the first)
 * plen is 32 + 8n (16 + 8n in version 1), so a MARK is 72 + 8n bytes and
 * its last 16 bytes are lsn, digest, prev: the MARK that ends at a given
 * LSN is found from there (seg_mark_ending_at).  Recovery trusts the log
 * only up to its last MARK, so a write torn midway is cut whole and its
 * records, still in the rings, are written again.
 *
 * REC_PAD fills a ring's end when the next record does not fit before the
 * wrap; plen counts the pad bytes after the 40-byte header.  When fewer than
 * 40 bytes remain, the producer skips them without a PAD.
 */
#ifndef MI_RECORD_H
#define MI_RECORD_H
#include <stdint.h>
#include <string.h>

#include "common/frame.h"

#define REC_HDR_LEN 40
#define REC_ALIGN 8

enum rec_type { REC_DATA = 1, REC_MARK = 2, REC_PAD = 3, REC_TYPE_MAX };

struct rec_hdr {
	uint32_t crc;
	uint32_t plen;
	uint8_t type;
	uint8_t id_len;
	uint16_t topic;
	uint32_t slot;
	uint64_t seq;
	uint64_t ts_ns;
	uint64_t srv_ns;
};
_Static_assert(sizeof(struct rec_hdr) == REC_HDR_LEN, "record header is 40 bytes");
/* Records are read and written as host-order structs: the on-disk format
 * is little-endian because every host we build for is. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the WAL format is little-endian");

static inline uint32_t rec_size(uint32_t id_len, uint32_t plen)
{
	return (REC_HDR_LEN + id_len + plen + REC_ALIGN - 1) & ~(uint32_t)(REC_ALIGN - 1);
}

static inline uint32_t rec_total(const struct rec_hdr *h)
{
	return rec_size(h->id_len, h->plen);
}

static inline const uint8_t *rec_id(const struct rec_hdr *h)
{
	return (const uint8_t *)h + REC_HDR_LEN;
}

static inline const uint8_t *rec_payload(const struct rec_hdr *h)
{
	return (const uint8_t *)h + REC_HDR_LEN + h->id_len;
}

/* The record's CRC, given the CRC of its payload (already checked on the
 * wire): large payloads are not read again (crc32_combine); small ones,
 * already copied into the record, are (cheaper than the combine). */
uint32_t rec_crc_with(const struct rec_hdr *h, uint32_t payload_crc);
/* The record's CRC computed from all its bytes. */
uint32_t rec_crc(const struct rec_hdr *h);
/* Fills a DATA record in place at dst (rec_size(id_len, plen) bytes). */
void rec_build_data(void *dst, const uint8_t *id, uint8_t id_len, uint16_t topic, uint32_t slot,
		    uint64_t seq, uint64_t ts_ns, uint64_t srv_ns, const void *payload,
		    uint32_t plen, uint32_t payload_crc);

/* MARK payload helpers. */
#define REC_MARK_MAX_RINGS 16
#define REC_MARK_PLEN(nrings) (32u + 8u * (nrings))
#define REC_MARK_PLEN_V1(nrings) (16u + 8u * (nrings))
#define REC_MARK_MAX_LEN (REC_HDR_LEN + REC_MARK_PLEN(REC_MARK_MAX_RINGS))
static inline uint64_t rec_mark_shm_id(const struct rec_hdr *h) { return mi_get64(rec_payload(h)); }
static inline uint32_t rec_mark_nrings(const struct rec_hdr *h) { return mi_get32(rec_payload(h) + 8); }
static inline uint32_t rec_mark_nrec(const struct rec_hdr *h) { return mi_get32(rec_payload(h) + 12); }
static inline uint64_t rec_mark_pos(const struct rec_hdr *h, uint32_t i)
{
	return mi_get64(rec_payload(h) + 16 + 8 * i);
}
/* The version-2 binding (valid when plen == REC_MARK_PLEN(nrings)). */
struct rec_mark_bind {
	uint64_t lsn;           /* the MARK's own LSN */
	uint32_t nrec;          /* records of the write before it */
	uint32_t digest;        /* CRC-32 of their crc fields, in log order */
	uint32_t prev;          /* crc of the previous MARK in the segment, or of its header */
};
static inline void rec_mark_bind(const struct rec_hdr *h, struct rec_mark_bind *ret)
{
	const uint8_t *b = rec_payload(h) + 16 + 8 * rec_mark_nrings(h);
	ret->lsn = mi_get64(b);
	ret->nrec = rec_mark_nrec(h);
	ret->digest = mi_get32(b + 8);
	ret->prev = mi_get32(b + 12);
}
/* Builds a MARK into dst (rec_size(0, REC_MARK_PLEN(nrings)) bytes) bound
 * by b (NULL: all zero, for rings and tests that never read it back). */
void rec_build_mark(void *dst, uint64_t shm_id, uint32_t nrings, const uint64_t *pos, uint64_t srv_ns,
		    const struct rec_mark_bind *b);
#endif
