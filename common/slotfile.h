/* slotfile — a small record (<= SLOTFILE_MAX, 4076 bytes) that a torn write cannot lose.
 *
 * The file holds two 4 KiB slots.  A write goes to the slot not holding the
 * newest valid copy, then fdatasync; a reader takes the valid slot with the
 * higher generation.  A write torn midway damages only the slot being
 * written, whose CRC then fails, so the previous copy wins.  Slot layout:
 *
 *   off size field
 *   0   4    magic   caller's
 *   4   4    len     payload bytes
 *   8   8    gen     generation, +1 per write
 *   16  len  payload
 *   4092 4   crc     CRC-32 (zlib) of bytes 0..4091
 *
 * Used for data/meta (flusherd); sink offsets carry blobs of any size and
 * use write-temp-fsync-rename instead (common/offset.h).
 */
#ifndef MI_SLOTFILE_H
#define MI_SLOTFILE_H
#include <stddef.h>
#include <stdint.h>

#define SLOTFILE_SLOT 4096
#define SLOTFILE_MAX (SLOTFILE_SLOT - 20)

struct slotfile {
	int fd;
	uint32_t magic;
	uint64_t gen;      /* generation of the newest valid slot (0: none) */
	int slot;          /* where that copy sits */
};

/* Opens (creating with mode 0600) path.  Returns 0 or -errno. */
int slotfile_open(struct slotfile *f, const char *path, uint32_t magic);
/* Reads the newest valid copy into buf (cap bytes).  Returns its length,
 * -ENOENT when no slot is valid (new file), or -errno. */
int slotfile_read(struct slotfile *f, void *buf, size_t cap);
/* Writes and fdatasyncs a new copy.  Returns 0 or -errno. */
int slotfile_write(struct slotfile *f, const void *buf, size_t len);
void slotfile_close(struct slotfile *f);
#endif
