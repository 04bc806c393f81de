#include "flusherd/wal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/seg.h"

#define SPARE "spare"
#define SPARE_TMP "spare.tmp"
#define RECYCLED_TMP "recycled.tmp"

/* wal/recycled.<i>: the pool of retired segments waiting to be taken */
static void recycled_name(unsigned i, char buf[16])
{
	snprintf(buf, 16, "recycled.%u", i);
}

/* The first pool slot that holds (want 1) or lacks (want 0) a file, or
 * WAL_RECYCLED_MAX. */
static unsigned recycled_slot(int dirfd, int want)
{
	struct stat st;
	char name[16];
	for (unsigned i = 0; i < WAL_RECYCLED_MAX; i++) {
		recycled_name(i, name);
		if ((fstatat(dirfd, name, &st, 0) == 0) == want)
			return i;
	}
	return WAL_RECYCLED_MAX;
}

static const uint8_t zeros[1 << 16];

int wal_zero_range(int fd, uint64_t from, uint64_t to)
{
	while (from < to) {
		size_t n = to - from > sizeof(zeros) ? sizeof(zeros) : (size_t)(to - from);
		ssize_t w = pwrite(fd, zeros, n, (off_t)from);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		from += (uint64_t)w;
	}
	return 0;
}

int wal_dirty_end(int fd, uint64_t from, uint64_t size, uint64_t *ret)
{
	uint8_t buf[1 << 16];
	uint64_t end = size;
	while (end > from) {
		uint64_t n = end - from > sizeof(buf) ? sizeof(buf) : end - from;
		ssize_t r = pread(fd, buf, (size_t)n, (off_t)(end - n));
		if (r != (ssize_t)n)
			return r < 0 ? -errno : -EIO;
		for (uint64_t i = n; i-- > 0;)
			if (buf[i]) {
				*ret = end - n + i + 1;
				return 0;
			}
		end -= n;
	}
	*ret = from;
	return 0;
}

void wal_spare_close(struct wal_spare *sp)
{
	if (sp->fd >= 0)
		close(sp->fd);
	sp->fd = -1;
}

/* Writes are pushed to the device chunk by chunk (sync_file_range) rather
 * than left to pile up in the page cache: the next group commit's flush
 * would otherwise carry megabytes of zeros, and ACK latency with it. */
