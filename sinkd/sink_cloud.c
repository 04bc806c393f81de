/* sink_cloud — the records of the instance's topics as objects in an
 * S3-compatible store (AWS S3, MinIO, Ceph RGW, GCS's XML API with HMAC
 * keys): one object per batch of one topic, gzip'd NDJSON
 * (sinkd/cloud_obj.h), PUT and signed by sinkd/s3put.c.
 *
 * Each topic gathers its own batch across deliveries; it closes at the
 * instance's batch_records or batch_bytes (of NDJSON text), batch_ms after
 * its first record came, or when the instance's batches together pass
 * buffer_bytes (the oldest goes first).  Closing fixes the batch's LSN range
 * and writes it down (sinkd/cloud_journal.h) before the upload; commit()
 * tells the host it is durable only up to the first record still held, so
 * the offset never passes a record that is in no object.
 *
 * Exactly once: after a crash the host redelivers from its stored offset.
 * A record inside a journalled range goes back into that range's object,
 * which is uploaded again under the same key once its last record is in
 * (or was delivered, if retention skipped it); a range that began before
 * the offset was uploaded, so its records are passed over.
 *
 * No answer, 5xx, 408, 429: SINK_RETRY (backoff with jitter; retention
 * holds the records).  Any other refusal: SINK_FAILING, with the store's
 * error code.  Credentials are read again on SIGHUP (sink_env.reloads).
 *
 * A backfill run keeps its plans in memory and closes every batch at each
 * commit: it is never redelivered.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/clock.h"
#include "common/fault.h"
#include "sinkd/awscred.h"
#include "sinkd/cloud_journal.h"
#include "sinkd/cloud_obj.h"
#include "sinkd/s3put.h"
#include "sinkd/sink.h"

#define DEFAULT_KEY "{topic}/{date}/{hour}/{first_lsn}-{last_lsn}.ndjson.gz"
#define NTOPICS 65536

struct cloud_cfg {
	char endpoint[256];
	char region[64];
	char bucket[128];
	char key[512];
	char credentials_file[256];
	char profile[64];
	char ca_file[256];
	int path_style;
	int tls_verify;
	int64_t gzip_level;
	int64_t connect_timeout_ms, timeout_ms;
	uint64_t buffer_bytes;
};

#define C(f) offsetof(struct cloud_cfg, f)
#define S(f) sizeof(((struct cloud_cfg *)0)->f)
static const struct sink_opt cloud_opts[] = {
	{ "endpoint", SINK_OPT_STR, "", C(endpoint), S(endpoint), 0, 0,
	  "the store's URL, http(s)://host[:port] (default: https://s3.<region>.amazonaws.com)" },
	{ "region", SINK_OPT_STR, "us-east-1", C(region), S(region), 0, 0, "the region requests are signed for" },
	{ "bucket", SINK_OPT_STR, "", C(bucket), S(bucket), 0, 0, "the bucket (required)" },
	{ "key", SINK_OPT_STR, DEFAULT_KEY, C(key), S(key), 0, 0,
	  "object key template: {topic} {topic_id} {date} {hour} {first_lsn} {last_lsn} {name}" },
	{ "path_style", SINK_OPT_BOOL, "false", C(path_style), 0, 0, 0,
	  "endpoint/bucket/key URLs (local servers, MinIO) instead of bucket.host/key" },
	{ "credentials_file", SINK_OPT_STR, "", C(credentials_file), S(credentials_file), 0, 0,
	  "AWS shared-credentials file, when AWS_ACCESS_KEY_ID is not set (default: ~/.aws/credentials)" },
	{ "profile", SINK_OPT_STR, "", C(profile), S(profile), 0, 0,
	  "its profile (default: AWS_PROFILE, else default)" },
	{ "ca_file", SINK_OPT_STR, "", C(ca_file), S(ca_file), 0, 0,
	  "CA certificates to verify the store with (default: the system's)" },
	{ "tls_verify", SINK_OPT_BOOL, "true", C(tls_verify), 0, 0, 0, "verify the store's certificate and name" },
	{ "gzip_level", SINK_OPT_INT, "1", C(gzip_level), 0, 1, 9,
	  "1 fastest .. 9 smallest (bench/cloud: 6 costs a third more CPU for 15% smaller telemetry)" },
	{ "connect_timeout_ms", SINK_OPT_INT, "5000", C(connect_timeout_ms), 0, 100, 600000,
	  "a connection not made in this long is retried" },
	{ "timeout_ms", SINK_OPT_INT, "60000", C(timeout_ms), 0, 100, 3600000,
	  "an upload not done in this long is retried" },
	{ "buffer_bytes", SINK_OPT_SIZE, "256M", C(buffer_bytes), 0, 1 << 20, 1ll << 40,
	  "NDJSON the instance's open batches may hold together; past it the oldest is uploaded" },
};

/* A topic's open batch, and what the journal says of the topic. */
struct topic_obj {
	uint16_t topic;
	int open;
	int bound;                   /* rebuilding a journalled range: plan */
	struct cj_plan plan;
	uint64_t first, last, srv_ns, opened_ns;
	uint32_t records;
	uint64_t plan_hi;            /* no journalled range of the topic ends past this */
	struct cbuf text;
};

