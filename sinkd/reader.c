#include "sinkd/reader.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/seg.h"

void reader_init(struct reader *r, const char *wal_dir, uint64_t segment_bytes)
{
	memset(r, 0, sizeof(*r));
	snprintf(r->dir, sizeof(r->dir), "%s", wal_dir);
	r->seg_max = SEG_HDR_LEN + segment_bytes;
	r->fd = r->prev_fd = -1;
}

/* Unmaps the previous segment.  With drop, its pages leave the page cache
 * too (drop-behind): the log is written once and read once here, so they
 * would only push out something useful, and the kernel hands the freed
 * pages straight to the next segment's writes.  A page cache that grew
 * instead cost flusherd and sinkd three times the CPU per byte copied on
 * this VM, each new page first touched through the hypervisor.  Another
 * sink still behind reads the segment from disk, as under memory pressure. */
static void unmap_prev(struct reader *r, int drop)
{
	if (r->prev_map)
		munmap(r->prev_map, r->prev_len);
	if (r->prev_fd >= 0) {
		if (drop)
			posix_fadvise(r->prev_fd, 0, 0, POSIX_FADV_DONTNEED);
		close(r->prev_fd);
	}
	r->prev_map = NULL;
	r->prev_fd = -1;
}

void reader_close(struct reader *r)
{
	unmap_prev(r, 0);
	if (r->map)
		munmap(r->map, r->seg_max);
	if (r->fd >= 0)
		close(r->fd);
	r->map = NULL;
	r->fd = -1;
}

static int map_segment(struct reader *r, uint64_t first)
{
	char path[600], name[SEG_NAME_LEN];
	struct stat st;
	seg_name(first, name);
	snprintf(path, sizeof(path), "%s/%s", r->dir, name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* the shared lock keeps retention from recycling the file while it is
	 * mapped (flusherd/retire.h); one retired meanwhile has another name
	 * or none by the time the lock is ours */
	struct stat now;
	if (flock(fd, LOCK_SH) < 0 || fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	if (stat(path, &now) < 0 || now.st_ino != st.st_ino || now.st_dev != st.st_dev) {
		close(fd);
		return -ENOENT;
	}
	uint64_t len = (uint64_t)st.st_size > r->seg_max ? (uint64_t)st.st_size : r->seg_max;
	void *p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		int e = errno;
		close(fd);
		return -e;
	}
	/* only a segment left behind moving forward is done with: after a
	 * rewind (a sink redelivering) the previous mapping can be the
	 * segment flusherd is still appending to */
	unmap_prev(r, r->prev_first < first);
	r->prev_map = r->map;
	r->prev_len = r->seg_max;
	r->prev_fd = r->fd;
	r->prev_first = r->seg_first;
	r->moves++;
	r->seg_max = len;
	r->fd = fd;
	r->map = p;
	r->seg_first = first;
	r->file_size = (uint64_t)st.st_size;
	return 0;
}

/* Whether the mapping still shows the segment it was mapped as.  flusherd
 * may recycle a retired segment's file as a new segment (flusherd/wal.h):
 * it rewrites the header, with the new first LSN, before any record, so a
 * mapping kept across that (a sink waiting at the old segment's end) sees
 * the new header before it could see a new record where the old one
 * ended.  Checked before and after a record is read there. */
static int map_current(const struct reader *r)
{
	if (r->file_size < SEG_HDR_LEN)
		return 1;
	/* the record's bytes read before this are ordered before it */
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	return __atomic_load_n((const uint64_t *)(const void *)(r->map + 16), __ATOMIC_ACQUIRE) == r->seg_first;
}

/* The segment holding lsn: the greatest first_lsn <= lsn. */
static int find_segment(struct reader *r, uint64_t lsn)
{
	struct seg_ent *v;
	size_t n;
	int e = seg_list(r->dir, &v, &n);
	if (e < 0)
		return e;
	size_t best = n;
	for (size_t i = 0; i < n; i++)
		if (v[i].first_lsn <= lsn)
			best = i;
	e = best == n ? -ENOENT : map_segment(r, v[best].first_lsn);
	free(v);
	return e;
}

const struct rec_hdr *reader_at(struct reader *r, uint64_t lsn, int *err)
{
	/* records start on 8-byte boundaries (common/record.h): any other LSN
	 * is not a record's, and no header may be read there */
	if (lsn & 7) {
		*err = -EBADMSG;
		return NULL;
	}
	*err = 0;
	if (!r->map || lsn < r->seg_first || !map_current(r)) {
		if ((*err = find_segment(r, lsn)) < 0)
			return NULL;
	}
	for (int tries = 0; tries < 3; tries++) {
		uint64_t off = SEG_HDR_LEN + (lsn - r->seg_first);
		if (off + REC_HDR_LEN <= r->file_size) {
			const struct rec_hdr *h = (const struct rec_hdr *)(const void *)(r->map + off);
			if (h->type == 0 && h->plen == 0 && h->crc == 0) {
				/* the preallocated room after a segment's last record:
				 * the log went on in the next segment, starting here */
				if ((*err = map_segment(r, lsn)) < 0) {
					/* lsn lies further on, inside a later segment */
					if (*err == -ENOENT)
						*err = find_segment(r, lsn);
					if (*err < 0)
						return NULL;
				}
				continue;
			}
			if (!map_current(r)) {
				if ((*err = find_segment(r, lsn)) < 0)
					return NULL;
				continue;
			}
			if (h->type != REC_DATA && h->type != REC_MARK) {
				*err = -EBADMSG;
				return NULL;
			}
			if (off + rec_total(h) <= r->file_size)
				return h;
		}
		/* past what we knew of the file: it grew, or the log went on in
		 * the next segment (which starts exactly here) */
		struct stat st;
		if (fstat(r->fd, &st) == 0 && (uint64_t)st.st_size > r->file_size) {
			if ((uint64_t)st.st_size > r->seg_max) {
				/* grew past the mapping (segments made under a larger
				 * [wal] segment_bytes): map it again, whole */
				if ((*err = map_segment(r, r->seg_first)) < 0)
					return NULL;
			} else {
				r->file_size = (uint64_t)st.st_size;
			}
			continue;
		}
		if ((*err = map_segment(r, lsn)) < 0) {
			if (*err == -ENOENT)
				*err = find_segment(r, lsn);
			if (*err < 0)
				return NULL;
		}
	}
	*err = -EBADMSG;
	return NULL;
}
