/* mi-query — reads an index sink's database (read-only, while the pipeline
 * runs): records in a time range, the latest record per device, or one
 * field's aggregates per time bucket; payloads come from the log by LSN.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cli.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/fields.h"
#include "common/index_schema.h"
#include "common/seg.h"
#include "common/settings.h"
#include "run/query_out.h"
#include "sinkd/reader.h"

#define PROG "mi-query"
#define DEVICES_MAX 256
#define LATEST_FIELDS 256   /* fields shown per --latest record, the first by name */
#define EX_BAD 2        /* bad input: a time, a field, a missing index */
#define EX_FAIL 1       /* the database could not be read */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mi-query [-c FILE] [--sink NAME] [--device D]... [--topic T]\n"
		"                [--from TIME] [--to TIME] [--by device|server] [--limit N]\n"
		"                [--latest | --bucket DURATION --field F] [--format table|ndjson|csv]\n"
		"Reads the database of an index sink instance while the pipeline runs.\n"
		"  -c, --config FILE   the pipeline's config (default: built-in defaults)\n"
		"      --sink NAME     the index instance (default: the one [sinkd] sinks has)\n"
		"      --device D      only this device; repeatable\n"
		"      --topic T       only this topic ([topics] name or id)\n"
		"      --from TIME     from this time on (inclusive) ...\n"
		"      --to TIME       ... to this one (exclusive); RFC 3339, \"now\", or\n"
		"                      relative: -15m, -2h, -1d (s, m, h, d)\n"
		"      --by WHICH      device time (default) or server time for the range,\n"
		"                      the order and the buckets\n"
		"      --limit N       at most N rows\n"
		"      --latest        the last record of each device, with the last value\n"
		"                      of each field\n"
		"      --bucket DUR    per bucket of DUR (30s, 5m, 1h, 1d; aligned to the Unix\n"
		"      --field F       epoch) and device: count, min, max, avg, first, last of F\n"
		"      --format FMT    table (default on a terminal), ndjson (default\n"
		"                      otherwise) or csv\n"
		"  -h, --help          this text\n"
		"Records come oldest first (by time, then LSN), each with its payload from\n"
		"the log: as text when it is UTF-8, else payload_b64; a record whose segment\n"
		"retention retired is listed with payload_retired.\n"
		"Exit status: 0 (an empty result too), 1 when the database cannot be read,\n"
		"2 for bad input (option, time, field, config) or a missing index.\n");
}

struct query {
	const char *config, *sink;
	const char *devices[DEVICES_MAX];
	unsigned ndevices;
	int topic;               /* -1: every topic */
	const char *topic_arg;
	uint64_t from, to;       /* [from, to) */
	int by_server, latest;
	uint64_t limit;          /* 0: no limit */
	uint64_t bucket;         /* ns; 0: no buckets */
	const char *field;
	enum qfmt fmt;
};

static sqlite3 *db;
static char db_path[512];
static struct reader rd;
static uint32_t max_plen;

