/* query_out — mi-query's rows on stdout, as a table, NDJSON or CSV.
 *
 * A record row carries its payload (from the log) or says it was retired;
 * a latest row adds each field's last value; a bucket row is one field's
 * aggregate for one device over [bucket, bucket + width).  Text payloads
 * (valid UTF-8) go out as text, others as base64 (payload_b64).
 */
#ifndef MI_QUERY_OUT_H
#define MI_QUERY_OUT_H
#include <stddef.h>
#include <stdint.h>

enum qfmt { QFMT_TABLE, QFMT_NDJSON, QFMT_CSV };

struct qrec {
	const char *device;
	uint16_t topic;
	uint64_t seq, ts_ns, srv_ns, lsn;
	uint32_t len;
	const uint8_t *payload;   /* NULL: not in the log any more */
	const char *missing;      /* why not (payload NULL) */
};

struct qfield {
	const char *name;
	double value;
	uint64_t ts_ns;
};

struct qbucket {
	uint64_t start;
	const char *device, *field;
	uint64_t count;
	double min, max, sum, first, last;
};

/* Parses "table", "ndjson" or "csv"; -1 for anything else. */
int qfmt_parse(const char *s, enum qfmt *ret);
/* Each kind of row: header once (table, CSV) before the first row. */
void out_record(enum qfmt f, const struct qrec *r);
void out_latest(enum qfmt f, const struct qrec *r, const struct qfield *fields, size_t n);
void out_bucket(enum qfmt f, const struct qbucket *b);
#endif
