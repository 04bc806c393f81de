#include "sinkd/cloud_journal.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/frame.h"
#include "common/fsync_dir.h"

#define CJ_MAGIC 0x4a43494du   /* "MICJ" */
#define CJ_ENTRY 40

static void encode(uint8_t *b, const struct cj_plan *p)
{
	memset(b, 0, CJ_ENTRY);
	mi_put32(b, CJ_MAGIC);
	mi_put16(b + 4, p->topic);
	mi_put64(b + 8, p->first);
	mi_put64(b + 16, p->last);
	mi_put64(b + 24, p->srv_ns);
	mi_put32(b + 32, p->records);
	mi_put32(b + 36, mi_crc32(b, 36));
}

static int decode(const uint8_t *b, struct cj_plan *p)
{
	if (mi_get32(b) != CJ_MAGIC || mi_get32(b + 36) != mi_crc32(b, 36))
		return -1;
	*p = (struct cj_plan){ .topic = mi_get16(b + 4), .first = mi_get64(b + 8), .last = mi_get64(b + 16),
			       .srv_ns = mi_get64(b + 24), .records = mi_get32(b + 32) };
	return p->first <= p->last ? 0 : -1;
}

static int keep(struct cjournal *j, const struct cj_plan *p)
{
	if (j->n == j->cap) {
		size_t cap = j->cap ? 2 * j->cap : 64;
		struct cj_plan *v = realloc(j->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		j->v = v;
		j->cap = cap;
	}
	j->v[j->n] = *p;
	return (int)j->n++;
}

static int write_all(int fd, const uint8_t *b, size_t n)
{
	while (n) {
		ssize_t w = write(fd, b, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

/* The file again, with the plans held now and nothing else. */
static int rewrite(struct cjournal *j, char err[SINK_ERR_LEN])
{
	char tmp[sizeof(j->path) + 8], dir[sizeof(j->path)];
	snprintf(tmp, sizeof(tmp), "%s.tmp", j->path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600), r = fd < 0 ? -errno : 0;
	for (size_t i = 0; !r && i < j->n; i++) {
		uint8_t b[CJ_ENTRY];
		encode(b, &j->v[i]);
		r = write_all(fd, b, sizeof(b));
	}
	if (!r && fdatasync(fd) < 0)
		r = -errno;
	if (!r && rename(tmp, j->path) < 0)
		r = -errno;
	snprintf(dir, sizeof(dir), "%s", j->path);
	if (!r)
		r = fsync_dir(dirname(dir));
	if (r) {
		snprintf(err, SINK_ERR_LEN, "%s: %s", r == -errno && fd < 0 ? tmp : j->path, strerror(-r));
		if (fd >= 0)
			close(fd);
		unlink(tmp);
		return r;
	}
	if (j->fd >= 0)
		close(j->fd);
	j->fd = fd;
	j->on_disk = j->n;
	return 0;
}

int cj_open(struct cjournal *j, const char *path, uint64_t keep_from, char err[SINK_ERR_LEN])
{
	*j = (struct cjournal){ .fd = -1 };
	if (!path)
		return 0;
	snprintf(j->path, sizeof(j->path), "%s", path);
	FILE *f = fopen(path, "re");
	if (!f && errno != ENOENT) {
		int e = errno;
		snprintf(err, SINK_ERR_LEN, "%s: %s", path, strerror(e));
		return -e;
	}
	uint8_t b[CJ_ENTRY];
	while (f && fread(b, 1, sizeof(b), f) == sizeof(b)) {
		struct cj_plan p;
		if (decode(b, &p) < 0)
			break;   /* torn at a crash: never uploaded */
		if (p.last < keep_from)
			continue;
		p.uploaded = p.first < keep_from;
		if (keep(j, &p) < 0) {
			fclose(f);
			cj_close(j);
			snprintf(err, SINK_ERR_LEN, "%s: out of memory", path);
			return -ENOMEM;
		}
	}
	if (f)
		fclose(f);
	/* only what is still needed, and never a torn tail to append after */
	int r = rewrite(j, err);
	if (r < 0)
		cj_close(j);
	return r;
}

int cj_add(struct cjournal *j, const struct cj_plan *p, char err[SINK_ERR_LEN])
{
	int i = keep(j, p);
	if (i < 0) {
		snprintf(err, SINK_ERR_LEN, "%s: out of memory for a plan", j->path[0] ? j->path : "journal");
		return i;
	}
	if (j->fd < 0 && !j->path[0])
		return i;
	int r;
	if (j->on_disk > 2 * j->n + 64) {
		r = rewrite(j, err);
	} else {
		uint8_t b[CJ_ENTRY];
		encode(b, p);
		r = write_all(j->fd, b, sizeof(b));
		if (!r && fdatasync(j->fd) < 0)
			r = -errno;
		if (r)
			snprintf(err, SINK_ERR_LEN, "%s: %s", j->path, strerror(-r));
		else
			j->on_disk++;
	}
	if (r < 0) {
		j->n--;
		/* a short write must not be followed by whole entries */
		char e2[SINK_ERR_LEN];
		rewrite(j, e2);
		return r;
	}
	return i;
}

void cj_prune(struct cjournal *j, uint64_t stored)
{
	size_t k = 0;
	for (size_t i = 0; i < j->n; i++)
		if (j->v[i].last >= stored)
			j->v[k++] = j->v[i];
	j->n = k;
}

void cj_close(struct cjournal *j)
{
	if (j->fd >= 0)
		close(j->fd);
	free(j->v);
	*j = (struct cjournal){ .fd = -1 };
}
