/* cloud_journal — the cloud sink's plans: each batch's LSN range, written
 * down (appended, fdatasync) before its object is uploaded.
 *
 * A crash between an upload and the offset that covers it redelivers the
 * batch's records; the plan makes the sink rebuild the same object, under
 * the same key, however the records now arrive: no record ever lands in
 * two objects.  A plan is needed while the stored offset has not passed
 * its last LSN; the file is rewritten without the others (temp file,
 * fdatasync, rename, fsync of the directory) when they outnumber the rest.
 *
 * <data dir>/cloud/NAME.journal, a sequence of 40-byte entries:
 *   off size field
 *   0   4    magic   "MICJ"
 *   4   2    topic
 *   6   2    0
 *   8   8    first   LSN of the batch's first record
 *   16  8    last    LSN of its last record
 *   24  8    srv_ns  server time of its first record (the key's date)
 *   32  4    records
 *   36  4    crc     CRC-32 of bytes 0..35
 * A torn or damaged entry ends the journal there (it was never uploaded:
 * the upload waits for the fdatasync).
 */
#ifndef MI_CLOUD_JOURNAL_H
#define MI_CLOUD_JOURNAL_H
#include <stddef.h>
#include <stdint.h>

#include "sinkd/sink.h"

struct cj_plan {
	uint64_t first, last, srv_ns;
	uint32_t records;
	uint16_t topic;
	uint8_t uploaded;            /* in memory only */
};

struct cjournal {
	int fd;                      /* -1: kept in memory only (a backfill) */
	char path[512];
	struct cj_plan *v;
	size_t n, cap;
	size_t on_disk;              /* entries in the file */
};

/* Opens (creates) path; the plans with last >= keep_from are loaded, and
 * those with first < keep_from are marked uploaded (their first record
 * will not come again, so they were).  path NULL: memory only.
 * Returns 0 or -errno with err naming the file. */
int cj_open(struct cjournal *j, const char *path, uint64_t keep_from, char err[SINK_ERR_LEN]);
/* Writes a plan down (durable on return) and keeps it.  Returns its
 * index, or -errno with err. */
int cj_add(struct cjournal *j, const struct cj_plan *p, char err[SINK_ERR_LEN]);
/* Forgets the plans whose last LSN is below `stored`. */
void cj_prune(struct cjournal *j, uint64_t stored);
void cj_close(struct cjournal *j);
#endif