static int bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int bad(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs(PROG ": ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return EX_BAD;
}

static int db_fail(const char *what)
{
	fprintf(stderr, PROG ": %s: %s: %s\n", db_path, what, sqlite3_errmsg(db));
	return EX_FAIL;
}

/* The index instance to read and its database, from the config. */
static int pick_index(const struct query *q, const struct settings *s, cfg_t *cfg)
{
	char names[sizeof(s->sinks)], found[sizeof(s->sinks)] = "", path[256] = "";
	unsigned n = 0;
	snprintf(names, sizeof(names), "%s", s->sinks);
	const char *cfgname = q->config ? q->config : "the built-in defaults";
	for (char *save, *t = strtok_r(names, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save)) {
		char section[64], type[256], p[256];
		snprintf(section, sizeof(section), "sink.%s", t);
		struct cfg_opt rows[2] = {
			{ section, "type", CFG_STR, t, 0, sizeof(type), 0, 0, "" },
		};
		char err[CFG_ERR_LEN];
		if (cfg_apply(cfg, rows, 1, type, err) < 0)
			return bad("%s", err);
		if (strcmp(type, "index") || (q->sink && strcmp(q->sink, t)))
			continue;
		rows[0] = (struct cfg_opt){ section, "path", CFG_STR, "", 0, sizeof(p), 0, 0, "" };
		if (cfg_apply(cfg, rows, 1, p, err) < 0)
			return bad("%s", err);
		if (n++ == 0)
			snprintf(path, sizeof(path), "%s", p), snprintf(found, sizeof(found), "%s", t);
		else
			snprintf(found + strlen(found), sizeof(found) - strlen(found), ", %s", t);
	}
	if (n == 0)
		return q->sink ? bad("%s: no index instance '%s' in [sinkd] sinks (%s)", cfgname, q->sink, s->sinks)
			       : bad("%s: no index instance in [sinkd] sinks (%s); add one with type = index",
				     cfgname, s->sinks);
	if (n > 1)
		return bad("%s: several index instances (%s): pick one with --sink", cfgname, found);
	if (path[0])
		snprintf(db_path, sizeof(db_path), "%s", path);
	else
		index_default_path(db_path, sizeof(db_path), s->data_dir, found);
	if (access(db_path, R_OK) < 0)
		return bad("%s: no index here (%s): has sink %s run yet?", db_path, strerror(errno), found);
	if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
		return db_fail("cannot open");
	sqlite3_busy_timeout(db, 5000);
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'schema'", -1, &st, NULL) != SQLITE_OK)
		return bad("%s: not an index database (%s)", db_path, sqlite3_errmsg(db));
	int rc = sqlite3_step(st);
	int64_t schema = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
	sqlite3_finalize(st);
	if (schema != INDEX_SCHEMA)
		return bad("%s: an index of schema %" PRId64 ", this mi-query reads schema %d", db_path, schema,
			   INDEX_SCHEMA);
	char wal[600];
	snprintf(wal, sizeof(wal), "%s/wal", s->data_dir);
	reader_init(&rd, wal, s->segment_bytes);
	max_plen = (uint32_t)s->max_frame;
	return 0;
}

/* The record's payload from the log, checked against its row. */
static void fetch_payload(struct qrec *r)
{
	int err;
	const struct rec_hdr *h = reader_at(&rd, r->lsn, &err);
	r->payload = NULL;
	if (!h) {
		r->missing = err == -ENOENT ? "retired" : "not in the log";
		return;
	}
	size_t dlen = strlen(r->device);
	if (h->type != REC_DATA || h->seq != r->seq || h->plen != r->len || h->id_len != dlen ||
	    memcmp(rec_id(h), r->device, dlen) ||
	    seg_rec_check((const uint8_t *)h, rec_total(h), max_plen) != SEG_REC_OK) {
		/* the segment was retired and its file reused for newer records */
		r->missing = "retired";
		return;
	}
	r->payload = rec_payload(h);
}

/* " AND device IN (SELECT id FROM devices WHERE name IN (?, ...))" etc. */
static void where(const struct query *q, const char *t, const char *col_dev, char *buf, size_t len)
{
	size_t n = 0;
	n += (size_t)snprintf(buf + n, len - n, " WHERE %s >= ?1 AND %s < ?2", t, t);
	if (q->ndevices) {
		n += (size_t)snprintf(buf + n, len - n, " AND %s IN (SELECT id FROM devices WHERE name IN (", col_dev);
		for (unsigned i = 0; i < q->ndevices; i++)
			n += (size_t)snprintf(buf + n, len - n, "%s?%u", i ? ", " : "", 10 + i);
		n += (size_t)snprintf(buf + n, len - n, "))");
	}
	if (q->topic >= 0)
		snprintf(buf + n, len - n, " AND r.topic = ?3");
}

static void bind(const struct query *q, sqlite3_stmt *st)
{
	sqlite3_bind_int64(st, 1, (int64_t)q->from);
	sqlite3_bind_int64(st, 2, (int64_t)q->to);
	if (q->topic >= 0)
		sqlite3_bind_int(st, 3, q->topic);
	for (unsigned i = 0; i < q->ndevices; i++)
		sqlite3_bind_text(st, (int)(10 + i), q->devices[i], -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, q->limit ? (int64_t)q->limit : -1);
}

static void row_rec(sqlite3_stmt *st, struct qrec *r)
{
	r->lsn = (uint64_t)sqlite3_column_int64(st, 0);
	r->device = (const char *)sqlite3_column_text(st, 1);
	r->topic = (uint16_t)sqlite3_column_int(st, 2);
	r->seq = (uint64_t)sqlite3_column_int64(st, 3);
	r->ts_ns = (uint64_t)sqlite3_column_int64(st, 4);
	r->srv_ns = (uint64_t)sqlite3_column_int64(st, 5);
	r->len = (uint32_t)sqlite3_column_int64(st, 6);
	fetch_payload(r);
}

#define REC_COLS "SELECT r.lsn, d.name, r.topic, r.seq, r.ts_ns, r.srv_ns, r.len FROM records r JOIN devices d ON d.id = r.device"

static int records(const struct query *q)
{
	const char *t = q->by_server ? "r.srv_ns" : "r.ts_ns";
	char w[4096], sql[4600];
	where(q, t, "r.device", w, sizeof(w));
	snprintf(sql, sizeof(sql), REC_COLS "%s ORDER BY %s, r.lsn LIMIT ?4", w, t);
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return db_fail("preparing the query");
	bind(q, st);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct qrec r;
		row_rec(st, &r);
		out_record(q->fmt, &r);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : db_fail("reading records");
}

static int latest(const struct query *q)
{
	const char *t = q->by_server ? "r.srv_ns" : "r.ts_ns";
	char w[4096], sql[4600];
	where(q, t, "r.device", w, sizeof(w));
	/* per device, one seek down its (device, time) index */
	snprintf(sql, sizeof(sql), REC_COLS "%s AND r.device = ?5 ORDER BY %s DESC, r.lsn DESC LIMIT 1", w, t);
	sqlite3_stmt *devs, *st, *fl;
	if (sqlite3_prepare_v2(db, "SELECT id, name FROM devices ORDER BY name", -1, &devs, NULL) != SQLITE_OK)
		return db_fail("listing devices");
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "SELECT id, name FROM fields ORDER BY name", -1, &fl, NULL) != SQLITE_OK) {
		sqlite3_finalize(devs);
		return db_fail("preparing the query");
	}
	/* each field's last value: its own column, down the device's index */
	struct qfield fields[LATEST_FIELDS];
	sqlite3_stmt *fv[LATEST_FIELDS];
	char names[LATEST_FIELDS][FIELD_NAME_MAX + 1];
	size_t nf = 0;
	int rc;
	while (nf < LATEST_FIELDS && (rc = sqlite3_step(fl)) == SQLITE_ROW) {
		char q2[300];
		snprintf(q2, sizeof(q2), "SELECT %s, v%lld FROM records WHERE device = ?1 AND %s >= ?2 AND %s < ?3 AND "
			 "v%lld IS NOT NULL%s ORDER BY %s DESC, lsn DESC LIMIT 1", t + 2,
			 (long long)sqlite3_column_int64(fl, 0), t + 2, t + 2, (long long)sqlite3_column_int64(fl, 0),
			 q->topic >= 0 ? " AND topic = ?4" : "", t + 2);
		snprintf(names[nf], sizeof(names[nf]), "%s", (const char *)sqlite3_column_text(fl, 1));
		if (sqlite3_prepare_v2(db, q2, -1, &fv[nf], NULL) != SQLITE_OK) {
			rc = SQLITE_ERROR;
			break;
		}
		nf++;
	}
	sqlite3_finalize(fl);
	uint64_t shown = 0;
	if (rc == SQLITE_DONE || rc == SQLITE_ROW)
		rc = SQLITE_DONE;
	while (rc == SQLITE_DONE && (!q->limit || shown < q->limit) && (rc = sqlite3_step(devs)) == SQLITE_ROW) {
		int64_t dev = sqlite3_column_int64(devs, 0);
		sqlite3_reset(st);
		bind(q, st);
		sqlite3_bind_int64(st, 5, dev);
		if ((rc = sqlite3_step(st)) != SQLITE_ROW) {
			if (rc == SQLITE_DONE)
				continue;
			break;
		}
		struct qrec r;
		row_rec(st, &r);
		size_t n = 0;
		for (size_t i = 0; i < nf; i++) {
			sqlite3_reset(fv[i]);
			sqlite3_bind_int64(fv[i], 1, dev);
			sqlite3_bind_int64(fv[i], 2, (int64_t)q->from);
			sqlite3_bind_int64(fv[i], 3, (int64_t)q->to);
			if (q->topic >= 0)
				sqlite3_bind_int(fv[i], 4, q->topic);
			if (sqlite3_step(fv[i]) != SQLITE_ROW)
				continue;
			fields[n++] = (struct qfield){ names[i], sqlite3_column_double(fv[i], 1),
						       (uint64_t)sqlite3_column_int64(fv[i], 0) };
		}
		out_latest(q->fmt, &r, fields, n);
		shown++;
		rc = SQLITE_DONE;
	}
	sqlite3_finalize(devs);
	sqlite3_finalize(st);
	for (size_t i = 0; i < nf; i++)
		sqlite3_finalize(fv[i]);
	return rc == SQLITE_DONE ? 0 : db_fail("reading the latest records");
}

