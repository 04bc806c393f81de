/* sink_disk — every record of the instance's topics appended to
 * <dir>/topic-<id>-<first LSN>.log (default dir: <data dir>/sinks/<instance
 * name>; the first LSN in 20 digits, so names sort in log order).  A file
 * past file_bytes is closed (synced) and the next entry starts a new one;
 * with keep_files, only that many files per topic are kept.
 *
 * Entry format (little-endian, self-delimiting, one after another):
 *   off size field
 *   0   4    magic    "MIDR"
 *   4   4    len      whole entry: 48 + id_len + plen
 *   8   8    lsn      the record's position in the WAL
 *   16  8    seq
 *   24  8    ts_ns
 *   32  8    srv_ns
 *   40  2    topic
 *   42  1    id_len
 *   43  1    0
 *   44  ..   device id, then payload (plen = len - 48 - id_len)
 *   len-4 4  crc      CRC-32 (zlib) of bytes 0 .. len-5
 *
 * Commit fdatasyncs every file written since the last commit and returns,
 * per topic, the current file and its size as the resume blob.  On restart
 * (and after a failed delivery or commit) each topic goes back to that: the
 * current file is cut to its committed size, files started after it are
 * removed, and a topic the blob does not name has no committed file at all,
 * so a redelivered record is never in a file twice.
 *   blob: "MDB2", u32 count, then count x (u16 topic, u64 first LSN, u64 size)
 * A blob of the earlier form (u32 count, count x (u16 topic, u64 size)) names
 * the unrotated topic-<id>.log files, which start-up renames to the new form.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/frame.h"
#include "sinkd/sink.h"

#define DISK_ENTRY_HDR 44
#define DISK_TOPICS 65536
#define BLOB_MAGIC 0x3242444du   /* "MDB2" */

struct disk_cfg {
	char dir[256];
	uint64_t buffer_bytes;
	uint64_t file_bytes;
	int64_t keep_files;
};

#define C(f) offsetof(struct disk_cfg, f)
static const struct sink_opt disk_opts[] = {
	{ "dir", SINK_OPT_STR, "", C(dir), sizeof(((struct disk_cfg *)0)->dir), 0, 0,
	  "output directory (default: <data dir>/sinks/<instance name>)" },
	{ "buffer_bytes", SINK_OPT_SIZE, "256K", C(buffer_bytes), 0, 4096, 64 << 20,
	  "write buffer per topic file" },
	{ "file_bytes", SINK_OPT_SIZE, "256M", C(file_bytes), 0, 0, 1ll << 50,
	  "a topic file past this size is closed and the next entry starts a new one (0: never)" },
	{ "keep_files", SINK_OPT_INT, "0", C(keep_files), 0, 0, 1000000,
	  "files kept per topic, the newest (0: all); older ones are removed at rotation" },
};

struct topic_file {
	int fd;
	uint64_t first;       /* first LSN of the current file: its name */
	uint64_t size;        /* bytes in the file, buffered ones included */
	uint64_t c_first;     /* the current file at the last commit, ... */
	uint64_t committed;   /* ... and its size then */
	int c_exists;         /* a file was current at the last commit */
	uint64_t dropped;     /* bytes before this left the page cache (drop-behind) */
	uint8_t *buf;
	uint32_t blen;
	int dirty;            /* written since the last commit */
};

struct disk {
	char dir[512];
	uint64_t buffer_bytes, file_bytes;
	int64_t keep_files;
	struct topic_file **files;   /* by topic id */
	uint16_t *open_list;
	uint32_t nopen;
};

static int flush_file(struct topic_file *f)
{
	uint32_t done = 0;
	while (done < f->blen) {
		ssize_t n = write(f->fd, f->buf + done, f->blen - done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;   /* the caller resets to the last commit */
		}
		done += (uint32_t)n;
	}
	/* start writeback now: left to the commit, a second's worth of output
	 * would reach the disk in one burst, stalling the WAL's flushes
	 * (size lags the file while an entry is half copied: from there to EOF) */
	sync_file_range(f->fd, f->size > f->blen ? (off_t)(f->size - f->blen) : 0, 0, SYNC_FILE_RANGE_WRITE);
	f->blen = 0;
	return 0;
}

