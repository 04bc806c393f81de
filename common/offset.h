/* offset — a sink's committed position: data/sinks/<name>.offset.
 *
 * sinkd writes it; flusherd reads it too, since a sink holds the log's
 * retention at its committed LSN (flusherd/retain.h).
 *
 * Written as <name>.offset.tmp, fdatasync, rename, fsync(dir): always whole.
 *   off size field
 *   0   8    magic     "MISINKO1"
 *   8   8    lsn       next LSN to deliver
 *   16  4    blob_len  the sink's resume state
 *   20  4    crc       CRC-32 of bytes 0..19 and the blob
 *   24  ..   blob
 */
#ifndef MI_OFFSET_H
#define MI_OFFSET_H
#include <stddef.h>
#include <stdint.h>

/* Returns 0 (and *blob malloc'd or NULL), -ENOENT when none, or -errno. */
int offset_load(const char *dir, const char *name, uint64_t *lsn, void **blob, size_t *blob_len);
int offset_store(const char *dir, const char *name, uint64_t lsn, const void *blob, size_t blob_len);
#endif