static int field_id(const char *name, int64_t *ret)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, "SELECT id FROM fields WHERE name = ?1", -1, &st, NULL) != SQLITE_OK)
		return db_fail("reading fields");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	*ret = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
	sqlite3_finalize(st);
	if (*ret >= 0)
		return 0;
	char list[1024] = "";
	size_t n = 0;
	if (sqlite3_prepare_v2(db, "SELECT name FROM fields ORDER BY name LIMIT 50", -1, &st, NULL) == SQLITE_OK) {
		while (sqlite3_step(st) == SQLITE_ROW && n < sizeof(list) - 80)
			n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%s", n ? ", " : "",
					      (const char *)sqlite3_column_text(st, 0));
		sqlite3_finalize(st);
	}
	return bad("--field %s: no such field in %s (%s)", name, db_path, n ? list : "it has no fields yet");
}

static int cmp_bucket(const void *a, const void *b)
{
	const struct qbucket *x = a, *y = b;
	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	return strcmp(x->device, y->device);
}

/* Walks the field's values of the range in (device, time, LSN) order,
 * folding each into its device's current bucket. */
static int buckets(const struct query *q)
{
	int64_t fid = -1;
	int r = field_id(q->field, &fid);
	if (r)
		return r;
	const char *col = q->by_server ? "r.srv_ns" : "r.ts_ns";
	char w[4096], sql[4600];
	where(q, col, "r.device", w, sizeof(w));
	snprintf(sql, sizeof(sql), "SELECT d.name, %s, r.v%lld FROM records r JOIN devices d ON d.id = r.device%s AND "
		 "r.v%lld IS NOT NULL ORDER BY r.device, %s, r.lsn", col, (long long)fid, w, (long long)fid, col);
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return db_fail("preparing the query");
	bind(q, st);
	struct qbucket *b = NULL;
	size_t n = 0, cap = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *dev = (const char *)sqlite3_column_text(st, 0);
		uint64_t t = (uint64_t)sqlite3_column_int64(st, 1);
		double v = sqlite3_column_double(st, 2);
		uint64_t start = t - t % q->bucket;
		struct qbucket *cur = n ? &b[n - 1] : NULL;
		if (!cur || cur->start != start || strcmp(cur->device, dev)) {
			if (n == cap) {
				cap = cap ? 2 * cap : 256;
				struct qbucket *nb = realloc(b, cap * sizeof(*b));
				if (!nb) {
					fprintf(stderr, PROG ": out of memory for %zu buckets\n", cap);
					rc = SQLITE_NOMEM;
					break;
				}
				b = nb;
			}
			/* a column's text lives only until the next step */
			cur = &b[n++];
			*cur = (struct qbucket){ start, strdup(dev), q->field, 0, v, v, 0, v, v };
			if (!cur->device) {
				rc = SQLITE_NOMEM;
				break;
			}
		}
		cur->count++;
		cur->sum += v;
		cur->min = v < cur->min ? v : cur->min;
		cur->max = v > cur->max ? v : cur->max;
		cur->last = v;
	}
	sqlite3_finalize(st);
	if (rc == SQLITE_DONE) {
		/* (start, device) is unique: no order of equals to keep */
		qsort(b, n, sizeof(*b), cmp_bucket);
		for (size_t i = 0; i < n && (!q->limit || i < q->limit); i++)
			out_bucket(q->fmt, &b[i]);
	}
	for (size_t i = 0; i < n; i++)
		free((char *)b[i].device);
	free(b);
	return rc == SQLITE_DONE ? 0 : rc == SQLITE_NOMEM ? EX_FAIL : db_fail("reading values");
}

