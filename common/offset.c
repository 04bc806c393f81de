#include "common/offset.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <zlib.h>

#include "common/frame.h"

int offset_load(const char *dir, const char *name, uint64_t *lsn, void **blob, size_t *blob_len)
{
	char path[600];
	uint8_t h[24];
	snprintf(path, sizeof(path), "%s/%s.offset", dir, name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = -EBADMSG;
	uint8_t *b = NULL;
	if (read(fd, h, sizeof(h)) != sizeof(h) || memcmp(h, "MISINKO1", 8))
		goto out;
	uint32_t len = mi_get32(h + 16);
	if (len > (64u << 20))
		goto out;
	b = malloc(len ? len : 1);
	if (!b) {
		r = -ENOMEM;
		goto out;
	}
	if (len && read(fd, b, len) != (ssize_t)len)
		goto out;
	uLong c = crc32(0L, h, 20);
	c = crc32(c, b, len);
	if ((uint32_t)c != mi_get32(h + 20))
		goto out;
	*lsn = mi_get64(h + 8);
	*blob = len ? b : NULL;
	if (!len)
		free(b);
	*blob_len = len;
	b = NULL;
	r = 0;
out:
	free(b);
	close(fd);
	return r;
}

int offset_store(const char *dir, const char *name, uint64_t lsn, const void *blob, size_t blob_len)
{
	char tmp[600], path[600];
	uint8_t h[24];
	snprintf(tmp, sizeof(tmp), "%s/%s.offset.tmp", dir, name);
	snprintf(path, sizeof(path), "%s/%s.offset", dir, name);
	memcpy(h, "MISINKO1", 8);
	mi_put64(h + 8, lsn);
	mi_put32(h + 16, (uint32_t)blob_len);
	uLong c = crc32(0L, h, 20);
	if (blob_len)   /* zlib: crc32(c, NULL, 0) returns 0, not c */
		c = crc32(c, blob, (uInt)blob_len);
	mi_put32(h + 20, (uint32_t)c);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	struct iovec iov[2] = { { h, sizeof(h) }, { (void *)blob, blob_len } };
	ssize_t want = (ssize_t)(sizeof(h) + blob_len);
	int r = 0;
	if (writev(fd, iov, blob_len ? 2 : 1) != want)
		r = errno ? -errno : -EIO;
	else if (fdatasync(fd) < 0)
		r = -errno;
	close(fd);
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r == 0) {
		int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			if (fsync(dfd) < 0)
				r = -errno;
			close(dfd);
		}
	} else {
		unlink(tmp);
	}
	return r;
}
