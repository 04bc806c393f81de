/* count — an out-of-tree sink: counts the records and payload bytes it is
 * given, per topic, and keeps the totals in a file, so a restart resumes
 * them.  It builds against sinkd/sink.h alone (see Makefile), and shows the
 * whole contract: keys, init with the resume blob, deliver, commit, exit.
 *
 *   [sinkd]
 *   sinks = disk, counted
 *   [sink.counted]
 *   type = /path/to/count.so
 *   topics = telemetry
 *   file = /var/lib/module-ingest/main/counted.txt
 *
 * The file (rewritten at each commit, then renamed into place) holds one
 * line: "records <n> bytes <n> last_lsn <n>".  The resume blob is the same
 * three numbers, 24 bytes, so the counts after a crash are exactly those of
 * the last commit: the host redelivers what came after it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sink.h"

struct count_cfg {
	char file[256];
	int64_t fail_every;    /* for tests: every n-th delivery answers RETRY */
};

static const struct sink_opt count_opts[] = {
	{ "file", SINK_OPT_STR, "", offsetof(struct count_cfg, file), sizeof(((struct count_cfg *)0)->file), 0, 0,
	  "where the totals go (default: <data dir>/sinks/<instance>.count)" },
	{ "fail_every", SINK_OPT_INT, "0", offsetof(struct count_cfg, fail_every), 0, 0, 1000000,
	  "answer RETRY to every n-th delivery (0: never); for tests" },
};

struct count {
	const struct sink_env *env;
	char path[512];
	uint64_t records, bytes, last_lsn;     /* delivered */
	uint64_t c_records, c_bytes, c_lsn;    /* committed */
	int64_t fail_every, deliveries;
};

static int count_init(void **state, const void *cfgp, const struct sink_env *env, const void *blob,
		      size_t blob_len, char err[SINK_ERR_LEN])
{
	const struct count_cfg *cfg = cfgp;
	if (blob_len != 0 && blob_len != 24) {
		snprintf(err, SINK_ERR_LEN, "resume state of %zu bytes, want 24", blob_len);
		return -EBADMSG;
	}
	struct count *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->env = env;
	c->fail_every = cfg->fail_every;
	if (cfg->file[0])
		snprintf(c->path, sizeof(c->path), "%s", cfg->file);
	else
		snprintf(c->path, sizeof(c->path), "%s/sinks/%s.count", env->data_dir, env->name);
	if (blob_len) {
		memcpy(&c->records, blob, 8);
		memcpy(&c->bytes, (const char *)blob + 8, 8);
		memcpy(&c->last_lsn, (const char *)blob + 16, 8);
	}
	c->c_records = c->records;
	c->c_bytes = c->bytes;
	c->c_lsn = c->last_lsn;
	env->log(env, SINK_LOG_INFO, "counting into %s from %llu records", c->path,
		 (unsigned long long)c->records);
	*state = c;
	return 0;
}

static enum sink_rc count_deliver(void *state, const struct sink_record *recs, size_t n, uint32_t *retry_ms,
				  char err[SINK_ERR_LEN])
{
	struct count *c = state;
	(void)retry_ms;
	if (c->fail_every && ++c->deliveries % c->fail_every == 0) {
		/* RETRY promises the sink is back at its last commit */
		c->records = c->c_records;
		c->bytes = c->c_bytes;
		c->last_lsn = c->c_lsn;
		snprintf(err, SINK_ERR_LEN, "delivery %lld refused on purpose (fail_every)", (long long)c->deliveries);
		return SINK_RETRY;
	}
	for (size_t i = 0; i < n; i++) {
		size_t len;
		sink_rec_payload(&recs[i], &len);
		c->records++;
		c->bytes += len;
		c->last_lsn = sink_rec_lsn(&recs[i]);
	}
	return SINK_OK;
}

static enum sink_rc count_commit(void *state, struct sink_commit *out, uint32_t *retry_ms, char err[SINK_ERR_LEN])
{
	struct count *c = state;
	(void)retry_ms;
	char tmp[600], line[128];
	snprintf(tmp, sizeof(tmp), "%s.tmp", c->path);
	int n = snprintf(line, sizeof(line), "records %llu bytes %llu last_lsn %llu\n",
			 (unsigned long long)c->records, (unsigned long long)c->bytes, (unsigned long long)c->last_lsn);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, line, (size_t)n) != n || fdatasync(fd) < 0 || close(fd) < 0 ||
	    rename(tmp, c->path) < 0) {
		int e = errno;
		snprintf(err, SINK_ERR_LEN, "%.200s: %s", c->path, strerror(e));
		/* back to the last commit, as the contract asks */
		c->records = c->c_records;
		c->bytes = c->c_bytes;
		c->last_lsn = c->c_lsn;
		return SINK_RETRY;
	}
	uint8_t *b = malloc(24);
	if (!b) {
		snprintf(err, SINK_ERR_LEN, "out of memory");
		return SINK_RETRY;
	}
	memcpy(b, &c->records, 8);
	memcpy(b + 8, &c->bytes, 8);
	memcpy(b + 16, &c->last_lsn, 8);
	c->c_records = c->records;
	c->c_bytes = c->bytes;
	c->c_lsn = c->last_lsn;
	out->blob = b;
	out->blob_len = 24;
	return SINK_OK;
}

static void count_exit(void *state)
{
	free(state);
}

const struct sink_desc mi_sink_plugin = {
	.abi = SINK_ABI_VERSION,
	.name = "count",
	.description = "count records and payload bytes into a file",
	.opts = count_opts,
	.nopts = sizeof(count_opts) / sizeof(count_opts[0]),
	.cfg_size = sizeof(struct count_cfg),
	.init = count_init,
	.deliver = count_deliver,
	.commit = count_commit,
	.exit = count_exit,
};