enum { OPT_SINK = 256, OPT_DEVICE, OPT_TOPIC, OPT_FROM, OPT_TO, OPT_BY, OPT_LIMIT, OPT_LATEST, OPT_BUCKET,
       OPT_FIELD, OPT_FORMAT };

static int parse_args(int argc, char **argv, struct query *q, const char **from, const char **to,
		      const char **bucket)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' }, { "sink", required_argument, NULL, OPT_SINK },
		{ "device", required_argument, NULL, OPT_DEVICE }, { "topic", required_argument, NULL, OPT_TOPIC },
		{ "from", required_argument, NULL, OPT_FROM }, { "to", required_argument, NULL, OPT_TO },
		{ "by", required_argument, NULL, OPT_BY }, { "limit", required_argument, NULL, OPT_LIMIT },
		{ "latest", no_argument, NULL, OPT_LATEST }, { "bucket", required_argument, NULL, OPT_BUCKET },
		{ "field", required_argument, NULL, OPT_FIELD }, { "format", required_argument, NULL, OPT_FORMAT },
		{ "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
	};
	int o, have_fmt = 0;
	char *end;
	while ((o = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
		switch (o) {
		case 'c': q->config = optarg; break;
		case OPT_SINK: q->sink = optarg; break;
		case OPT_DEVICE:
			if (q->ndevices == DEVICES_MAX)
				return bad("--device: at most %d of them", DEVICES_MAX);
			q->devices[q->ndevices++] = optarg;
			break;
		case OPT_TOPIC: q->topic_arg = optarg; break;
		case OPT_FROM: *from = optarg; break;
		case OPT_TO: *to = optarg; break;
		case OPT_BY:
			if (strcmp(optarg, "device") && strcmp(optarg, "server"))
				return bad("--by '%s': use device or server", optarg);
			q->by_server = !strcmp(optarg, "server");
			break;
		case OPT_LIMIT:
			errno = 0;
			q->limit = strtoull(optarg, &end, 10);
			if (errno || !*optarg || *end || optarg[0] == '-' || q->limit == 0)
				return bad("--limit '%s': a count of 1 or more", optarg);
			break;
		case OPT_LATEST: q->latest = 1; break;
		case OPT_BUCKET: *bucket = optarg; break;
		case OPT_FIELD: q->field = optarg; break;
		case OPT_FORMAT:
			if (qfmt_parse(optarg, &q->fmt) < 0)
				return bad("--format '%s': use table, ndjson or csv", optarg);
			have_fmt = 1;
			break;
		case 'h': usage(stdout); exit(0);
		default:
			cli_bad_option(PROG, o, argv);
			usage(stderr);
			return CLI_EX_USAGE;
		}
	}
	if (optind < argc)
		return bad("unexpected argument '%s' (see --help)", argv[optind]);
	if (!have_fmt)
		q->fmt = isatty(STDOUT_FILENO) ? QFMT_TABLE : QFMT_NDJSON;
	if (*bucket && !q->field)
		return bad("--bucket needs --field: the field to aggregate");
	if (q->field && !*bucket)
		return bad("--field goes with --bucket DURATION");
	if (*bucket && q->latest)
		return bad("--latest and --bucket: one or the other");
	return 0;
}

