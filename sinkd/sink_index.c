/* sink_index — every record of the instance's topics as a row of an SQLite
 * database, with the numeric fields of its payload (common/fields.h), for
 * mi-query and the sqlite3 shell; common/index_schema.h has the schema.
 *
 * Each delivered batch is one transaction (prepared statements, WAL
 * journal, synchronous = NORMAL, so no fsync per batch) that also moves
 * meta.next_lsn past it.  Records below next_lsn are skipped, so a batch
 * redelivered after a crash never makes a second row, and records' LSN is
 * their primary key besides.  commit() is the one fsync: a small
 * transaction with synchronous = FULL syncs the WAL file, and with it every
 * batch before; only then does the host store its offset, so the offset
 * never runs ahead of what a power loss leaves in the database.
 *
 * A backfill run (sinkd --backfill) writes into the same database: rows
 * are keyed by LSN, so it adds the ones missing and leaves next_lsn alone.
 *
 * retain_ms is sinkd/index_retain.c's, a thread of the instance.
 *   blob: "MIX1", u64 next_lsn at the commit
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "common/frame.h"
#include "common/index_schema.h"
#include "common/fields.h"
#include "sinkd/idmap.h"
#include "sinkd/index_retain.h"
#include "sinkd/sink.h"

#define BLOB_MAGIC 0x3158494du   /* "MIX1" */
#define MI_STR_(x) #x
#define MI_STR(x) MI_STR_(x)

struct index_cfg {
	char path[256];
	char fields[1024];
	char layout[1024];
	int64_t retain_ms;
	int64_t max_fields;
	uint64_t cache_bytes;
};

#define C(f) offsetof(struct index_cfg, f)
#define S(f) sizeof(((struct index_cfg *)0)->f)
static const struct sink_opt index_opts[] = {
	{ "path", SINK_OPT_STR, "", C(path), S(path), 0, 0,
	  "the database (default: <data dir>/index/<instance name>.sqlite)" },
	{ "fields", SINK_OPT_STR, "", C(fields), S(fields), 0, 0,
	  "the numeric fields to index, comma-separated (default: every top-level number of a JSON payload)" },
	{ "layout", SINK_OPT_STR, "", C(layout), S(layout), 0, 0,
	  "payloads are binary: name:type@offset, ... (types u8 i8 u16 i16 u32 i32 u64 i64 f32 f64, le or be)" },
	{ "retain_ms", SINK_OPT_INT, "0", C(retain_ms), 0, 0, INT64_MAX / 1000000,
	  "rows whose device time is older than this are removed (0: keep all)" },
	{ "max_fields", SINK_OPT_INT, "256", C(max_fields), 0, 1, 1000,
	  "distinct field names the index takes; later new names are not indexed (a warning says so)" },
	{ "cache_bytes", SINK_OPT_SIZE, "64M", C(cache_bytes), 0, 1 << 20, 1ll << 40, "SQLite page cache" },
};

struct index {
	sqlite3 *db;
	char path[512];
	const struct sink_env *env;
	sqlite3_stmt *ins_rec, *ins_dev, *ins_field, *sel_dev, *sel_field, *set_next;
	int dirty;                  /* batches committed since the last commit() */
	int rec_stale;              /* a field column came or went: ins_rec is made anew */
	int64_t bound[FIELDS_MAX];  /* the field ids the last record bound */
	int nbound;
	struct index_retainer *retainer;   /* retain_ms */
	struct idmap devs, fields, allow;
	struct layout layout;
	int have_layout, have_allow, warned_fields;
	int backfill;               /* rows below next_lsn too; next_lsn is the live instance's */
	int64_t max_fields;
	uint64_t next_lsn;          /* in the database, committed or not */
};

static int fail_db(struct index *x, const char *what, char err[SINK_ERR_LEN])
{
	snprintf(err, SINK_ERR_LEN, "%s: %s: %s", x->path, what, sqlite3_errmsg(x->db));
	return -EIO;
}

