/* reader — walks the WAL by LSN through mmap'd segments (sinkd).
 *
 * Only records below the published durable LSN are read, so every byte
 * read is whole and synced.  A segment is mapped at its maximal size once;
 * the file grows under the mapping as flusherd appends.  When the reader
 * moves to another segment the previous mapping stays until the next move,
 * so records handed out before one move stay valid: a caller that ends its
 * batch at a move (reader.moves changed) never holds a dangling record.
 *
 * Each mapped segment is held with a shared flock: retention then never
 * recycles it (its bytes would change under the mapping) but only unlinks
 * it, and what is mapped stays readable, whole, until it is unmapped.
 */
#ifndef MI_READER_H
#define MI_READER_H
#include <stdint.h>

#include "common/record.h"

struct reader {
	char dir[512];
	uint64_t seg_max;        /* bytes mapped per segment (header + data) */
	int fd;
	uint8_t *map;
	uint64_t seg_first;
	uint64_t file_size;
	uint32_t moves;          /* segment switches so far */
	int prev_fd;             /* the segment before, still mapped */
	uint8_t *prev_map;
	uint64_t prev_len;
	uint64_t prev_first;     /* its first LSN */
};

void reader_init(struct reader *r, const char *wal_dir, uint64_t segment_bytes);
void reader_close(struct reader *r);
/* The record at lsn (< durable), MARKs included.  Returns NULL with *err
 * set: -ENOENT (no segment holds lsn: removed by retention?) or -EBADMSG
 * (no record there, an LSN that is not a multiple of 8 included). */
const struct rec_hdr *reader_at(struct reader *r, uint64_t lsn, int *err);
#endif
