#include "run/query_out.h"

#include <inttypes.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/fields.h"
#include "common/jsonw.h"

static int header_done;
static FILE *o;   /* stdout, or a memory stream while a nested value is built */

static void fputc_(int c)
{
	fputc(c, o);
}

static void line(const char *s)
{
	fputs(s, o);
	fputc('\n', o);
}

int qfmt_parse(const char *s, enum qfmt *ret)
{
	static const char *const names[] = { "table", "ndjson", "csv" };
	for (int i = 0; i < 3; i++)
		if (!strcmp(s, names[i])) {
			*ret = (enum qfmt)i;
			return 0;
		}
	return -1;
}

static void json_str(const uint8_t *p, size_t n)
{
	char b[JSONW_ESC_MAX(512)];
	fputc_('"');
	for (size_t i = 0; i < n; i += 512)
		fwrite(b, 1, jsonw_escape(b, p + i, n - i < 512 ? n - i : 512), o);
	fputc_('"');
}

static void json_cstr(const char *s)
{
	json_str((const uint8_t *)s, strlen(s));
}

static void csv_field(const uint8_t *p, size_t n)
{
	int quote = 0;
	for (size_t i = 0; i < n && !quote; i++)
		quote = p[i] == ',' || p[i] == '"' || p[i] == '\n' || p[i] == '\r';
	if (!quote) {
		fwrite(p, 1, n, o);
		return;
	}
	fputc_('"');
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '"')
			fputc_('"');
		fputc_(p[i]);
	}
	fputc_('"');
}

static void csv_cstr(const char *s)
{
	csv_field((const uint8_t *)s, strlen(s));
}

/* A number as JSON and CSV spell it: shortest form that reads back equal;
 * JSON has no NaN or infinity, so those are null. */
static void num(double v)
{
	if (!isfinite(v)) {
		fputs("null", o);
		return;
	}
	char b[40];
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(b, sizeof(b), "%.*g", prec, v);
		if (strtod(b, NULL) == v)
			break;
	}
	fputs(b, o);
}

static void b64(const uint8_t *p, size_t n, int json)
{
	size_t len = sodium_base64_encoded_len(n, sodium_base64_VARIANT_ORIGINAL);
	char *s = malloc(len);
	if (!s) {
		fputs(json ? "null" : "", o);
		return;
	}
	sodium_bin2base64(s, len, p, n, sodium_base64_VARIANT_ORIGINAL);
	if (json)
		json_cstr(s);
	else
		fputs(s, o);
	free(s);
}

/* The table's payload column: printable ASCII, the rest as '.', cut. */
static void shown(const uint8_t *p, size_t n)
{
	size_t max = 60;
	for (size_t i = 0; i < n && i < max; i++)
		fputc_(p[i] >= 0x20 && p[i] < 0x7f ? p[i] : '.');
	if (n > max)
		fputs("...", o);
}

static void rec_json(const struct qrec *r)
{
	char t[40];
	fputs("{\"device\":", o);
	json_cstr(r->device);
	clock_format_rfc3339(r->ts_ns, t, sizeof(t));
	fprintf(o, ",\"topic\":%u,\"seq\":%" PRIu64 ",\"ts_ns\":%" PRIu64 ",\"srv_ns\":%" PRIu64 ",\"lsn\":%" PRIu64
	       ",\"time\":\"%s\",\"len\":%u,", r->topic, r->seq, r->ts_ns, r->srv_ns, r->lsn, t, r->len);
	if (!r->payload) {
		fputs("\"payload\":null,\"payload_retired\":", o);
		json_cstr(r->missing);
	} else if (utf8_valid(r->payload, r->len)) {
		fputs("\"payload\":", o);
		json_str(r->payload, r->len);
	} else {
		fputs("\"payload_b64\":", o);
		b64(r->payload, r->len, 1);
	}
}

static void rec_csv(const struct qrec *r)
{
	char t[40];
	csv_cstr(r->device);
	clock_format_rfc3339(r->ts_ns, t, sizeof(t));
	fprintf(o, ",%u,%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%s,%u,", r->topic, r->seq, r->ts_ns, r->srv_ns,
	       r->lsn, t, r->len);
	if (!r->payload) {
		fputs(",,", o);
		csv_cstr(r->missing);
	} else if (utf8_valid(r->payload, r->len)) {
		csv_field(r->payload, r->len);
		fputs(",,", o);
	} else {
		fputc_(',');
		b64(r->payload, r->len, 0);
		fputc_(',');
	}
}

#define CSV_REC_HDR "device,topic,seq,ts_ns,srv_ns,lsn,time,len,payload,payload_b64,payload_retired"

