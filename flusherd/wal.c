#include "flusherd/wal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/seg.h"

static int open_seg(struct wal *w, uint64_t first, int create)
{
	char name[SEG_NAME_LEN];
	seg_name(first, name);
	snprintf(w->seg_path, sizeof(w->seg_path), "%s/%s", w->dir, name);
	if (!create) {
		int fd = openat(w->dirfd, name, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		w->fd = fd;
		w->seg_first = first;
		return 0;
	}
	/* O_EXCL: a leftover file of that name means a log we do not understand */
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
	seg_hdr_build(hdr, first, w->log_id, clock_real_ns());
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

int wal_rotate(struct wal *w)
{
	if (w->lsn != w->synced_lsn)
		return -EINVAL;
	int old = w->fd;
	uint64_t old_first = w->seg_first;
	char old_path[sizeof(w->seg_path)];
	memcpy(old_path, w->seg_path, sizeof(old_path));
	w->fd = -1;
	int r = open_seg(w, w->lsn, 1);
	if (r < 0) {
		w->fd = old;
		w->seg_first = old_first;
		memcpy(w->seg_path, old_path, sizeof(old_path));
		return r;
	}
	close(old);
	return 0;
}

int wal_append(struct wal *w, const struct iovec *iov, int iovcnt, uint64_t bytes)
{
	off_t off = (off_t)(SEG_HDR_LEN + (w->lsn - w->seg_first));
	uint64_t done = 0;
	struct iovec v[64];
	int vi = 0;
	if (iovcnt > 64)
		return -EINVAL;
	memcpy(v, iov, sizeof(*iov) * (size_t)iovcnt);
	while (done < bytes) {
		ssize_t n = pwritev(w->fd, v + vi, iovcnt - vi, off + (off_t)done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			int e = errno;
			/* leave no partial record behind */
			if (ftruncate(w->fd, off) < 0) {
				/* the retry writes the same range again */
			}
			return -e;
		}
		if (n == 0) {
			if (ftruncate(w->fd, off) < 0) {
				/* as above */
			}
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
	w->lsn += bytes;
	return 0;
}

int wal_sync(struct wal *w)
{
	if (w->lsn == w->synced_lsn)
		return 0;
	if (fdatasync(w->fd) < 0) {
		int e = errno;
		/* fsyncgate: after a failed fsync the kernel may have dropped the
		 * dirty pages and report success next time; so forget the unsynced
		 * tail and let the caller write it again from the rings */
		if (ftruncate(w->fd, (off_t)(SEG_HDR_LEN + (w->synced_lsn - w->seg_first))) < 0) {
			/* the next append overwrites the same range anyway */
		}
		w->lsn = w->synced_lsn;
		return -e;
	}
	w->synced_lsn = w->lsn;
	return 0;
}
