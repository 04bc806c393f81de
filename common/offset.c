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
#include "common/fsync_dir.h"

#define OFFSET_MAGIC "MISINKO1"
#define SKIPPED_MAGIC "MISKIPL1"
#define BLOB_MAX (64u << 20)

static int load_file(const char *dir, const char *name, const char *ext, const char *magic, uint64_t *value,
		     void **blob, size_t *blob_len)
{
	char path[600];
	uint8_t h[24];
	snprintf(path, sizeof(path), "%s/%s.%s", dir, name, ext);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = -EBADMSG;
	uint8_t *b = NULL;
	if (read(fd, h, sizeof(h)) != sizeof(h) || memcmp(h, magic, 8))
		goto out;
	uint32_t len = mi_get32(h + 16);
	if (len > BLOB_MAX)
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
	*value = mi_get64(h + 8);
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

static int store_file(const char *dir, const char *name, const char *ext, const char *magic, uint64_t value,
		      const void *blob, size_t blob_len)
{
	char tmp[600], path[600];
	uint8_t h[24];
	if (blob_len > BLOB_MAX)
		return -EFBIG;
	snprintf(tmp, sizeof(tmp), "%s/%s.%s.tmp", dir, name, ext);
	snprintf(path, sizeof(path), "%s/%s.%s", dir, name, ext);
	memcpy(h, magic, 8);
	mi_put64(h + 8, value);
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
	if (r == 0)
		r = fsync_dir(dir);
	else
		unlink(tmp);
	return r;
}

int offset_load(const char *dir, const char *name, uint64_t *lsn, void **blob, size_t *blob_len)
{
	return load_file(dir, name, "offset", OFFSET_MAGIC, lsn, blob, blob_len);
}

int offset_store(const char *dir, const char *name, uint64_t lsn, const void *blob, size_t blob_len)
{
	return store_file(dir, name, "offset", OFFSET_MAGIC, lsn, blob, blob_len);
}

int skipped_load(const char *dir, const char *name, struct skipped **ret, size_t *n)
{
	uint64_t zero;
	void *blob = NULL;
	size_t len = 0;
	int r = load_file(dir, name, "skipped", SKIPPED_MAGIC, &zero, &blob, &len);
	if (r < 0)
		return r;
	if (len % 24) {
		free(blob);
		return -EBADMSG;
	}
	struct skipped *v = NULL;
	*n = len / 24;
	if (*n && !(v = malloc(*n * sizeof(*v)))) {
		free(blob);
		return -ENOMEM;
	}
	const uint8_t *b = blob;
	for (size_t i = 0; i < *n; i++)
		v[i] = (struct skipped){ mi_get64(b + 24 * i), mi_get64(b + 24 * i + 8), mi_get64(b + 24 * i + 16) };
	free(blob);
	*ret = v;
	return 0;
}

int skipped_store(const char *dir, const char *name, const struct skipped *v, size_t n)
{
	uint8_t *b = malloc(n ? n * 24 : 1);
	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		mi_put64(b + 24 * i, v[i].from);
		mi_put64(b + 24 * i + 8, v[i].to);
		mi_put64(b + 24 * i + 16, v[i].records);
	}
	int r = store_file(dir, name, "skipped", SKIPPED_MAGIC, 0, b, n * 24);
	free(b);
	return r;
}

uint64_t skipped_count(const struct skipped *v, size_t n, uint64_t from, uint64_t to, uint64_t *records)
{
	/* entries are in LSN order (flusherd appends them as it retires) */
	uint64_t at = from, sum = 0;
	for (size_t i = 0; i < n && at < to; i++)
		if (v[i].from == at && v[i].to > at && v[i].to <= to) {
			sum += v[i].records;
			at = v[i].to;
		}
	*records = sum;
	return at;
}