int wal_spare_step(struct wal_spare *sp, const char *dir, uint64_t seg_max, uint64_t budget)
{
	int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return -errno;
	struct stat st;
	int r = 0;
	if (sp->fd < 0 && fstatat(dirfd, RECYCLED_TMP, &st, 0) == 0) {
		/* a wal_recycle() cut short: its file is a retired segment,
		 * untouched, so it may still serve */
		char name[16];
		unsigned i = recycled_slot(dirfd, 0);
		recycled_name(i, name);
		if (i == WAL_RECYCLED_MAX || renameat2(dirfd, RECYCLED_TMP, dirfd, name, RENAME_NOREPLACE) < 0)
			unlinkat(dirfd, RECYCLED_TMP, 0);
	}
	for (unsigned i = 0; sp->fd < 0 && i < WAL_RECYCLED_MAX; i++) {
		char name[16];
		recycled_name(i, name);
		if (fstatat(dirfd, name, &st, 0) < 0)
			continue;
		if ((uint64_t)st.st_size == SEG_HDR_LEN + seg_max) {
			r = 1;
			goto out;
		}
		unlinkat(dirfd, name, 0);   /* retired under another segment size */
	}
	if (sp->fd < 0 && fstatat(dirfd, SPARE, &st, 0) == 0) {
		if ((uint64_t)st.st_size == SEG_HDR_LEN + seg_max) {
			r = 1;
			goto out;
		}
		unlinkat(dirfd, SPARE, 0);   /* made for another segment size */
	}
	if (sp->fd < 0) {
		/* the last free space is the log's, not a spare's: taking it
		 * would stall appends that could still have gone on */
		struct statvfs vfs;
		if (fstatvfs(dirfd, &vfs) == 0 &&
		    (uint64_t)vfs.f_bavail * vfs.f_frsize < 2 * (SEG_HDR_LEN + seg_max)) {
			r = -ENOSPC;
			goto out;
		}
		sp->fd = openat(dirfd, SPARE_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (sp->fd < 0) {
			r = -errno;
			goto out;
		}
		sp->off = 0;
		sp->end = SEG_HDR_LEN + seg_max;
	}
	uint64_t from = sp->off;
	while (sp->off < sp->end && sp->off - from < budget) {
		uint64_t n = sp->end - sp->off;
		if (n > budget - (sp->off - from))
			n = budget - (sp->off - from);
		if (n > sizeof(zeros))
			n = sizeof(zeros);
		ssize_t w = pwrite(sp->fd, zeros, (size_t)n, (off_t)sp->off);
		if (w < 0 && errno != EINTR) {
			r = -errno;
			goto fail;
		}
		if (w > 0)
			sp->off += (uint64_t)w;
	}
	if (sp->off > from && sync_file_range(sp->fd, (off_t)from, (off_t)(sp->off - from),
					      SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
						      SYNC_FILE_RANGE_WAIT_AFTER) < 0) {
		r = -errno;
		goto fail;
	}
	if (sp->off < sp->end)
		goto out;
	/* the zeros must be durable before the file is a segment: recovery
	 * reads them as the end of the data */
	if (fdatasync(sp->fd) < 0 || renameat(dirfd, SPARE_TMP, dirfd, SPARE) < 0 || fsync(dirfd) < 0) {
		r = -errno;
		goto fail;
	}
	wal_spare_close(sp);
	r = 1;
	goto out;
fail:
	wal_spare_close(sp);
	unlinkat(dirfd, SPARE_TMP, 0);
out:
	close(dirfd);
	return r;
}

int wal_make_spare(const char *dir, uint64_t seg_max)
{
	struct wal_spare sp = { .fd = -1 };
	int r = wal_spare_step(&sp, dir, seg_max, UINT64_MAX);
	wal_spare_close(&sp);
	return r < 0 ? r : 0;
}

/* Recycling saves the spare's writes: a full-rate log otherwise writes
 * every byte twice, once as zeros.  The file keeps the records of the
 * segment it was after the new header; version 2 segments make that safe
 * (common/seg.h), and the header's SEG_F_RECYCLED says so. */
int wal_recycle(const char *dir, const char *name, uint64_t seg_max, struct wal_spare *sp)
{
	int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return -errno;
	struct stat st;
	int r;
	char slot[16];
	unsigned i = recycled_slot(dirfd, 0), ready = 0;
	for (unsigned j = 0; j < WAL_RECYCLED_MAX; j++) {
		recycled_name(j, slot);
		ready += fstatat(dirfd, slot, &st, 0) == 0;
	}
	ready += fstatat(dirfd, SPARE, &st, 0) == 0;
	if (i == WAL_RECYCLED_MAX || ready >= WAL_RECYCLED_MAX || fstatat(dirfd, RECYCLED_TMP, &st, 0) == 0) {
		r = -EEXIST;
		goto out;
	}
	recycled_name(i, slot);
	if (fstatat(dirfd, name, &st, 0) < 0) {
		r = -errno;
		goto out;
	}
	if ((uint64_t)st.st_size != SEG_HDR_LEN + seg_max) {
		r = -EINVAL;
		goto out;
	}
	/* the spare being zero-filled is no longer needed (a spare already
	 * made stays: it cost its writes, and serves when the pool is empty) */
	if (sp && sp->fd >= 0) {
		wal_spare_close(sp);
		unlinkat(dirfd, SPARE_TMP, 0);
	}
	/* the old name must be gone on disk before anyone may write the file:
	 * a rotation rewrites its header as soon as it is in the pool */
	if (renameat2(dirfd, name, dirfd, RECYCLED_TMP, RENAME_NOREPLACE) < 0) {
		r = -errno;
		goto out;
	}
	r = 0;
	if (fsync(dirfd) == 0)
		renameat2(dirfd, RECYCLED_TMP, dirfd, slot, RENAME_NOREPLACE);
	/* else recycled.tmp stays, out of the log; wal_spare_step finishes
	 * the job (or removes it) */
out:
	close(dirfd);
	return r;
}

uint64_t wal_ready_bytes(const char *dir)
{
	int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return 0;
	uint64_t sum = 0;
	struct stat st;
	char name[16];
	for (unsigned i = 0; i <= WAL_RECYCLED_MAX; i++) {
		if (i < WAL_RECYCLED_MAX)
			recycled_name(i, name);
		if (fstatat(dirfd, i < WAL_RECYCLED_MAX ? name : RECYCLED_TMP, &st, 0) == 0)
			sum += (uint64_t)st.st_size;
	}
	if (fstatat(dirfd, SPARE, &st, 0) == 0)
		sum += (uint64_t)st.st_size;
	if (fstatat(dirfd, SPARE_TMP, &st, 0) == 0)
		sum += (uint64_t)st.st_size;
	close(dirfd);
	return sum;
}

/* A new segment from a ready file (recycled or the zero-filled spare):
 * header, sync, rename into place.  Its appends then overwrite allocated
 * blocks, so fdatasync does not have to commit a new file size to the
 * journal.  -ENOENT when there is no such file (of the right size). */
static int take_file(struct wal *w, const char *src, const char *name, uint64_t first, uint32_t flags)
{
	int fd = openat(w->dirfd, src, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) < 0 || (uint64_t)st.st_size != SEG_HDR_LEN + w->seg_max) {
		close(fd);
		unlinkat(w->dirfd, src, 0);
		return -ENOENT;
	}
	/* the header, and the zero record header that ends the (empty) data:
	 * a recycled file still holds its older segment's records right after
	 * the header, which a reader must not meet before the first append
	 * (found by test_retention: a replay read them as damage) */
	uint8_t hdr[SEG_HDR_LEN + REC_HDR_LEN] = { 0 };
	seg_hdr_build(hdr, first, w->log_id, clock_real_ns(), flags);
	int r = 0;
	if (pwrite(fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr))
		r = errno ? -errno : -EIO;
	else if (fdatasync(fd) < 0)
		r = -errno;
	else if (renameat2(w->dirfd, src, w->dirfd, name, RENAME_NOREPLACE) < 0)
		r = -errno;
	else if (fsync(w->dirfd) < 0) {
		/* renamed already: the segment is in place, and giving it up would
		 * make every later rotation fail on the name.  Its appends commit
		 * no metadata, so nothing else would persist the rename: every
		 * sync fails until the directory's fsync succeeds */
		w->dir_unsynced = 1;
	}
	if (r < 0) {
		close(fd);
		return r;
	}
	w->fd = fd;
	w->fsize = (uint64_t)st.st_size;
	w->link = w->synced_link = mi_get32(hdr + 60);
	return 0;
}

