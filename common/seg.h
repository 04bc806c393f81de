/* seg — WAL segment files: naming, header, record checks.
 *
 * data/wal/<first_lsn, 20 decimal digits>.seg.  The LSN is the byte position
 * in the log's record stream (segment headers do not count), so the record
 * at LSN L lives in the segment with the greatest first_lsn <= L, at file
 * offset SEG_HDR_LEN + (L - first_lsn).  Segments are contiguous: each
 * starts where the previous one ended, and records never span two.
 *
 * Segment header, 64 bytes, little-endian:
 *   off size field
 *   0   8    magic       "MIWALSEG"
 *   8   4    version     2 (this build writes 2, reads 1 and 2)
 *   12  4    hdr_len     64
 *   16  8    first_lsn
 *   24  8    log_id      random per data directory (from data/meta)
 *   32  8    created_ns
 *   40  4    flags       version 2: SEG_F_RECYCLED; 0 in version 1
 *   44  16   reserved    zero
 *   60  4    crc         CRC-32 (zlib) of bytes 0..59
 * Records follow, as in common/record.h.
 *
 * Version 2 binds every MARK to its place, so that a segment file may be
 * reused (recycled) without first being zeroed: after its new header, such
 * a file still holds the records of the older segment it was, and a torn
 * or never-synced write may leave some of them (or of an earlier write to
 * the same place, cut by a recovery) between new ones.  A reader must never
 * take those for records of the log.  So in version 2:
 *
 *   - a MARK names its own LSN, the number of records of its write and a
 *     CRC-32 over their crc fields (the digest), and the crc of the MARK
 *     before it in the segment (the first: of the segment's header), so
 *     the MARKs of a segment form a chain rooted in its header;
 *   - a reader trusts a MARK only if all four match what it walked
 *     (seg_chain_close), and trusts records only up to a trusted MARK;
 *   - every write is followed by zeros (a 40-byte all-zero header, less at
 *     the end of the file), so a segment's data still ends at the first
 *     all-zero header, as in a zero-filled file.
 *
 * Why stale bytes are never trusted: a stale MARK from the file's older
 * segment names an LSN of that segment, below this one's first_lsn, so it
 * never matches its position.  A stale MARK of an earlier write to this
 * segment (cut by a recovery, then overwritten only in part) links to the
 * MARK that preceded it then; it is trusted only if that MARK is the very
 * one the reader just trusted (crc-equal), in which case the earlier write
 * continued the same log from the same place and is itself a whole write
 * of it.  Stale records inside a write (pages of an unsynced write that
 * never reached the disk) change the digest: a single record's crc that
 * differs always changes a CRC-32 over the crcs, more than one does but
 * with probability 2^-32, the strength of the record CRCs themselves.
 */
#ifndef MI_SEG_H
#define MI_SEG_H
#include <stddef.h>
#include <stdint.h>

#include "common/record.h"

#define SEG_HDR_LEN 64
#define SEG_VERSION 2
#define SEG_NAME_LEN 32
/* the file was another segment before: after the end of the data it may
 * hold that segment's records (not part of the log) instead of zeros */
#define SEG_F_RECYCLED 1u

struct seg_hdr {
	uint32_t version;
	uint32_t flags;
	uint64_t first_lsn;
	uint64_t log_id;
	uint64_t created_ns;
	uint32_t crc;           /* the header's own crc: the root of its MARK chain */
};

struct seg_ent {
	uint64_t first_lsn;
	char name[SEG_NAME_LEN];
};

void seg_name(uint64_t first_lsn, char buf[SEG_NAME_LEN]);
/* Segments in dir sorted by first_lsn (files that do not parse as segment
 * names are ignored).  *ret is malloc'd.  Returns 0 or -errno. */
int seg_list(const char *dir, struct seg_ent **ret, size_t *ret_n);
/* A version-2 header. */
void seg_hdr_build(uint8_t out[SEG_HDR_LEN], uint64_t first_lsn, uint64_t log_id, uint64_t created_ns,
		   uint32_t flags);
/* 0, or -EBADMSG (bad magic, version, length or crc; flags in version 1). */
int seg_hdr_parse(const uint8_t *in, size_t len, struct seg_hdr *ret);

enum seg_rec_status {
	SEG_REC_OK = 0,
	SEG_REC_END,    /* no record here: end of data (zeros or nothing left) */
	SEG_REC_TORN,   /* a record header or body runs past the end */
	SEG_REC_BAD,    /* impossible header or CRC mismatch */
	SEG_REC_STALE,  /* version 2: a MARK that does not close the write before it */
};
/* Checks the record at p with avail bytes behind it (CRC included). */
enum seg_rec_status seg_rec_check(const uint8_t *p, size_t avail, uint32_t max_plen);
const char *seg_rec_status_name(enum seg_rec_status s);

/* The MARK chain of a version-2 segment, as a writer builds it and a
 * reader checks it: start at the header's crc, add every record of a
 * write, close with its MARK. */
struct seg_chain {
	uint32_t link;          /* crc of the last MARK so far, or of the header */
	uint32_t nrec;          /* records since */
	uint32_t digest;        /* CRC-32 of their crc fields (little-endian u32s) */
};
static inline void seg_chain_start(struct seg_chain *c, uint32_t link)
{
	c->link = link;
	c->nrec = 0;
	c->digest = 0;
}
static inline void seg_chain_add(struct seg_chain *c, const struct rec_hdr *h)
{
	uint8_t b[4];
	mi_put32(b, h->crc);
	c->digest = mi_crc32_update(c->digest, b, 4);
	c->nrec++;
}
/* What the MARK at lsn that closes c's write must carry. */
void seg_chain_bind(const struct seg_chain *c, uint64_t lsn, struct rec_mark_bind *ret);
/* Whether the MARK h (checked by seg_rec_check) at lsn closes c's write:
 * 1, and c starts over after it; or 0, and c is unchanged. */
int seg_chain_close(struct seg_chain *c, const struct rec_hdr *h, uint64_t lsn);
/* The version-2 MARK whose last byte is just before lsn, found from its
 * trailer: end points at lsn's byte, with before bytes of the segment's
 * data readable before it.  NULL when no whole, valid MARK ends there. */
const struct rec_hdr *seg_mark_ending_at(const uint8_t *end, size_t before, uint64_t lsn);
#endif
