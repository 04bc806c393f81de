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
 *   8   4    version     1
 *   12  4    hdr_len     64
 *   16  8    first_lsn
 *   24  8    log_id      random per data directory (from data/meta)
 *   32  8    created_ns
 *   40  20   reserved    zero
 *   60  4    crc         CRC-32 (zlib) of bytes 0..59
 * Records follow, as in common/record.h.
 */
#ifndef MI_SEG_H
#define MI_SEG_H
#include <stddef.h>
#include <stdint.h>

#include "common/record.h"

#define SEG_HDR_LEN 64
#define SEG_VERSION 1
#define SEG_NAME_LEN 32

struct seg_ent {
	uint64_t first_lsn;
	char name[SEG_NAME_LEN];
};

void seg_name(uint64_t first_lsn, char buf[SEG_NAME_LEN]);
/* Segments in dir sorted by first_lsn (files that do not parse as segment
 * names are ignored).  *ret is malloc'd.  Returns 0 or -errno. */
int seg_list(const char *dir, struct seg_ent **ret, size_t *ret_n);
void seg_hdr_build(uint8_t out[SEG_HDR_LEN], uint64_t first_lsn, uint64_t log_id, uint64_t created_ns);
/* 0, or -EBADMSG (bad magic, version or crc). */
int seg_hdr_parse(const uint8_t *in, size_t len, uint64_t *ret_first_lsn, uint64_t *ret_log_id);

enum seg_rec_status {
	SEG_REC_OK = 0,
	SEG_REC_END,    /* no record here: end of data (zeros or nothing left) */
	SEG_REC_TORN,   /* a record header or body runs past the end */
	SEG_REC_BAD,    /* impossible header or CRC mismatch */
};
/* Checks the record at p with avail bytes behind it (CRC included). */
enum seg_rec_status seg_rec_check(const uint8_t *p, size_t avail, uint32_t max_plen);
const char *seg_rec_status_name(enum seg_rec_status s);
#endif