/* The link of the chain at lsn in the open segment (header h): the
 * header's crc at its start, else the crc of the MARK that ends there. */
static int link_at(struct wal *w, const struct seg_hdr *h, uint64_t lsn)
{
	if (lsn == w->seg_first) {
		w->link = h->crc;
		return 0;
	}
	uint64_t data = lsn - w->seg_first, n = data < REC_MARK_MAX_LEN ? data : REC_MARK_MAX_LEN;
	_Alignas(8) uint8_t buf[REC_MARK_MAX_LEN];
	if (pread(w->fd, buf + sizeof(buf) - n, n, (off_t)(SEG_HDR_LEN + data - n)) != (ssize_t)n)
		return -EIO;
	const struct rec_hdr *m = seg_mark_ending_at(buf + sizeof(buf), (size_t)n, lsn);
	if (!m)
		return -EBADMSG;
	w->link = m->crc;
	return 0;
}

static int open_seg(struct wal *w, uint64_t first, int create)
{
	char name[SEG_NAME_LEN];
	seg_name(first, name);
	snprintf(w->seg_path, sizeof(w->seg_path), "%s/%s", w->dir, name);
	if (!create) {
		int fd = openat(w->dirfd, name, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		uint8_t b[SEG_HDR_LEN];
		struct seg_hdr h;
		struct stat st;
		int r = 0;
		if (fstat(fd, &st) < 0)
			r = -errno;
		else if (pread(fd, b, SEG_HDR_LEN, 0) != SEG_HDR_LEN || seg_hdr_parse(b, SEG_HDR_LEN, &h) < 0)
			r = -EBADMSG;
		w->fd = fd;
		w->seg_first = first;
		if (r == 0) {
			w->version = h.version;
			w->recycled = !!(h.flags & SEG_F_RECYCLED);
			w->fsize = (uint64_t)st.st_size;
			/* a version-1 segment takes no appends (wal_room): no chain */
			if (h.version == SEG_VERSION)
				r = link_at(w, &h, w->lsn);
			w->synced_link = w->link;
		}
		if (r < 0) {
			close(fd);
			w->fd = -1;
		}
		return r;
	}
	w->spare_used = w->recycled = 0;
	w->version = SEG_VERSION;
	for (unsigned i = 0; i < WAL_RECYCLED_MAX; i++) {
		char src[16];
		recycled_name(i, src);
		if (take_file(w, src, name, first, SEG_F_RECYCLED) == 0) {
			w->seg_first = first;
			w->spare_used = w->recycled = 1;
			return 0;
		}
	}
	if (take_file(w, SPARE, name, first, 0) == 0) {
		w->seg_first = first;
		w->spare_used = 1;
		return 0;
	}
	/* no spare ready: a plain file that grows with each append */
	int fd = openat(w->dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 && errno == EEXIST) {
		/* an empty or header-only leftover from a rotation that died midway */
		fd = openat(w->dirfd, name, O_RDWR | O_CLOEXEC);
		if (fd >= 0) {
			off_t sz = lseek(fd, 0, SEEK_END);
			if (sz > SEG_HDR_LEN) {
				close(fd);
				return -EEXIST;
			}
		}
	}
	if (fd < 0)
		return -errno;
	uint8_t hdr[SEG_HDR_LEN];
	seg_hdr_build(hdr, first, w->log_id, clock_real_ns(), 0);
	int r = 0;
	if (pwrite(fd, hdr, SEG_HDR_LEN, 0) != SEG_HDR_LEN)
		r = errno ? -errno : -EIO;
	else if (ftruncate(fd, SEG_HDR_LEN) < 0 || fdatasync(fd) < 0 || fsync(w->dirfd) < 0)
		r = -errno;
	if (r < 0) {
		close(fd);
		unlinkat(w->dirfd, name, 0);
		return r;
	}
	w->fd = fd;
	w->seg_first = first;
	w->fsize = SEG_HDR_LEN;
	w->link = w->synced_link = mi_get32(hdr + 60);
	return 0;
}

int wal_open(struct wal *w, const char *dir, uint64_t log_id, uint64_t seg_max, uint64_t seg_first,
	     uint64_t lsn, int create_first)
{
	memset(w, 0, sizeof(*w));
	w->fd = -1;
	snprintf(w->dir, sizeof(w->dir), "%s", dir);
	w->log_id = log_id;
	w->seg_max = seg_max;
	w->lsn = w->synced_lsn = lsn;
	w->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (w->dirfd < 0)
		return -errno;
	int r = open_seg(w, seg_first, create_first);
	if (r < 0) {
		close(w->dirfd);
		w->dirfd = -1;
	}
	return r;
}

void wal_close(struct wal *w)
{
	if (w->fd >= 0)
		close(w->fd);
	if (w->dirfd >= 0)
		close(w->dirfd);
	w->fd = w->dirfd = -1;
}

static void failed_on(struct wal *w, const char *path)
{
	snprintf(w->fail_path, sizeof(w->fail_path), "%s", path);
}

int wal_rotate(struct wal *w)
{
	if (w->lsn != w->synced_lsn)
		return -EINVAL;
	struct wal old = *w;
	w->fd = -1;
	int r = open_seg(w, w->lsn, 1);
	if (r < 0) {
		char path[sizeof(w->seg_path)];
		memcpy(path, w->seg_path, sizeof(path));
		int dir_unsynced = w->dir_unsynced;
		*w = old;
		w->dir_unsynced |= dir_unsynced;
		failed_on(w, path);
		return r;
	}
	close(old.fd);
	return 0;
}

int wal_append(struct wal *w, const struct iovec *iov, int iovcnt, uint64_t bytes, uint32_t mark_crc)
{
	off_t off = (off_t)(SEG_HDR_LEN + (w->lsn - w->seg_first));
	uint64_t done = 0, end = (uint64_t)off + bytes;
	struct iovec v[65];
	int vi = 0;
	if (iovcnt > 64)
		return -EINVAL;
	memcpy(v, iov, sizeof(*iov) * (size_t)iovcnt);
	/* zeros after the batch, within the file: the end of the data, even
	 * where the file holds an older segment's records (the next append
	 * overwrites them; a growing file needs none) */
	uint64_t term = w->fsize > end ? w->fsize - end : 0;
	if (term > REC_HDR_LEN)
		term = REC_HDR_LEN;
	if (term) {
		v[iovcnt++] = (struct iovec){ (void *)zeros, (size_t)term };
		bytes += term;
	}
	while (done < bytes) {
		ssize_t n = pwritev(w->fd, v + vi, iovcnt - vi, off + (off_t)done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			int e = errno;
			/* leave no partial record behind (the retry rewrites the
			 * range anyway; recovery zeroes what follows the last MARK) */
			wal_zero_range(w->fd, (uint64_t)off, (uint64_t)off + done);
			failed_on(w, w->seg_path);
			return -e;
		}
		if (n == 0) {
			wal_zero_range(w->fd, (uint64_t)off, (uint64_t)off + done);
			failed_on(w, w->seg_path);
			return -EIO;
		}
		done += (uint64_t)n;
		while (vi < iovcnt && (size_t)n >= v[vi].iov_len) {
			n -= (ssize_t)v[vi].iov_len;
			vi++;
		}
		if (vi < iovcnt) {
			v[vi].iov_base = (char *)v[vi].iov_base + n;
			v[vi].iov_len -= (size_t)n;
		}
	}
	w->lsn += bytes - term;
	w->link = mark_crc;
	if (end > w->fsize)
		w->fsize = end;
	return 0;
}

int wal_sync(struct wal *w)
{
	if (w->lsn == w->synced_lsn)
		return 0;
	int e = 0;
	if (w->dir_unsynced) {
		if (fsync(w->dirfd) < 0) {
			e = errno;
			failed_on(w, w->dir);
		} else {
			w->dir_unsynced = 0;
		}
	}
	if (!e && fdatasync(w->fd) < 0) {
		e = errno;
		failed_on(w, w->seg_path);
	}
	if (e) {
		/* fsyncgate: after a failed fsync the kernel may have dropped the
		 * dirty pages and report success next time; so forget the unsynced
		 * tail and let the caller write it again from the rings */
		wal_zero_range(w->fd, SEG_HDR_LEN + (w->synced_lsn - w->seg_first),
			   SEG_HDR_LEN + (w->lsn - w->seg_first));
		w->lsn = w->synced_lsn;
		w->link = w->synced_link;
		return -e;
	}
	w->synced_lsn = w->lsn;
	w->synced_link = w->link;
	return 0;
}
