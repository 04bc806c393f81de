#include "sinkd/cloud_obj.h"

#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "common/fields.h"
#include "common/jsonw.h"

int cbuf_reserve(struct cbuf *b, size_t more)
{
	if (b->cap - b->len >= more)
		return 0;
	size_t cap = b->cap ? b->cap : 4096;
	while (cap - b->len < more)
		cap *= 2;
	uint8_t *p = realloc(b->p, cap);
	if (!p)
		return -ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

void cbuf_free(struct cbuf *b)
{
	free(b->p);
	*b = (struct cbuf){ 0 };
}

/* The lines are the sink's hot path: no printf. */
static char *put_str(char *o, const char *s)
{
	size_t n = strlen(s);
	memcpy(o, s, n);
	return o + n;
}

static char *put_u64(char *o, uint64_t v)
{
	char d[20];
	int n = 0;
	do
		d[n++] = (char)('0' + v % 10);
	while ((v /= 10));
	while (n)
		*o++ = d[--n];
	return o;
}

/* "key":"text" or "key_b64":"base64", by whether the bytes are UTF-8. */
static char *text_or_b64(char *o, const char *key, const uint8_t *p, size_t n)
{
	*o++ = ',';
	*o++ = '"';
	o = put_str(o, key);
	if (utf8_valid(p, n)) {
		o = put_str(o, "\":\"");
		o += jsonw_escape(o, p, n);
	} else {
		o = put_str(o, "_b64\":\"");
		sodium_bin2base64(o, sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL), p, n,
				  sodium_base64_VARIANT_ORIGINAL);
		o += strlen(o);
	}
	*o++ = '"';
	return o;
}

int cloud_line(struct cbuf *b, const struct sink_record *r, const char *topic_name)
{
	size_t dlen, plen;
	const uint8_t *dev = sink_rec_device(r, &dlen), *pl = sink_rec_payload(r, &plen);
	size_t tn = topic_name ? strlen(topic_name) : 0;
	/* numbers and names, then each value escaped at worst (base64 is less) */
	size_t max = 192 + JSONW_ESC_MAX(tn) + JSONW_ESC_MAX(dlen) + JSONW_ESC_MAX(plen);
	if (cbuf_reserve(b, max) < 0)
		return -ENOMEM;
	char *start = (char *)b->p + b->len, *o = start;
	o = put_u64(put_str(o, "{\"lsn\":"), sink_rec_lsn(r));
	o = text_or_b64(o, "device", dev, dlen);
	o = put_u64(put_str(o, ",\"topic\":"), sink_rec_topic(r));
	if (topic_name) {
		o = put_str(o, ",\"topic_name\":\"");
		o += jsonw_escape(o, (const uint8_t *)topic_name, tn);
		*o++ = '"';
	}
	o = put_u64(put_str(o, ",\"seq\":"), sink_rec_seq(r));
	o = put_u64(put_str(o, ",\"ts_ns\":"), sink_rec_device_time(r));
	o = put_u64(put_str(o, ",\"srv_ns\":"), sink_rec_server_time(r));
	o = text_or_b64(o, "payload", pl, plen);
	*o++ = '}';
	*o++ = '\n';
	b->len += (size_t)(o - start);
	return 0;
}

static const char *const placeholders[] = { "topic", "topic_id", "date", "hour", "first_lsn", "last_lsn", "name" };
enum { PH_TOPIC, PH_TOPIC_ID, PH_DATE, PH_HOUR, PH_FIRST, PH_LAST, PH_NAME, PH_N };

/* The placeholder at s ("{...}"): its index, or -1; *len its length. */
static int placeholder(const char *s, size_t *len)
{
	const char *e = strchr(s, '}');
	if (!e)
		return -1;
	*len = (size_t)(e - s) + 1;
	for (int i = 0; i < PH_N; i++)
		if (strlen(placeholders[i]) == *len - 2 && !strncmp(s + 1, placeholders[i], *len - 2))
			return i;
	return -1;
}