static int exec(struct index *x, const char *sql, char err[SINK_ERR_LEN])
{
	char *msg = NULL;
	if (sqlite3_exec(x->db, sql, NULL, NULL, &msg) == SQLITE_OK)
		return 0;
	snprintf(err, SINK_ERR_LEN, "%s: %s", x->path, msg ? msg : sqlite3_errmsg(x->db));
	sqlite3_free(msg);
	return -EIO;
}

static int prepare(struct index *x, const char *sql, sqlite3_stmt **st, char err[SINK_ERR_LEN])
{
	if (sqlite3_prepare_v3(x->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) == SQLITE_OK)
		return 0;
	return fail_db(x, sql, err);
}

/* The device and field dictionaries, as the database has them: at start,
 * and after a rolled-back batch whose new names the maps took. */
static int load_names(struct index *x, char err[SINK_ERR_LEN])
{
	static const char *const sql[2] = { "SELECT id, name FROM devices", "SELECT id, name FROM fields" };
	struct idmap *maps[2] = { &x->devs, &x->fields };
	for (int i = 0; i < 2; i++) {
		idmap_free(maps[i]);
		sqlite3_stmt *st;
		if (sqlite3_prepare_v2(x->db, sql[i], -1, &st, NULL) != SQLITE_OK)
			return fail_db(x, sql[i], err);
		int rc;
		while ((rc = sqlite3_step(st)) == SQLITE_ROW)
			if (idmap_put(maps[i], sqlite3_column_blob(st, 1), (size_t)sqlite3_column_bytes(st, 1),
				      sqlite3_column_int64(st, 0)) < 0) {
				sqlite3_finalize(st);
				snprintf(err, SINK_ERR_LEN, "%s: out of memory for the names", x->path);
				return -ENOMEM;
			}
		sqlite3_finalize(st);
		if (rc != SQLITE_DONE)
			return fail_db(x, sql[i], err);
	}
	return 0;
}

static int meta_u64(struct index *x, const char *key, uint64_t *ret, int *found, char err[SINK_ERR_LEN])
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(x->db, "SELECT value FROM meta WHERE key = ?1", -1, &st, NULL) != SQLITE_OK)
		return fail_db(x, "reading meta", err);
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	*found = rc == SQLITE_ROW;
	if (*found)
		*ret = (uint64_t)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : fail_db(x, "reading meta", err);
}

static int parse_allow(struct index *x, const char *s, char err[SINK_ERR_LEN])
{
	while (*s) {
		const char *c = strchr(s, ',');
		size_t len = c ? (size_t)(c - s) : strlen(s);
		const char *a = s;
		s += len + (c != NULL);
		while (len && (*a == ' ' || *a == '\t'))
			a++, len--;
		while (len && (a[len - 1] == ' ' || a[len - 1] == '\t'))
			len--;
		if (len == 0 || len > FIELD_NAME_MAX) {
			snprintf(err, SINK_ERR_LEN, "fields: a field name of 1 to %d bytes, comma-separated", FIELD_NAME_MAX);
			return -EINVAL;
		}
		if (idmap_get(&x->allow, a, len) < 0 && idmap_put(&x->allow, a, len, 1) < 0)
			return -ENOMEM;
	}
	x->have_allow = 1;
	return 0;
}

/* SQLite's memory statistics take a global mutex on every allocation;
 * nothing here reads them.  Only possible before SQLite initialises, so
 * once per process (a later call is SQLITE_MISUSE, and harmless). */
