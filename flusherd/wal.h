/* wal — the append side of the write-ahead log (flusherd only).
 *
 * One open segment at a time.  wal_append() writes a batch at the end of the
 * current segment's data with pwritev; on failure it zeroes what it wrote,
 * so a failed write leaves no partial record behind.  Segments are
 * preallocated (zero-filled) when a spare is ready: data then ends at the
 * first zero record header, not at the end of the file.
 * wal_sync() makes everything appended durable.  A batch never spans
 * segments: the caller asks wal_room() and rotates first.
 *
 * New segments are version 2 (common/seg.h): each batch must end with a
 * MARK bound into the segment's chain, whose link the WAL keeps (link);
 * and each append is followed by up to 40 zero bytes inside the file, so
 * that the data ends at a zero header even in a recycled file, whose bytes
 * after the data are those of the segment it was.  A new segment comes
 * from data/wal/recycled.<i> (a retired segment, wal_recycle), else from
 * the zero-filled data/wal/spare, else it is a file that grows.
 */
#ifndef MI_WAL_H
#define MI_WAL_H
#include <stdint.h>
#include <sys/uio.h>

#include "common/seg.h"

struct wal {
	char dir[256];
	int dirfd;
	int fd;                 /* current segment, -1 when none */
	uint64_t log_id;
	uint64_t seg_first;     /* first LSN of the current segment */
	uint64_t seg_max;       /* data bytes a segment may hold */
	uint64_t lsn;           /* end of appended data */
	uint64_t synced_lsn;    /* end of fdatasync'd data */
	char seg_path[300];
	char fail_path[300];    /* the file the last failed call was about */
	int spare_used;         /* the last new segment came from the spare (or was recycled) */
	int recycled;           /* ... from wal/recycled.<i>: SEG_F_RECYCLED */
	int dir_unsynced;       /* a rename into dir awaits its fsync */
	uint32_t version;       /* the current segment's; 1: full (appends go to a new one) */
	uint64_t fsize;         /* its file size as far as we know (it only grows) */
	uint32_t link;          /* crc of its last MARK appended (or of its header) */
	uint32_t synced_link;   /* the same at synced_lsn */
};

/* Prepares data/wal/spare: a zero-filled file of a whole segment, taken by
 * the next rotation (a background thread calls this; rotation never waits
 * for it and falls back to a growing file).  0 when one is ready, or -errno. */
int wal_make_spare(const char *dir, uint64_t seg_max);
/* The same, a piece at a time: writes at most about budget more bytes of
 * data/wal/spare.tmp (fd -1 to begin) and renames it into place once whole.
 * 1 when a spare is ready, 0 while one is being made, or -errno. */
struct wal_spare {
	int fd;
	uint64_t off, end;
};
int wal_spare_step(struct wal_spare *sp, const char *dir, uint64_t seg_max, uint64_t budget);
void wal_spare_close(struct wal_spare *sp);
/* Keeps the retired segment dir/name for a later rotation instead of
 * unlinking it, so that no spare has to be written for it: when its size
 * is a whole segment's and fewer than WAL_RECYCLED_MAX files are ready
 * (recycled ones and the spare).  A spare being zero-filled (sp) is given
 * up.  The file is renamed to recycled.tmp, the directory synced, then
 * renamed into the pool, so that a crash can never leave the old name on
 * a file whose header was rewritten.  0 when recycled; -EEXIST (pool
 * full), -EINVAL (not a whole segment of this size) with the file left as
 * it was; or -errno.  The caller must know that no reader maps the file
 * (flusherd/retire.c holds its exclusive flock): its bytes are rewritten.
 *
 * A pool, not one file: retention goes by bursts (a sink commits its
 * offset about once a second, and several segments may go at once),
 * while rotations come one by one.  A small one: the ready files count
 * against [wal] retain_bytes (wal_ready_bytes), and one rotation's worth
 * beside the next is what recycling needs to replace the spare. */
#define WAL_RECYCLED_MAX 2
int wal_recycle(const char *dir, const char *name, uint64_t seg_max, struct wal_spare *sp);
/* The disk the ready files take (the pool, the spare, either being made). */
uint64_t wal_ready_bytes(const char *dir);
/* Writes zeros over [from, to) of fd.  0 or -errno. */
int wal_zero_range(int fd, uint64_t from, uint64_t to);
/* The end of the last non-zero byte of fd in [from, size), or from when
 * that range is all zeros.  0 or -errno. */
int wal_dirty_end(int fd, uint64_t from, uint64_t size, uint64_t *ret);

/* Opens dir for appending at lsn in the segment named by seg_first (which
 * must exist, with valid data up to lsn, lsn its start or the end of a
 * MARK), or creates the first segment when create_first is set.  Returns
 * 0 or -errno (-EBADMSG: no MARK ends at lsn in a version-2 segment). */
int wal_open(struct wal *w, const char *dir, uint64_t log_id, uint64_t seg_max, uint64_t seg_first,
	     uint64_t lsn, int create_first);
void wal_close(struct wal *w);
static inline uint64_t wal_room(const struct wal *w)
{
	uint64_t used = w->lsn - w->seg_first;
	/* a segment started under a larger [wal] segment_bytes is full, and so
	 * is one of version 1: this build appends only to version 2 */
	return used >= w->seg_max || w->version != SEG_VERSION ? 0 : w->seg_max - used;
}
/* Starts a new segment at the current LSN, which must be synced (the old
 * segment is then complete on disk).  Returns 0 or -errno. */
int wal_rotate(struct wal *w);
/* Appends bytes (the sum of iov, at most 64 entries) at the end: a batch
 * ending with the MARK whose crc is mark_crc (the next batch's link).
 * Returns 0 or -errno. */
int wal_append(struct wal *w, const struct iovec *iov, int iovcnt, uint64_t bytes, uint32_t mark_crc);
/* fdatasync everything appended (and first the directory, if a new
 * segment's rename is not yet synced).  On failure the unsynced bytes are cut off
 * (the page cache cannot be trusted after a failed fsync) and lsn goes back
 * to synced_lsn; the caller writes them again.  Returns 0 or -errno. */
int wal_sync(struct wal *w);
#endif