struct cloud {
	const struct sink_env *env;
	struct cloud_cfg cfg;
	struct s3 s3;
	struct aws_creds cr;
	int have_creds;
	char cred_err[SINK_ERR_LEN];
	uint32_t reloads_seen;
	struct cjournal j;
	struct topic_obj **topics;   /* NTOPICS, made when first seen */
	uint16_t *open;              /* topics with an open batch */
	size_t nopen;
	uint64_t buffered;           /* NDJSON bytes of the open batches */
	uint64_t capacity;           /* bytes of every topic's buffer */
	void *z;
	struct cbuf gz;
	int backfill;
	uint64_t objects;
};

static void load_creds(struct cloud *c, int reload)
{
	char err[SINK_ERR_LEN];
	if (aws_creds_load(c->cfg.credentials_file, c->cfg.profile, &c->cr, err) < 0) {
		char msg[SINK_ERR_LEN];
		snprintf(msg, sizeof(msg), "no credentials: %s", err);
		if (reload && c->have_creds)
			c->env->log(c->env, SINK_LOG_WARN, "SIGHUP: credentials not reloaded, the old ones stay: %s",
				    err);
		else if (reload || strcmp(msg, c->cred_err))   /* each retry looks again: said once */
			c->env->log(c->env, SINK_LOG_WARN, "%s", msg);
		memcpy(c->cred_err, msg, sizeof(msg));
		return;
	}
	c->have_creds = 1;
	c->env->log(c->env, SINK_LOG_INFO, "%scredentials %s from %s", reload ? "SIGHUP: " : "", c->cr.id,
		    c->cr.source);
}

/* A SIGHUP since the last look, or no credentials yet: read them again. */
static void check_reload(struct cloud *c)
{
	uint32_t n = c->env->reloads ? c->env->reloads(c->env) : 0;
	if (n != c->reloads_seen) {
		c->reloads_seen = n;
		load_creds(c, 1);
	} else if (!c->have_creds) {
		load_creds(c, 0);
	}
}

static struct cj_plan *find_plan(struct cloud *c, uint16_t topic, uint64_t lsn)
{
	for (size_t i = 0; i < c->j.n; i++) {
		struct cj_plan *p = &c->j.v[i];
		if (p->topic == topic && p->first <= lsn && lsn <= p->last)
			return p;
	}
	return NULL;
}

static void drop_open(struct cloud *c, struct topic_obj *o)
{
	c->buffered -= o->text.len;
	o->text.len = 0;
	o->open = o->bound = 0;
	o->records = 0;
	for (size_t i = 0; i < c->nopen; i++)
		if (c->open[i] == o->topic) {
			c->open[i] = c->open[--c->nopen];
			break;
		}
	/* kept for the topic's next batch (growing one anew costs copies and
	 * page faults), while the buffers together stay within buffer_bytes */
	if (c->capacity > c->cfg.buffer_bytes) {
		c->capacity -= o->text.cap;
		cbuf_free(&o->text);
	}
}

/* Back at the last commit: every open batch dropped (the host redelivers
 * their records); the journal stays, it is what makes the rebuild exact. */
static void reset_open(struct cloud *c)
{
	while (c->nopen)
		drop_open(c, c->topics[c->open[0]]);
}