static void sqlite_once(void)
{
	sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

static int open_db(struct index *x, const struct index_cfg *cfg, const void *blob, size_t blob_len,
		   char err[SINK_ERR_LEN])
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, sqlite_once);
	char dir[sizeof(x->path)];
	snprintf(dir, sizeof(dir), "%s", x->path);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = 0;
		if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
			snprintf(err, SINK_ERR_LEN, "%s: cannot create the directory: %s", dir, strerror(errno));
			return -errno;
		}
	}
	if (sqlite3_open_v2(x->path, &x->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK)
		return fail_db(x, "cannot open", err);
	sqlite3_busy_timeout(x->db, 5000);
	char pragmas[160];
	snprintf(pragmas, sizeof(pragmas), "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; "
		 "PRAGMA cache_size = -%" PRIu64 ";", cfg->cache_bytes >> 10);
	int r;
	if ((r = exec(x, pragmas, err)) < 0 || (r = exec(x, "BEGIN IMMEDIATE", err)) < 0)
		return r;
	uint64_t schema = 0;
	int found = 0;
	/* a database of another schema is never written over */
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(x->db, "SELECT 1 FROM sqlite_master WHERE name = 'meta'", -1, &st, NULL) != SQLITE_OK)
		return fail_db(x, "reading the schema", err);
	int has_meta = sqlite3_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	if (has_meta && (r = meta_u64(x, "schema", &schema, &found, err)) < 0)
		return r;
	if (found && schema != INDEX_SCHEMA) {
		snprintf(err, SINK_ERR_LEN, "%s: an index of schema %" PRIu64 ", this sinkd writes schema %d; "
			 "move it away (a new one is built from the log)", x->path, schema, INDEX_SCHEMA);
		return -EINVAL;
	}
	if ((r = exec(x, INDEX_SCHEMA_SQL "INSERT OR IGNORE INTO meta VALUES('schema', " MI_STR(INDEX_SCHEMA) "), ('next_lsn', 0);", err)) < 0 ||
	    (r = meta_u64(x, "next_lsn", &x->next_lsn, &found, err)) < 0 || (r = exec(x, "COMMIT", err)) < 0)
		return r;
	if (blob_len == 12 && mi_get32(blob) == BLOB_MAGIC && mi_get64((const uint8_t *)blob + 4) > x->next_lsn)
		x->env->log(x->env, SINK_LOG_ERROR, "%s holds records below LSN %" PRIu64 " only, but LSN %" PRIu64
			    " was committed: the database was replaced or lost its end; the records between are "
			    "missing (sinkd --backfill %s --from-lsn %" PRIu64 " puts them back)", x->path, x->next_lsn,
			    mi_get64((const uint8_t *)blob + 4), x->env->name, x->next_lsn);
	if ((r = load_names(x, err)) < 0)
		return r;
	x->rec_stale = 1;
	if ((r = prepare(x, "INSERT OR IGNORE INTO devices(name) VALUES(?1)", &x->ins_dev, err)) < 0 ||
	    (r = prepare(x, "INSERT OR IGNORE INTO fields(name) VALUES(?1)", &x->ins_field, err)) < 0 ||
	    (r = prepare(x, "SELECT id FROM devices WHERE name = ?1", &x->sel_dev, err)) < 0 ||
	    (r = prepare(x, "SELECT id FROM fields WHERE name = ?1", &x->sel_field, err)) < 0 ||
	    (r = prepare(x, "UPDATE meta SET value = ?1 WHERE key = 'next_lsn'", &x->set_next, err)) < 0)
		return r;
	if (cfg->retain_ms && !x->backfill)
		return index_retain_start(&x->retainer, x->path, cfg->retain_ms, x->env, err);
	return 0;
}

static void index_exit(void *state)
{
	struct index *x = state;
	if (!x)
		return;
	index_retain_stop(x->retainer);
	sqlite3_stmt *sts[] = { x->ins_rec, x->ins_dev, x->ins_field, x->sel_dev, x->sel_field, x->set_next };
	for (size_t i = 0; i < sizeof(sts) / sizeof(sts[0]); i++)
		sqlite3_finalize(sts[i]);
	sqlite3_close(x->db);
	idmap_free(&x->devs);
	idmap_free(&x->fields);
	idmap_free(&x->allow);
	free(x);
}

