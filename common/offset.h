/* offset — a sink instance's files in data/sinks: its committed position
 * (<name>.offset) and what retention retired under it undelivered
 * (<name>.skipped).
 *
 * sinkd writes the offset; flusherd reads it too, since an instance holds
 * the log's retention at its committed LSN (flusherd/retain.h).  flusherd
 * writes the skipped ledger of an instance with lag_policy = skip, before
 * it retires a segment the instance had not delivered; sinkd reads it when
 * it finds its next record retired, to count what it skips.
 *
 * Both are written as <file>.tmp, fdatasync, rename, fsync(dir): always
 * whole.  One envelope:
 *   off size field
 *   0   8    magic     "MISINKO1" (offset) or "MISKIPL1" (skipped)
 *   8   8    value     offset: next LSN to deliver; skipped: 0
 *   16  4    blob_len  offset: the sink's resume state; skipped: entries
 *   20  4    crc       CRC-32 of bytes 0..19 and the blob
 *   24  ..   blob
 * A skipped entry is 24 bytes: from_lsn, to_lsn, records (u64 each): the
 * instance's records (of its topics) in [from_lsn, to_lsn), one retired
 * segment's worth, from_lsn its first LSN or the instance's offset in it.
 */
#ifndef MI_OFFSET_H
#define MI_OFFSET_H
#include <stddef.h>
#include <stdint.h>

/* Returns 0 (and *blob malloc'd or NULL), -ENOENT when none, or -errno. */
int offset_load(const char *dir, const char *name, uint64_t *lsn, void **blob, size_t *blob_len);
int offset_store(const char *dir, const char *name, uint64_t lsn, const void *blob, size_t blob_len);

struct skipped {
	uint64_t from, to, records;
};
/* Entries kept: beyond this the oldest go (a count that needs them is
 * then reported as unknown), about 10 TB of 64 MiB segments. */
#define SKIPPED_MAX 163840
/* In LSN order.  *ret malloc'd (NULL when n is 0); -ENOENT when none, or -errno. */
int skipped_load(const char *dir, const char *name, struct skipped **ret, size_t *n);
int skipped_store(const char *dir, const char *name, const struct skipped *v, size_t n);
/* The records in [from, to) by the chain of entries from `from` (each
 * entry's to the next one's from): *records their sum, and the LSN where
 * the chain ends (to when the entries account for all of it). */
uint64_t skipped_count(const struct skipped *v, size_t n, uint64_t from, uint64_t to, uint64_t *records);
#endif
