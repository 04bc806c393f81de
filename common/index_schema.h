/* index_schema — the index sink's SQLite database, as the sink writes it
 * and mi-query reads it (docs/FORMATS.md describes it for other readers).
 *
 *   meta(key, value)            'schema' = INDEX_SCHEMA, 'next_lsn': every
 *                               record below it is indexed (updated in the
 *                               transaction of its rows)
 *   devices(id, name)           the device ids seen, as text
 *   fields(id, name)            the numeric field names seen; field id N is
 *                               column vN of records
 *   records(lsn PRIMARY KEY, device, topic, seq, ts_ns, srv_ns, len, v1, v2, ...)
 *                               one row per record, its fields' values in
 *                               their columns (NULL: the record lacks it);
 *                               seq stored as the signed 64-bit integer of
 *                               the same bits
 * Indexes: records(device, ts_ns), records(ts_ns), records(srv_ns), so a
 * range of one device's time, of everyone's, or of server time is a seek,
 * and a field's values over a range are read from the rows it finds.  The
 * view records_v joins in device names and names the field columns.
 * A field is a column and not a row of its own so that a record is one
 * insert: a row per value made indexing three times slower.
 */
#ifndef MI_INDEX_SCHEMA_H
#define MI_INDEX_SCHEMA_H
#include <stdio.h>

#define INDEX_SCHEMA 1

#define INDEX_SCHEMA_SQL                                                                                   \
	"CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;"                      \
	"CREATE TABLE IF NOT EXISTS devices(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);"           \
	"CREATE TABLE IF NOT EXISTS fields(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);"            \
	"CREATE TABLE IF NOT EXISTS records(lsn INTEGER PRIMARY KEY, device INTEGER NOT NULL,"             \
	" topic INTEGER NOT NULL, seq INTEGER NOT NULL, ts_ns INTEGER NOT NULL, srv_ns INTEGER NOT NULL,"  \
	" len INTEGER NOT NULL);"                                                                          \
	"CREATE INDEX IF NOT EXISTS records_device_ts ON records(device, ts_ns);"                          \
	"CREATE INDEX IF NOT EXISTS records_ts ON records(ts_ns);"                                         \
	"CREATE INDEX IF NOT EXISTS records_srv ON records(srv_ns);"                                       \
	"CREATE VIEW IF NOT EXISTS records_v AS SELECT r.lsn, d.name AS device, r.topic, r.seq, r.ts_ns,"  \
	" r.srv_ns, r.len FROM records r JOIN devices d ON d.id = r.device;"

/* [sink.NAME] path's default. */
static inline void index_default_path(char *buf, size_t len, const char *data_dir, const char *name)
{
	snprintf(buf, len, "%s/index/%s.sqlite", data_dir, name);
}
#endif