static int index_init(void **state, const void *cfgp, const struct sink_env *env, const void *blob, size_t blob_len,
		      char err[SINK_ERR_LEN])
{
	const struct index_cfg *cfg = cfgp;
	struct index *x = calloc(1, sizeof(*x));
	if (!x) {
		snprintf(err, SINK_ERR_LEN, "out of memory");
		return -ENOMEM;
	}
	x->env = env;
	x->backfill = (env->flags & SINK_ENV_BACKFILL) != 0;
	x->max_fields = cfg->max_fields;
	if (cfg->path[0])
		snprintf(x->path, sizeof(x->path), "%s", cfg->path);
	else
		index_default_path(x->path, sizeof(x->path), env->data_dir, env->name);
	int r = 0;
	char why[SINK_ERR_LEN];
	if (cfg->layout[0] && layout_parse(cfg->layout, &x->layout, why, sizeof(why)) < 0) {
		snprintf(err, SINK_ERR_LEN, "layout: %s", why);
		r = -EINVAL;
	} else {
		x->have_layout = cfg->layout[0] != 0;
		if (cfg->fields[0])
			r = parse_allow(x, cfg->fields, err);
		if (r == 0)
			r = open_db(x, cfg, blob, blob_len, err);
	}
	if (r < 0) {
		index_exit(x);
		return r;
	}
	*state = x;
	return 0;
}

#define REC_PARAMS 7   /* a field's parameter in ins_rec: REC_PARAMS + its id */

/* The field columns as SQL: the insert's column list, its parameters (in
 * the same slot order), or the view's named columns. */
enum cols_as { COLS_INSERT, COLS_PARAMS, COLS_VIEW };

static int field_cols(struct index *x, char **ret, enum cols_as as)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return -1;
	for (size_t i = 0; i < x->fields.cap; i++) {
		const struct idmap_ent *e = x->fields.slot[i];
		if (!e)
			continue;
		if (as == COLS_INSERT) {
			fprintf(f, ", v%" PRId64, e->id);
			continue;
		}
		if (as == COLS_PARAMS) {
			fprintf(f, ", ?%" PRId64, REC_PARAMS + e->id);
			continue;
		}
		/* named as the field, quoted; a field named as a base column
		 * keeps its column name */
		static const char *const base[] = { "lsn", "device", "topic", "seq", "ts_ns", "srv_ns", "len" };
		int clash = 0;
		for (size_t b = 0; b < sizeof(base) / sizeof(base[0]); b++)
			clash |= !strcasecmp(e->name, base[b]);
		if (clash) {
			fprintf(f, ", r.v%" PRId64, e->id);
			continue;
		}
		fprintf(f, ", r.v%" PRId64 " AS \"", e->id);
		for (const char *c = e->name; *c; c++)
			fprintf(f, *c == '"' ? "\"\"" : "%c", *c);
		fputc('"', f);
	}
	if (fclose(f) != 0) {
		free(buf);
		return -1;
	}
	*ret = buf;
	return 0;
}

/* records_v, for the sqlite3 shell: names instead of ids, fields by name. */
static int make_view(struct index *x)
{
	char *cols;
	if (field_cols(x, &cols, COLS_VIEW) < 0)
		return -1;
	char *sql = sqlite3_mprintf("DROP VIEW IF EXISTS records_v; CREATE VIEW records_v AS SELECT r.lsn, d.name AS "
				    "device, r.topic, r.seq, r.ts_ns, r.srv_ns, r.len%s FROM records r JOIN devices d "
				    "ON d.id = r.device", cols);
	free(cols);
	int rc = sql ? sqlite3_exec(x->db, sql, NULL, NULL, NULL) : SQLITE_NOMEM;
	sqlite3_free(sql);
	return rc == SQLITE_OK ? 0 : -1;
}

static int prepare_insert(struct index *x)
{
	char *cols, *vals;
	if (field_cols(x, &cols, COLS_INSERT) < 0)
		return -1;
	if (field_cols(x, &vals, COLS_PARAMS) < 0) {
		free(cols);
		return -1;
	}
	char *sql = sqlite3_mprintf("INSERT OR IGNORE INTO records(lsn, device, topic, seq, ts_ns, srv_ns, len%s) "
				    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7%s)", cols, vals);
	free(cols);
	free(vals);
	sqlite3_finalize(x->ins_rec);
	x->ins_rec = NULL;
	int rc = sql ? sqlite3_prepare_v3(x->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &x->ins_rec, NULL) : SQLITE_NOMEM;
	sqlite3_free(sql);
	if (rc != SQLITE_OK)
		return -1;
	x->rec_stale = 0;
	x->nbound = 0;
	return 0;
}

