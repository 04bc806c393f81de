/* sink_disk — every record appended to <dir>/topic-<id>.log (default dir:
 * <data dir>/sinks/<instance name>).
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
 * Commit fdatasyncs every file written since the last commit and returns
 * their sizes as the resume blob; on restart each file is cut back to its
 * committed size (files not in the blob: to zero), so a redelivered record
 * is never in a file twice.  Blob: u32 count, then count x (u16 topic, u64 size).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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

struct disk_cfg {
	char dir[256];
	uint64_t buffer_bytes;
};

#define C(f) offsetof(struct disk_cfg, f)
static const struct sink_opt disk_opts[] = {
	{ "dir", SINK_OPT_STR, "", C(dir), sizeof(((struct disk_cfg *)0)->dir), 0, 0,
	  "output directory (default: <data dir>/sinks/<instance name>)" },
	{ "buffer_bytes", SINK_OPT_SIZE, "256K", C(buffer_bytes), 0, 4096, 64 << 20,
	  "write buffer per topic file" },
};

struct topic_file {
	int fd;
	uint64_t size;        /* bytes in the file, buffered ones included */
	uint64_t committed;   /* size at the last commit */
	uint64_t dropped;     /* bytes before this left the page cache (drop-behind) */
	uint8_t *buf;
	uint32_t blen;
	int dirty;            /* written since the last commit */
};

struct disk {
	char dir[512];
	uint64_t buffer_bytes;
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

static int open_topic(struct disk *d, uint16_t topic, uint64_t cut_to, int cut, struct topic_file **ret)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/topic-%u.log", d->dir, topic);
	struct topic_file *f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->buf = malloc(d->buffer_bytes);
	f->fd = f->buf ? open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600) : -1;
	struct stat st;
	if (!f->buf || f->fd < 0 || fstat(f->fd, &st) < 0) {
		int e = f->buf ? errno : ENOMEM;
		if (f->fd >= 0)
			close(f->fd);
		free(f->buf);
		free(f);
		return -e;
	}
	f->size = (uint64_t)st.st_size;
	if (cut && f->size > cut_to) {
		if (ftruncate(f->fd, (off_t)cut_to) < 0 || fdatasync(f->fd) < 0) {
			int e = errno;
			close(f->fd);
			free(f->buf);
			free(f);
			return -e;
		}
		f->size = cut_to;
	}
	lseek(f->fd, (off_t)f->size, SEEK_SET);
	f->committed = f->size;
	d->files[topic] = f;
	d->open_list[d->nopen++] = topic;
	*ret = f;
	return 0;
}

static void disk_exit(void *state)
{
	struct disk *d = state;
	if (!d)
		return;
	for (uint32_t i = 0; i < d->nopen; i++) {
		struct topic_file *f = d->files[d->open_list[i]];
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
		snprintf(d->dir + l, sizeof(d->dir) - l, "/backfill-%llu-%llu", (unsigned long long)env->backfill_from,
			 (unsigned long long)env->backfill_to);
	}
	d->buffer_bytes = cfg->buffer_bytes;
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
	/* cut every file back to its committed size: files the blob does not
	 * name were created after the last commit and are cut to zero */
	const uint8_t *b = blob;
	uint32_t count = blob_len >= 4 ? mi_get32(b) : 0;
	if (blob_len && (blob_len < 4 || blob_len != 4 + (size_t)count * 10)) {
		snprintf(err, SINK_ERR_LEN, "%s: resume state is damaged (%zu bytes)", d->dir, blob_len);
		disk_exit(d);
		return -EBADMSG;
	}
	for (uint32_t i = 0; i < count; i++) {
		struct topic_file *f;
		uint16_t topic = mi_get16(b + 4 + 10 * i);
		if ((r = open_topic(d, topic, mi_get64(b + 6 + 10 * i), 1, &f)) < 0) {
			snprintf(err, SINK_ERR_LEN, "%s/topic-%u.log: %s", d->dir, topic, strerror(-r));
			disk_exit(d);
			return r;
		}
	}
	DIR *dir = opendir(d->dir);
	struct dirent *e;
	while (dir && (e = readdir(dir))) {
		unsigned t;
		char tail[8];
		if (sscanf(e->d_name, "topic-%u.lo%1s", &t, tail) == 2 && t < DISK_TOPICS && !d->files[t]) {
			struct topic_file *f;
			if ((r = open_topic(d, (uint16_t)t, 0, 1, &f)) < 0) {
				snprintf(err, SINK_ERR_LEN, "%s/%s: %s", d->dir, e->d_name, strerror(-r));
				closedir(dir);
				disk_exit(d);
				return r;
			}
		}
	}
	if (dir)
		closedir(dir);
	*state = d;
	return 0;
}