static enum sink_rc failed(struct cloud *c, enum sink_rc rc)
{
	reset_open(c);
	return rc;
}

/* The batch's object to the store; on success the batch is done. */
static enum sink_rc upload(struct cloud *c, struct topic_obj *o, char err[SINK_ERR_LEN])
{
	const struct cj_plan *p = &o->plan;
	if (!c->have_creds) {
		snprintf(err, SINK_ERR_LEN, "%s", c->cred_err);
		return SINK_FAILING;
	}
	char key[CLOUD_KEY_MAX];
	struct cloud_key_args ka = { .name = c->env->name, .topic_name = c->env->topic_name(c->env, p->topic),
				     .topic = p->topic, .first_lsn = p->first, .last_lsn = p->last,
				     .srv_ns = p->srv_ns };
	if (cloud_key(c->cfg.key, &ka, key) < 0) {
		snprintf(err, SINK_ERR_LEN, "key = %.100s: longer than %d bytes for topic %u", c->cfg.key,
			 CLOUD_KEY_MAX - 1, p->topic);
		return SINK_FATAL;
	}
	int r = cloud_gzip(&c->z, (int)c->cfg.gzip_level, o->text.p, o->text.len, &c->gz);
	if (r < 0) {
		snprintf(err, SINK_ERR_LEN, "gzip of %s: %s", key, strerror(-r));
		return SINK_RETRY;
	}
	enum s3_rc rc = s3_put(&c->s3, &c->cr, key, c->gz.p, c->gz.len, "application/x-ndjson", "gzip", err);
	if (rc != S3_OK)
		return rc == S3_RETRY ? SINK_RETRY : SINK_FAILING;
	fault_point("cloud.after_put");   /* stored, the offset not yet past it */
	struct cj_plan *jp = find_plan(c, p->topic, p->first);
	if (jp)
		jp->uploaded = 1;
	c->objects++;
	c->env->log(c->env, SINK_LOG_DEBUG, "%s: %u records, %zu bytes (%zu gzip'd)", key, o->records, o->text.len,
		    c->gz.len);
	drop_open(c, o);
	return SINK_OK;
}

/* An open batch closes: its range written down, then uploaded. */
static enum sink_rc close_batch(struct cloud *c, struct topic_obj *o, char err[SINK_ERR_LEN])
{
	if (!o->bound) {
		o->plan = (struct cj_plan){ .topic = o->topic, .first = o->first, .last = o->last,
					    .srv_ns = o->srv_ns, .records = o->records };
		int r = cj_add(&c->j, &o->plan, err);
		if (r < 0)
			return SINK_RETRY;
		o->bound = 1;
		if (o->last > o->plan_hi)
			o->plan_hi = o->last;
	}
	return upload(c, o, err);
}

static struct topic_obj *topic_obj(struct cloud *c, uint16_t topic)
{
	struct topic_obj *o = c->topics[topic];
	if (o)
		return o;
	if (!(o = calloc(1, sizeof(*o))))
		return NULL;
	o->topic = topic;
	for (size_t i = 0; i < c->j.n; i++)
		if (c->j.v[i].topic == topic && c->j.v[i].last > o->plan_hi)
			o->plan_hi = c->j.v[i].last;
	return c->topics[topic] = o;
}

static void open_batch(struct cloud *c, struct topic_obj *o, const struct sink_record *r, const struct cj_plan *p)
{
	o->open = 1;
	o->bound = p != NULL;
	if (p)
		o->plan = *p;
	o->first = sink_rec_lsn(r);
	o->srv_ns = sink_rec_server_time(r);
	o->opened_ns = clock_mono_ns();
	o->records = 0;
	c->open[c->nopen++] = o->topic;
}

static enum sink_rc append(struct cloud *c, struct topic_obj *o, const struct sink_record *r, char err[SINK_ERR_LEN])
{
	size_t before = o->text.len, cap = o->text.cap;
	if (cloud_line(&o->text, r, c->env->topic_name(c->env, sink_rec_topic(r))) < 0) {
		snprintf(err, SINK_ERR_LEN, "out of memory for topic %u's batch (%zu bytes)", o->topic, o->text.len);
		return SINK_RETRY;
	}
	c->buffered += o->text.len - before;
	c->capacity += o->text.cap - cap;
	o->last = sink_rec_lsn(r);
	o->records++;
	return SINK_OK;
}