/* The id of a device or field name, added to the database (inside the
 * batch's transaction) when new; -1 on failure, -2 for a field past
 * max_fields. */
static int64_t name_id(struct index *x, struct idmap *m, sqlite3_stmt *ins, const void *name, size_t len)
{
	int64_t id = idmap_get(m, name, len);
	if (id >= 0)
		return id;
	if (m == &x->fields && (int64_t)m->n >= x->max_fields) {
		if (!x->warned_fields)
			x->env->log(x->env, SINK_LOG_WARN, "%s: %" PRId64 " field names already (max_fields): "
				    "'%.*s' and later new ones are not indexed", x->path, x->max_fields, (int)len,
				    (const char *)name);
		x->warned_fields = 1;
		return -2;
	}
	sqlite3_bind_text(ins, 1, name, (int)len, SQLITE_STATIC);
	int rc = sqlite3_step(ins);
	sqlite3_reset(ins);
	if (rc != SQLITE_DONE)
		return -1;
	int added = sqlite3_changes(x->db) == 1;
	if (added) {
		id = sqlite3_last_insert_rowid(x->db);
	} else {
		/* another writer (a backfill) added it: its column too */
		sqlite3_stmt *sel = m == &x->fields ? x->sel_field : x->sel_dev;
		sqlite3_bind_text(sel, 1, name, (int)len, SQLITE_STATIC);
		rc = sqlite3_step(sel);
		id = rc == SQLITE_ROW ? sqlite3_column_int64(sel, 0) : -1;
		sqlite3_reset(sel);
		if (id < 0)
			return -1;
	}
	if (idmap_put(m, name, len, id) < 0)
		return -1;
	if (m == &x->fields) {
		char sql[96];
		snprintf(sql, sizeof(sql), "ALTER TABLE records ADD COLUMN v%" PRId64 " REAL", id);
		if ((added && sqlite3_exec(x->db, sql, NULL, NULL, NULL) != SQLITE_OK) || make_view(x) < 0)
			return -1;
		x->rec_stale = 1;
	}
	return id;
}