int cloud_key_check(const char *tmpl, char err[SINK_ERR_LEN])
{
	int first = 0;
	if (!*tmpl || *tmpl == '/') {
		snprintf(err, SINK_ERR_LEN, "key = \"%.100s\": %s", tmpl,
			 *tmpl ? "a key does not start with '/'" : "empty");
		return -EINVAL;
	}
	for (const char *s = tmpl; *s; s++) {
		size_t len;
		int ph;
		if (*s == '}') {
			snprintf(err, SINK_ERR_LEN, "key = \"%.100s\": a '}' without its '{'", tmpl);
			return -EINVAL;
		}
		if (*s != '{')
			continue;
		if ((ph = placeholder(s, &len)) < 0) {
			snprintf(err, SINK_ERR_LEN, "key = \"%.100s\": unknown placeholder %.*s (known: {topic}, "
				 "{topic_id}, {date}, {hour}, {first_lsn}, {last_lsn}, {name})", tmpl,
				 strchr(s, '}') ? (int)len : 20, s);
			return -EINVAL;
		}
		first |= ph == PH_FIRST;
		s += len - 1;
	}
	if (!first) {
		snprintf(err, SINK_ERR_LEN, "key = \"%.100s\": has no {first_lsn}, so two batches could get one key "
			 "and the second would replace the first", tmpl);
		return -EINVAL;
	}
	return 0;
}

int cloud_key(const char *tmpl, const struct cloud_key_args *a, char out[CLOUD_KEY_MAX])
{
	time_t t = (time_t)(a->srv_ns / 1000000000u);
	struct tm tm;
	gmtime_r(&t, &tm);
	size_t n = 0;
	for (const char *s = tmpl; *s; s++) {
		char v[64];
		const char *put = v;
		size_t len;
		int ph = *s == '{' ? placeholder(s, &len) : -1;
		if (ph < 0) {
			v[0] = *s;
			v[1] = 0;
		} else {
			s += len - 1;
			switch (ph) {
			case PH_TOPIC:
				if (a->topic_name) {
					put = a->topic_name;
					break;
				}
				/* fall through */
			case PH_TOPIC_ID:
				snprintf(v, sizeof(v), "%u", a->topic);
				break;
			case PH_DATE:
				strftime(v, sizeof(v), "%Y-%m-%d", &tm);
				break;
			case PH_HOUR:
				strftime(v, sizeof(v), "%H", &tm);
				break;
			case PH_FIRST:
				snprintf(v, sizeof(v), "%" PRIu64, a->first_lsn);
				break;
			case PH_LAST:
				snprintf(v, sizeof(v), "%" PRIu64, a->last_lsn);
				break;
			default:
				put = a->name;
			}
		}
		size_t l = strlen(put);
		if (n + l >= CLOUD_KEY_MAX)
			return -ENAMETOOLONG;
		memcpy(out + n, put, l);
		n += l;
	}
	out[n] = 0;
	return (int)n;
}

int cloud_gzip(void **zp, int level, const uint8_t *in, size_t n, struct cbuf *out)
{
	z_stream *z = *zp;
	if (!z) {
		if (!(z = calloc(1, sizeof(*z))))
			return -ENOMEM;
		/* 15 + 16: a gzip header and trailer around the deflate stream */
		if (deflateInit2(z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
			free(z);
			return -ENOMEM;
		}
		*zp = z;
	} else if (deflateReset(z) != Z_OK) {
		return -EIO;
	}
	size_t bound = deflateBound(z, (uLong)n);
	out->len = 0;
	if (cbuf_reserve(out, bound) < 0)
		return -ENOMEM;
	z->next_in = (Bytef *)(uintptr_t)in;
	z->avail_in = (uInt)n;
	z->next_out = out->p;
	z->avail_out = (uInt)bound;
	if (deflate(z, Z_FINISH) != Z_STREAM_END)
		return -EIO;
	out->len = bound - z->avail_out;
	return 0;
}

void cloud_gzip_free(void **zp)
{
	if (*zp) {
		deflateEnd(*zp);
		free(*zp);
		*zp = NULL;
	}
}