/* Back to the last commit: drop buffers, cut files to their committed size. */
static int reset_to_commit(struct disk *d)
{
	int r = 0;
	for (uint32_t i = 0; i < d->nopen; i++) {
		struct topic_file *f = d->files[d->open_list[i]];
		f->blen = 0;
		if (f->size != f->committed) {
			if (ftruncate(f->fd, (off_t)f->committed) < 0)
				r = -errno;
			lseek(f->fd, (off_t)f->committed, SEEK_SET);
			f->size = f->committed;
		}
		f->dirty = 0;
	}
	return r;
}

static enum sink_rc fail(struct disk *d, uint16_t topic, int r, char err[SINK_ERR_LEN])
{
	snprintf(err, SINK_ERR_LEN, "%s/topic-%u.log: %s", d->dir, topic, strerror(-r));
	return reset_to_commit(d) < 0 ? SINK_FATAL : SINK_RETRY;
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
		int r;
		if (!f && (r = open_topic(d, topic, 0, 0, &f)) < 0)
			return fail(d, topic, r, err);
		uint32_t len = DISK_ENTRY_HDR + (uint32_t)(id_len + plen) + 4;
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

static int disk_commit(void *state, void **blob, size_t *blob_len, char err[SINK_ERR_LEN])
{
	struct disk *d = state;
	/* the blob first: nothing may count as committed if it cannot be made */
	size_t len = 4 + (size_t)d->nopen * 10;
	uint8_t *b = malloc(len);
	if (!b) {
		snprintf(err, SINK_ERR_LEN, "%s: out of memory for the resume state", d->dir);
		reset_to_commit(d);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < d->nopen; i++) {
		struct topic_file *f = d->files[d->open_list[i]];
		int r;
		if (!f->dirty)
			continue;
		if ((r = flush_file(f)) < 0 || (fdatasync(f->fd) < 0 && (r = -errno))) {
			snprintf(err, SINK_ERR_LEN, "%s/topic-%u.log: %s", d->dir, d->open_list[i], strerror(-r));
			reset_to_commit(d);
			free(b);
			return r;
		}
	}
	for (uint32_t i = 0; i < d->nopen; i++) {
		struct topic_file *f = d->files[d->open_list[i]];
		f->dirty = 0;
		f->committed = f->size;
		/* on disk now and never read here again: out of the page cache
		 * (sinkd/reader.c says why), but for the page still appended to */
		uint64_t whole = f->committed & ~((uint64_t)sysconf(_SC_PAGESIZE) - 1);
		if (whole > f->dropped) {
			posix_fadvise(f->fd, (off_t)f->dropped, (off_t)(whole - f->dropped), POSIX_FADV_DONTNEED);
			f->dropped = whole;
		}
	}
	mi_put32(b, d->nopen);
	for (uint32_t i = 0; i < d->nopen; i++) {
		mi_put16(b + 4 + 10 * i, d->open_list[i]);
		mi_put64(b + 6 + 10 * i, d->files[d->open_list[i]]->size);
	}
	*blob = b;
	*blob_len = len;
	return 0;
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