static int add_record(struct index *x, const struct sink_record *rec)
{
	size_t id_len, plen;
	const uint8_t *id = sink_rec_device(rec, &id_len), *payload = sink_rec_payload(rec, &plen);
	int64_t dev = name_id(x, &x->devs, x->ins_dev, id, id_len);
	if (dev < 0)
		return -1;
	/* the fields first: a new one adds its column, and the insert with it */
	struct field_val fv[FIELDS_MAX];
	int64_t fid[FIELDS_MAX];
	int n = x->have_layout ? fields_layout(&x->layout, payload, plen, fv) : fields_json(payload, plen, fv), k = 0;
	for (int i = 0; i < n; i++) {
		if (x->have_allow && idmap_get(&x->allow, fv[i].name, fv[i].name_len) < 0)
			continue;
		int64_t f = name_id(x, &x->fields, x->ins_field, fv[i].name, fv[i].name_len);
		if (f == -2)
			continue;
		if (f < 0)
			return -1;
		fid[k] = f;
		fv[k++].value = fv[i].value;
	}
	if (x->rec_stale && prepare_insert(x) < 0)
		return -1;
	sqlite3_stmt *st = x->ins_rec;
	sqlite3_bind_int64(st, 1, (int64_t)sink_rec_lsn(rec));
	sqlite3_bind_int64(st, 2, dev);
	sqlite3_bind_int(st, 3, sink_rec_topic(rec));
	sqlite3_bind_int64(st, 4, (int64_t)sink_rec_seq(rec));
	sqlite3_bind_int64(st, 5, (int64_t)sink_rec_device_time(rec));
	sqlite3_bind_int64(st, 6, (int64_t)sink_rec_server_time(rec));
	sqlite3_bind_int64(st, 7, (int64_t)plen);
	/* NULL for the fields the last record had, not every column */
	for (int i = 0; i < x->nbound; i++)
		sqlite3_bind_null(st, (int)(REC_PARAMS + x->bound[i]));
	for (int i = 0; i < k; i++)
		sqlite3_bind_double(st, (int)(REC_PARAMS + fid[i]), fv[i].value);
	memcpy(x->bound, fid, (size_t)k * sizeof(fid[0]));
	x->nbound = k;
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

static enum sink_rc rollback(struct index *x, const char *what, char err[SINK_ERR_LEN])
{
	fail_db(x, what, err);
	sqlite3_exec(x->db, "ROLLBACK", NULL, NULL, NULL);
	char e2[SINK_ERR_LEN];
	x->rec_stale = 1;   /* columns the batch added are gone */
	if (load_names(x, e2) < 0)
		return SINK_FATAL;   /* the names cannot be trusted against the database */
	return SINK_RETRY;
}

static enum sink_rc index_deliver(void *state, const struct sink_record *recs, size_t n, uint32_t *retry_ms,
				  char err[SINK_ERR_LEN])
{
	struct index *x = state;
	(void)retry_ms;
	size_t i = 0;
	while (!x->backfill && i < n && sink_rec_lsn(&recs[i]) < x->next_lsn)
		i++;
	if (i == n)
		return SINK_OK;
	if (exec(x, "BEGIN", err) < 0)
		return SINK_RETRY;
	for (; i < n; i++)
		if (add_record(x, &recs[i]) < 0)
			return rollback(x, "adding a record", err);
	uint64_t next = sink_rec_lsn(&recs[n - 1]) + 1;
	int rc = SQLITE_DONE;
	if (!x->backfill && next > x->next_lsn) {   /* a backfill's batches are below it */
		sqlite3_bind_int64(x->set_next, 1, (int64_t)next);
		rc = sqlite3_step(x->set_next);
		sqlite3_reset(x->set_next);
	}
	if (rc != SQLITE_DONE || sqlite3_exec(x->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		return rollback(x, "committing a batch", err);
	if (!x->backfill && next > x->next_lsn)
		x->next_lsn = next;
	x->dirty = 1;
	return SINK_OK;
}

static enum sink_rc index_commit(void *state, struct sink_commit *c, uint32_t *retry_ms, char err[SINK_ERR_LEN])
{
	struct index *x = state;
	(void)retry_ms;
	int r;
	if (x->dirty) {
		/* a FULL transaction syncs the WAL file: every batch before it */
		r = exec(x, "PRAGMA synchronous = FULL", err);
		if (r == 0 && (r = exec(x, "BEGIN IMMEDIATE; INSERT OR REPLACE INTO meta VALUES('synced_ms', "
				       "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)); COMMIT", err)) < 0)
			sqlite3_exec(x->db, "ROLLBACK", NULL, NULL, NULL);
		/* on its own: NORMAL again whatever failed before */
		char e2[SINK_ERR_LEN];
		int r2 = exec(x, "PRAGMA synchronous = NORMAL", r < 0 ? e2 : err);
		if (r < 0 || r2 < 0)
			return SINK_RETRY;
		x->dirty = 0;
	}
	uint8_t *b = malloc(12);
	if (!b) {
		snprintf(err, SINK_ERR_LEN, "%s: out of memory for the resume state", x->path);
		return SINK_RETRY;
	}
	mi_put32(b, BLOB_MAGIC);
	mi_put64(b + 4, x->next_lsn);   /* synced just above, or by an earlier commit */
	c->blob = b;
	c->blob_len = 12;
	return SINK_OK;
}

const struct sink_desc sink_index = {
	.abi = SINK_ABI_VERSION,
	.name = "index",
	.description = "every record as a row of an SQLite database, with its payload's numeric fields (mi-query)",
	.opts = index_opts,
	.nopts = sizeof(index_opts) / sizeof(index_opts[0]),
	.cfg_size = sizeof(struct index_cfg),
	.init = index_init,
	.deliver = index_deliver,
	.commit = index_commit,
	.exit = index_exit,
};