/* The open batch with the lowest first LSN (it holds the offset back most). */
static struct topic_obj *oldest(struct cloud *c)
{
	struct topic_obj *best = NULL;
	for (size_t i = 0; i < c->nopen; i++) {
		struct topic_obj *o = c->topics[c->open[i]];
		if (!best || o->first < best->first)
			best = o;
	}
	return best;
}

static enum sink_rc take(struct cloud *c, const struct sink_record *r, char err[SINK_ERR_LEN])
{
	uint16_t topic = sink_rec_topic(r);
	uint64_t lsn = sink_rec_lsn(r);
	struct topic_obj *o = topic_obj(c, topic);
	enum sink_rc rc;
	if (!o) {
		snprintf(err, SINK_ERR_LEN, "out of memory for topic %u", topic);
		return SINK_RETRY;
	}
	if (lsn <= o->plan_hi) {
		struct cj_plan *p = find_plan(c, topic, lsn);
		if (p && p->uploaded)
			return SINK_OK;
		if (p) {
			if (o->open && !(o->bound && o->plan.first == p->first) && (rc = close_batch(c, o, err)))
				return rc;
			if (!o->open)
				open_batch(c, o, r, p);
			if ((rc = append(c, o, r, err)))
				return rc;
			return lsn == p->last ? upload(c, o, err) : SINK_OK;
		}
	}
	/* past a journalled range whose last records the log no longer has
	 * (retention skipped them): its object is what there is */
	if (o->open && o->bound && (rc = upload(c, o, err)))
		return rc;
	if (!o->open)
		open_batch(c, o, r, NULL);
	if ((rc = append(c, o, r, err)))
		return rc;
	if (o->records >= c->env->batch_records || o->text.len >= c->env->batch_bytes)
		if ((rc = close_batch(c, o, err)))
			return rc;
	while (c->buffered > c->cfg.buffer_bytes && c->nopen)
		if ((rc = close_batch(c, oldest(c), err)))
			return rc;
	return SINK_OK;
}

/* Closes what is due: every batch (all), or those batch_ms old, and the
 * journalled ranges whose records have all been delivered (below upto). */
static enum sink_rc close_due(struct cloud *c, int all, uint64_t upto, char err[SINK_ERR_LEN])
{
	uint64_t now = clock_mono_ns(), age = c->env->batch_ms * 1000000u;
	for (size_t i = 0; i < c->nopen;) {
		struct topic_obj *o = c->topics[c->open[i]];
		int due = all || (o->bound ? o->plan.last < upto : now - o->opened_ns >= age);
		if (!due) {
			i++;
			continue;
		}
		enum sink_rc rc = close_batch(c, o, err);   /* takes it off the list */
		if (rc)
			return rc;
	}
	return SINK_OK;
}

static enum sink_rc cloud_deliver(void *state, const struct sink_record *recs, size_t n, uint32_t *retry_ms,
				  char err[SINK_ERR_LEN])
{
	struct cloud *c = state;
	enum sink_rc rc = SINK_OK;
	(void)retry_ms;
	check_reload(c);
	for (size_t i = 0; i < n && !rc; i++)
		rc = take(c, &recs[i], err);
	if (!rc && !c->env->batch_ms)
		rc = close_due(c, 1, 0, err);
	return rc ? failed(c, rc) : SINK_OK;
}

static enum sink_rc cloud_commit(void *state, struct sink_commit *cm, uint32_t *retry_ms, char err[SINK_ERR_LEN])
{
	struct cloud *c = state;
	(void)retry_ms;
	check_reload(c);
	enum sink_rc rc = close_due(c, c->backfill, cm->upto, err);
	if (rc)
		return failed(c, rc);
	for (size_t i = 0; i < c->nopen; i++) {
		struct topic_obj *o = c->topics[c->open[i]];
		if (o->first < cm->upto)
			cm->upto = o->first;
	}
	if (!c->backfill)
		cj_prune(&c->j, cm->stored);
	return SINK_OK;
}