static int parse_times(struct query *q, const char *from, const char *to, const char *bucket)
{
	uint64_t now = clock_real_ns();
	q->from = 0;
	q->to = INT64_MAX;
	if (from && clock_parse_time(from, now, &q->from) < 0)
		return bad("--from '%s': not a time (RFC 3339 as 2026-12-03T10:00:00Z, \"now\", or -15m, -2h, -1d)", from);
	if (to && clock_parse_time(to, now, &q->to) < 0)
		return bad("--to '%s': not a time (RFC 3339 as 2026-12-03T10:00:00Z, \"now\", or -15m, -2h, -1d)", to);
	if (q->from > INT64_MAX || q->to > INT64_MAX)
		return bad("--from/--to: past the year 2262, where the index's times end");
	if (q->from >= q->to)
		return bad("--from %s is not before --to %s: the range [from, to) is empty", from ? from : "(start)",
			   to ? to : "(end)");
	if (bucket) {
		char b[64];
		snprintf(b, sizeof(b), "+%s", bucket);
		if (bucket[0] == '+' || bucket[0] == '-' || clock_parse_time(b, 0, &q->bucket) < 0 || q->bucket == 0 ||
		    q->bucket > INT64_MAX)
			return bad("--bucket '%s': a duration as 30s, 5m, 1h or 1d", bucket);
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct query q = { .topic = -1 };
	const char *from = NULL, *to = NULL, *bucket = NULL;
	int r = parse_args(argc, argv, &q, &from, &to, &bucket);
	if (r)
		return r;
	if ((r = parse_times(&q, from, to, bucket)))
		return r;
	struct settings s;
	cfg_t *cfg = NULL;
	char err[CFG_ERR_LEN];
	if (settings_load(q.config, &s, &cfg, 0, err) < 0)
		return bad("%s", err);
	if (q.topic_arg) {
		char *end;
		unsigned long t = strtoul(q.topic_arg, &end, 10);
		if (*q.topic_arg && !*end && t <= 65535)
			q.topic = (int)t;
		else if ((q.topic = settings_topic_id(&s, q.topic_arg, strlen(q.topic_arg))) < 0)
			r = bad("--topic '%s': neither a topic id (0-65535) nor a name in [topics]", q.topic_arg);
	}
	if (!r)
		r = pick_index(&q, &s, cfg);
	cfg_close(cfg);
	if (!r) {
		/* one read transaction: every row of the answer from one snapshot */
		if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
			r = db_fail("starting a read");
		else
			r = q.latest ? latest(&q) : q.bucket ? buckets(&q) : records(&q);
		sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	}
	reader_close(&rd);
	sqlite3_close(db);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, PROG ": writing the answer: %s\n", strerror(errno));
		return EX_FAIL;
	}
	return r;
}