static void rec_table(const struct qrec *r)
{
	char t[40];
	clock_format_rfc3339(r->ts_ns, t, sizeof(t));
	fprintf(o, "%-30s  %-20s  %5u  %10" PRIu64 "  %14" PRIu64 "  ", t, r->device, r->topic, r->seq, r->lsn);
	if (r->payload)
		shown(r->payload, r->len);
	else
		fprintf(o, "(%s)", r->missing);
}

#define TABLE_REC_HDR "TIME                            DEVICE                TOPIC         SEQ             LSN  PAYLOAD"

void out_record(enum qfmt f, const struct qrec *r)
{
	if (!o)
		o = stdout;
	if (!header_done && f != QFMT_NDJSON)
		line(f == QFMT_CSV ? CSV_REC_HDR : TABLE_REC_HDR);
	header_done = 1;
	if (f == QFMT_NDJSON) {
		rec_json(r);
		line("}");
	} else if (f == QFMT_CSV) {
		rec_csv(r);
		fputc_('\n');
	} else {
		rec_table(r);
		fputc_('\n');
	}
}

void out_latest(enum qfmt f, const struct qrec *r, const struct qfield *fields, size_t n)
{
	if (!o)
		o = stdout;
	if (!header_done && f != QFMT_NDJSON)
		line(f == QFMT_CSV ? CSV_REC_HDR ",fields" : TABLE_REC_HDR);
	header_done = 1;
	if (f == QFMT_TABLE) {
		rec_table(r);
		fputc_('\n');
		for (size_t i = 0; i < n; i++) {
			char t[40];
			clock_format_rfc3339(fields[i].ts_ns, t, sizeof(t));
			fprintf(o, "    %-26s  %-20s  ", t, fields[i].name);
			num(fields[i].value);
			fputc_('\n');
		}
		return;
	}
	if (f == QFMT_NDJSON)
		rec_json(r);
	else
		rec_csv(r);
	/* the fields as one JSON object: {"name": {"value": v, "ts_ns": t}} */
	char *buf = NULL;
	size_t blen = 0;
	FILE *keep = o;
	FILE *m = open_memstream(&buf, &blen);
	if (m) {   /* else "fields":{}, rather than the object spilt into the row */
		o = m;
		fputc_('{');
		for (size_t i = 0; i < n; i++) {
			if (i)
				fputc_(',');
			json_cstr(fields[i].name);
			fputs(":{\"value\":", o);
			num(fields[i].value);
			fprintf(o, ",\"ts_ns\":%" PRIu64 "}", fields[i].ts_ns);
		}
		fputc_('}');
	}
	o = keep;
	if (m)
		fclose(m);
	if (f == QFMT_NDJSON) {
		fprintf(o, ",\"fields\":%s}\n", buf ? buf : "{}");
	} else {
		fputc_(',');
		csv_cstr(buf ? buf : "{}");
		fputc_('\n');
	}
	free(buf);
}

void out_bucket(enum qfmt f, const struct qbucket *b)
{
	if (!o)
		o = stdout;
	char t[40];
	clock_format_rfc3339(b->start, t, sizeof(t));
	double avg = b->sum / (double)b->count;
	if (f == QFMT_TABLE) {
		if (!header_done)
			line("BUCKET                          DEVICE                FIELD             COUNT  MIN / MAX / AVG / "
			     "FIRST / LAST");
		header_done = 1;
		fprintf(o, "%-30s  %-20s  %-14s  %8" PRIu64 "  ", t, b->device, b->field, b->count);
		double v[5] = { b->min, b->max, avg, b->first, b->last };
		for (int i = 0; i < 5; i++) {
			if (i)
				fputs(" / ", o);
			num(v[i]);
		}
		fputc_('\n');
		return;
	}
	if (f == QFMT_CSV) {
		if (!header_done)
			line("bucket,device,field,count,min,max,avg,first,last");
		header_done = 1;
		fprintf(o, "%s,", t);
		csv_cstr(b->device);
		fputc_(',');
		csv_cstr(b->field);
		fprintf(o, ",%" PRIu64, b->count);
	} else {
		fprintf(o, "{\"bucket\":\"%s\",\"device\":", t);
		json_cstr(b->device);
		fputs(",\"field\":", o);
		json_cstr(b->field);
		fprintf(o, ",\"count\":%" PRIu64, b->count);
	}
	static const char *const names[5] = { "min", "max", "avg", "first", "last" };
	double v[5] = { b->min, b->max, avg, b->first, b->last };
	for (int i = 0; i < 5; i++) {
		if (f == QFMT_CSV)
			fputc_(',');
		else
			fprintf(o, ",\"%s\":", names[i]);
		num(v[i]);
	}
	line(f == QFMT_CSV ? "" : "}");
}