static void topic_path(const struct disk *d, uint16_t topic, uint64_t first, char *buf, size_t len)
{
	snprintf(buf, len, "%s/topic-%u-%020" PRIu64 ".log", d->dir, topic, first);
}

/* The first LSNs of the topic's files, ascending (malloc'd). */
static int list_files(const struct disk *d, uint16_t topic, uint64_t **ret, size_t *ret_n)
{
	DIR *dir = opendir(d->dir);
	if (!dir)
		return -errno;
	uint64_t *v = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	while ((e = readdir(dir))) {
		unsigned t;
		uint64_t first;
		int end = 0;
		if (sscanf(e->d_name, "topic-%u-%" SCNu64 ".log%n", &t, &first, &end) != 2 || !end ||
		    e->d_name[end] || t != topic)
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 16;
			uint64_t *nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				free(v);
				closedir(dir);
				return -ENOMEM;
			}
			v = nv;
		}
		v[n++] = first;
	}
	closedir(dir);
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && v[j - 1] > v[j]; j--) {
			uint64_t x = v[j];
			v[j] = v[j - 1];
			v[j - 1] = x;
		}
	*ret = v;
	*ret_n = n;
	return 0;
}

/* Removes the topic's files that start after `after` (all: keep_all 0). */
static int remove_after(struct disk *d, uint16_t topic, uint64_t after, int keep_all_upto)
{
	uint64_t *v;
	size_t n;
	int r = list_files(d, topic, &v, &n);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		if (keep_all_upto && v[i] <= after)
			continue;
		char path[600];
		topic_path(d, topic, v[i], path, sizeof(path));
		if (unlink(path) < 0 && errno != ENOENT)
			r = -errno;
	}
	free(v);
	return r;
}

/* Opens (creating) the topic's file starting at `first`, cut to `size` when
 * cut; the topic's current file from then on. */
static int open_file(struct disk *d, struct topic_file *f, uint16_t topic, uint64_t first, uint64_t size, int cut)
{
	char path[600];
	topic_path(d, topic, first, path, sizeof(path));
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		return -e;
	}
	uint64_t have = (uint64_t)st.st_size;
	if (cut && have > size) {
		if (ftruncate(fd, (off_t)size) < 0 || fdatasync(fd) < 0) {
			int e = errno;
			close(fd);
			return -e;
		}
		have = size;
	}
	lseek(fd, (off_t)have, SEEK_SET);
	if (f->fd >= 0)
		close(f->fd);
	f->fd = fd;
	f->first = first;
	f->size = have;
	f->dropped = 0;
	f->blen = 0;
	return 0;
}

static struct topic_file *new_topic(struct disk *d, uint16_t topic)
{
	struct topic_file *f = calloc(1, sizeof(*f));
	if (!f || !(f->buf = malloc(d->buffer_bytes))) {
		free(f);
		return NULL;
	}
	f->fd = -1;
	d->files[topic] = f;
	d->open_list[d->nopen++] = topic;
	return f;
}

/* The topic back at its last commit: its committed file cut to its
 * committed size, every file started after it removed; no committed file:
 * none at all. */
static int restore_topic(struct disk *d, uint16_t topic)
{
	struct topic_file *f = d->files[topic];
	int r;
	f->blen = 0;
	f->dirty = 0;
	if (!f->c_exists) {
		if (f->fd >= 0)
			close(f->fd);
		f->fd = -1;
		f->size = 0;
		return remove_after(d, topic, 0, 0);
	}
	if ((r = remove_after(d, topic, f->c_first, 1)) < 0)
		return r;
	return open_file(d, f, topic, f->c_first, f->committed, 1);
}

static void disk_exit(void *state)
{
	struct disk *d = state;
	if (!d)
		return;
	for (uint32_t i = 0; d->files && i < d->nopen; i++) {
		struct topic_file *f = d->files[d->open_list[i]];
		if (f->fd >= 0)
			close(f->fd);
		free(f->buf);
		free(f);
	}
	free(d->files);
	free(d->open_list);
	free(d);
}