static void cloud_exit(void *state)
{
	struct cloud *c = state;
	if (!c)
		return;
	if (c->objects)
		c->env->log(c->env, SINK_LOG_INFO, "%llu objects uploaded", (unsigned long long)c->objects);
	for (size_t t = 0; c->topics && t < NTOPICS; t++)
		if (c->topics[t]) {
			cbuf_free(&c->topics[t]->text);
			free(c->topics[t]);
		}
	free(c->topics);
	free(c->open);
	cbuf_free(&c->gz);
	cloud_gzip_free(&c->z);
	cj_close(&c->j);
	s3_close(&c->s3);
	aws_creds_wipe(&c->cr);
	free(c);
}

static int cloud_init(void **state, const void *cfgp, const struct sink_env *env, const void *blob, size_t blob_len,
		      char err[SINK_ERR_LEN])
{
	(void)blob;
	(void)blob_len;   /* the journal and the host's offset say everything */
	struct cloud *c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, SINK_ERR_LEN, "out of memory");
		return -ENOMEM;
	}
	c->env = env;
	c->cfg = *(const struct cloud_cfg *)cfgp;
	c->backfill = !!(env->flags & SINK_ENV_BACKFILL);
	c->j.fd = -1;
	char endpoint[sizeof(c->cfg.endpoint) + 64];
	if (c->cfg.endpoint[0])
		snprintf(endpoint, sizeof(endpoint), "%s", c->cfg.endpoint);
	else
		snprintf(endpoint, sizeof(endpoint), "https://s3.%s.amazonaws.com", c->cfg.region);
	struct s3_cfg sc = { .endpoint = endpoint, .region = c->cfg.region, .bucket = c->cfg.bucket,
			     .ca_file = c->cfg.ca_file, .path_style = c->cfg.path_style,
			     .tls_verify = c->cfg.tls_verify, .connect_timeout_ms = c->cfg.connect_timeout_ms,
			     .timeout_ms = c->cfg.timeout_ms };
	int r = cloud_key_check(c->cfg.key, err);
	if (r == 0)
		r = s3_open(&c->s3, &sc, err);
	if (r < 0)
		goto fail;
	c->topics = calloc(NTOPICS, sizeof(*c->topics));
	c->open = calloc(NTOPICS, sizeof(*c->open));
	if (!c->topics || !c->open) {
		snprintf(err, SINK_ERR_LEN, "out of memory");
		r = -ENOMEM;
		goto fail;
	}
	char dir[512], path[600];
	snprintf(dir, sizeof(dir), "%s/cloud", env->data_dir);
	snprintf(path, sizeof(path), "%s/%s.journal", dir, env->name);
	if (!c->backfill && mkdir(dir, 0700) < 0 && errno != EEXIST) {
		r = -errno;
		snprintf(err, SINK_ERR_LEN, "%s: %s", dir, strerror(-r));
		goto fail;
	}
	if ((r = cj_open(&c->j, c->backfill ? NULL : path, env->start_lsn, err)) < 0)
		goto fail;
	c->reloads_seen = env->reloads ? env->reloads(env) : 0;
	load_creds(c, 0);
	size_t replay = 0;
	for (size_t i = 0; i < c->j.n; i++)
		replay += !c->j.v[i].uploaded;
	env->log(env, SINK_LOG_INFO, "bucket %s at %s, keys %s%s; %zu journalled batch(es) to upload again",
		 c->cfg.bucket, endpoint, c->cfg.key, c->cfg.path_style ? " (path style)" : "", replay);
	*state = c;
	return 0;
fail:
	cloud_exit(c);
	return r;
}

const struct sink_desc sink_cloud = {
	.abi = SINK_ABI_VERSION,
	.name = "cloud",
	.description = "each topic's records as gzip'd NDJSON objects in an S3-compatible store (SigV4)",
	.opts = cloud_opts,
	.nopts = sizeof(cloud_opts) / sizeof(cloud_opts[0]),
	.cfg_size = sizeof(struct cloud_cfg),
	.init = cloud_init,
	.deliver = cloud_deliver,
	.commit = cloud_commit,
	.exit = cloud_exit,
	/* objects of about a minute or 16 MiB, not one per delivery */
	.def_batch_records = 65536,
	.def_batch_bytes = 16u << 20,
	.def_batch_ms = 60000,
};