static int mkdirs(const char *path)
{
	char tmp[512];
	snprintf(tmp, sizeof(tmp), "%s", path);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	return mkdir(tmp, 0700) < 0 && errno != EEXIST ? -errno : 0;
}

/* An unrotated topic-<id>.log of an earlier version gets the name of the
 * new form, from the LSN of its first entry. */
static int migrate_legacy(struct disk *d, uint16_t topic, uint64_t *ret_first)
{
	char old[600], now[600];
	snprintf(old, sizeof(old), "%s/topic-%u.log", d->dir, topic);
	int fd = open(old, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	uint8_t h[16];
	uint64_t first = pread(fd, h, sizeof(h), 0) == (ssize_t)sizeof(h) ? mi_get64(h + 8) : 0;
	close(fd);
	topic_path(d, topic, first, now, sizeof(now));
	if (rename(old, now) < 0)
		return -errno;
	*ret_first = first;
	return 1;
}

static int disk_init(void **state, const void *cfgp, const struct sink_env *env, const void *blob, size_t blob_len,
		     char err[SINK_ERR_LEN])
{
	const struct disk_cfg *cfg = cfgp;
	struct disk *d = calloc(1, sizeof(*d));
	int r;
	if (!d)
		return -ENOMEM;
	if (cfg->dir[0])
		snprintf(d->dir, sizeof(d->dir), "%s", cfg->dir);
	else
		snprintf(d->dir, sizeof(d->dir), "%s/sinks/%s", env->data_dir, env->name);
	/* appended entries are not keyed by LSN: a backfill run must not add
	 * a second copy to the live files, nor cut them back */
	if (env->flags & SINK_ENV_BACKFILL) {
		size_t l = strlen(d->dir);
		snprintf(d->dir + l, sizeof(d->dir) - l, "/backfill-%" PRIu64 "-%" PRIu64, env->backfill_from,
			 env->backfill_to);
	}
	d->buffer_bytes = cfg->buffer_bytes;
	d->file_bytes = cfg->file_bytes;
	d->keep_files = cfg->keep_files;
	d->files = calloc(DISK_TOPICS, sizeof(*d->files));
	d->open_list = calloc(DISK_TOPICS, sizeof(*d->open_list));
	if (!d->files || !d->open_list) {
		disk_exit(d);
		return -ENOMEM;
	}
	if ((r = mkdirs(d->dir)) < 0) {
		snprintf(err, SINK_ERR_LEN, "%s: %s", d->dir, strerror(-r));
		disk_exit(d);
		return r;
	}
	const uint8_t *b = blob;
	int v2 = blob_len >= 8 && mi_get32(b) == BLOB_MAGIC;
	size_t hdr = v2 ? 8 : 4, each = v2 ? 18 : 10;
	uint32_t count = blob_len >= hdr ? mi_get32(b + hdr - 4) : 0;
	if (blob_len && (blob_len < hdr || blob_len != hdr + (size_t)count * each)) {
		snprintf(err, SINK_ERR_LEN, "%s: resume state is damaged (%zu bytes)", d->dir, blob_len);
		disk_exit(d);
		return -EBADMSG;
	}
	/* every topic with files gets a slot; the blob says what is committed */
	DIR *dir = opendir(d->dir);
	struct dirent *e;
	while (dir && (e = readdir(dir))) {
		unsigned t;
		if (sscanf(e->d_name, "topic-%u", &t) == 1 && t < DISK_TOPICS && !d->files[t] && !new_topic(d, (uint16_t)t)) {
			closedir(dir);
			disk_exit(d);
			return -ENOMEM;
		}
	}
	if (dir)
		closedir(dir);
	for (uint32_t i = 0; i < count; i++) {
		const uint8_t *x = b + hdr + each * i;
		uint16_t topic = mi_get16(x);
		struct topic_file *f = d->files[topic] ? d->files[topic] : new_topic(d, topic);
		if (!f) {
			disk_exit(d);
			return -ENOMEM;
		}
		f->c_exists = 1;
		f->committed = mi_get64(x + (v2 ? 10 : 2));
		f->c_first = v2 ? mi_get64(x + 2) : 0;
	}
	for (uint32_t i = 0; i < d->nopen; i++) {
		uint16_t topic = d->open_list[i];
		uint64_t first;
		if ((r = migrate_legacy(d, topic, &first)) < 0) {
			snprintf(err, SINK_ERR_LEN, "%s/topic-%u.log: rename to the rotated form: %s", d->dir, topic,
				 strerror(-r));
			disk_exit(d);
			return r;
		}
		if (r == 1 && !v2)
			d->files[topic]->c_first = first;   /* the file the old blob names */
		if ((r = restore_topic(d, topic)) < 0) {
			snprintf(err, SINK_ERR_LEN, "%s: topic %u back to its last commit: %s", d->dir, topic,
				 strerror(-r));
			disk_exit(d);
			return r;
		}
	}
	*state = d;
	return 0;
}

/* Back to the last commit: every topic as restore_topic() leaves it. */
static int reset_to_commit(struct disk *d)
{
	int r = 0;
	for (uint32_t i = 0; i < d->nopen; i++) {
		struct topic_file *f = d->files[d->open_list[i]];
		if (f->dirty || f->size != f->committed || f->first != f->c_first || (f->fd >= 0) != f->c_exists) {
			int e = restore_topic(d, d->open_list[i]);
			if (e < 0)
				r = e;
		}
	}
	return r;
}

static enum sink_rc fail(struct disk *d, uint16_t topic, int r, char err[SINK_ERR_LEN])
{
	snprintf(err, SINK_ERR_LEN, "%s: topic %u: %s", d->dir, topic, strerror(-r));
	return reset_to_commit(d) < 0 ? SINK_FATAL : SINK_RETRY;
}

/* Removes the oldest files of the topic beyond keep_files. */
static void prune(struct disk *d, uint16_t topic)
{
	uint64_t *v;
	size_t n;
	if (d->keep_files <= 0 || list_files(d, topic, &v, &n) < 0)
		return;
	for (size_t i = 0; i + (size_t)d->keep_files < n; i++) {
		char path[600];
		topic_path(d, topic, v[i], path, sizeof(path));
		unlink(path);
	}
	free(v);
}

/* The entry starting at lsn goes to a new file: the current one is whole,
 * and synced now, since the next commit's blob names only the new one. */
static int rotate(struct disk *d, struct topic_file *f, uint16_t topic, uint64_t lsn)
{
	int r;
	if (f->fd >= 0) {
		if ((r = flush_file(f)) < 0)
			return r;
		if (fdatasync(f->fd) < 0)
			return -errno;
	}
	if ((r = open_file(d, f, topic, lsn, 0, 1)) < 0)
		return r;
	prune(d, topic);
	return 0;
}

static enum sink_rc disk_deliver(void *state, const struct sink_record *recs, size_t n, uint32_t *retry_ms,
				 char err[SINK_ERR_LEN])
{
	struct disk *d = state;
	(void)retry_ms;
	for (size_t i = 0; i < n; i++) {
		const struct sink_record *rec = &recs[i];
		size_t id_len, plen;
		const uint8_t *id = sink_rec_device(rec, &id_len), *payload = sink_rec_payload(rec, &plen);
		uint16_t topic = sink_rec_topic(rec);
		struct topic_file *f = d->files[topic];
		uint32_t len = DISK_ENTRY_HDR + (uint32_t)(id_len + plen) + 4;
		int r;
		if (!f && !(f = new_topic(d, topic)))
			return fail(d, topic, -ENOMEM, err);
		if ((f->fd < 0 || (d->file_bytes && f->size && f->size + len > d->file_bytes)) &&
		    (r = rotate(d, f, topic, sink_rec_lsn(rec))) < 0)
			return fail(d, topic, r, err);
		uint8_t hdr[DISK_ENTRY_HDR], crcb[4];
		memcpy(hdr, "MIDR", 4);
		mi_put32(hdr + 4, len);
		mi_put64(hdr + 8, sink_rec_lsn(rec));
		mi_put64(hdr + 16, sink_rec_seq(rec));
		mi_put64(hdr + 24, sink_rec_device_time(rec));
		mi_put64(hdr + 32, sink_rec_server_time(rec));
		mi_put16(hdr + 40, topic);
		hdr[42] = (uint8_t)id_len;
		hdr[43] = 0;
		uint32_t crc = mi_crc32_update(mi_crc32(hdr, sizeof(hdr)), id, id_len);
		mi_put32(crcb, mi_crc32_update(crc, payload, plen));
		const uint8_t *parts[4] = { hdr, id, payload, crcb };
		const size_t lens[4] = { sizeof(hdr), id_len, plen, 4 };
		for (int p = 0; p < 4; p++) {
			const uint8_t *src = parts[p];
			size_t left = lens[p];
			while (left) {
				if (f->blen == d->buffer_bytes && (r = flush_file(f)) < 0)
					return fail(d, topic, r, err);
				size_t take = d->buffer_bytes - f->blen < left ? d->buffer_bytes - f->blen : left;
				memcpy(f->buf + f->blen, src, take);
				f->blen += (uint32_t)take;
				src += take;
				left -= take;
			}
		}
		f->size += len;
		f->dirty = 1;
	}
	return SINK_OK;
}

static enum sink_rc disk_commit(void *state, struct sink_commit *c, uint32_t *retry_ms, char err[SINK_ERR_LEN])
{
	struct disk *d = state;
	(void)retry_ms;
	/* the blob first: nothing may count as committed if it cannot be made */
	uint32_t nfiles = 0;
	for (uint32_t i = 0; i < d->nopen; i++)
		nfiles += d->files[d->open_list[i]]->fd >= 0;
	size_t len = 8 + (size_t)nfiles * 18;
	uint8_t *b = malloc(len);
	if (!b) {
		snprintf(err, SINK_ERR_LEN, "%s: out of memory for the resume state", d->dir);
		reset_to_commit(d);
		return SINK_RETRY;
	}
	for (uint32_t i = 0; i < d->nopen; i++) {
		struct topic_file *f = d->files[d->open_list[i]];
		int r;
		if (!f->dirty)
			continue;
		if ((r = flush_file(f)) < 0 || (fdatasync(f->fd) < 0 && (r = -errno))) {
			snprintf(err, SINK_ERR_LEN, "%s: topic %u: %s", d->dir, d->open_list[i], strerror(-r));
			reset_to_commit(d);
			free(b);
			return SINK_RETRY;
		}
	}
	mi_put32(b, BLOB_MAGIC);
	mi_put32(b + 4, nfiles);
	uint8_t *x = b + 8;
	for (uint32_t i = 0; i < d->nopen; i++) {
		struct topic_file *f = d->files[d->open_list[i]];
		f->dirty = 0;
		f->c_exists = f->fd >= 0;
		f->c_first = f->first;
		f->committed = f->size;
		if (f->fd < 0)
			continue;
		/* on disk now and never read here again: out of the page cache
		 * (sinkd/reader.c says why), but for the page still appended to */
		uint64_t whole = f->committed & ~((uint64_t)sysconf(_SC_PAGESIZE) - 1);
		if (whole > f->dropped) {
			posix_fadvise(f->fd, (off_t)f->dropped, (off_t)(whole - f->dropped), POSIX_FADV_DONTNEED);
			f->dropped = whole;
		}
		mi_put16(x, d->open_list[i]);
		mi_put64(x + 2, f->first);
		mi_put64(x + 10, f->size);
		x += 18;
	}
	c->blob = b;
	c->blob_len = len;
	return SINK_OK;
}

const struct sink_desc sink_disk = {
	.abi = SINK_ABI_VERSION,
	.name = "disk",
	.description = "append every record to <dir>/topic-<id>.log (self-delimiting entries)",
	.opts = disk_opts,
	.nopts = sizeof(disk_opts) / sizeof(disk_opts[0]),
	.cfg_size = sizeof(struct disk_cfg),
	.init = disk_init,
	.deliver = disk_deliver,
	.commit = disk_commit,
	.exit = disk_exit,
};
