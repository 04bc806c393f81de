/* ndjson — the original sample client's line format.
 *
 * One JSON object per line: {"source": "...", "data": "...",
 * "timestamp": "<RFC 3339>", "checksum": "<hex SHA-256 of data>"?}.
 * Stored under `source` as the device, with the next seq after the
 * device's last accepted one; no acks.  A bad line gets an error line back
 * ({"error": "line N: ..."}) and nothing else happens to the connection.
 */
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "common/clock.h"
#include "ingestd/ingestd.h"
#include "shm/atomic.h"
#include "shm/devtab.h"

/* Returns -1 when answering closed the connection. */
static int line_error(struct worker *w, struct conn *c, const char *what)
{
	char buf[256];
	shm_count(&w->ctr[IC_NDJSON_ERRORS], 1);
	int n = snprintf(buf, sizeof(buf), "{\"error\":\"line %u: %s\"}\n", c->ndjson_lineno, what);
	return conn_send(w, c, buf, (size_t)n);
}

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Returns 0, or -1 when the connection closed. */
static int one_line(struct worker *w, struct conn *c, const uint8_t *line, size_t len)
{
	c->ndjson_lineno++;
	while (len && (line[len - 1] == '\r' || line[len - 1] == ' '))
		len--;
	if (!len)
		return 0;
	shm_count(&w->ctr[IC_NDJSON_LINES], 1);
	json_error_t jerr;
	json_t *o = json_loadb((const char *)line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!o || !json_is_object(o)) {
		json_decref(o);
		return line_error(w, c, o ? "not a JSON object" : "not valid JSON");
	}
	const char *src = json_string_value(json_object_get(o, "source"));
	json_t *jdata = json_object_get(o, "data");
	const char *data = json_string_value(jdata);
	const char *ts = json_string_value(json_object_get(o, "timestamp"));
	json_t *jsum = json_object_get(o, "checksum");
	uint64_t ts_ns = 0;
	int rc = 0;
	size_t dlen = data ? json_string_length(jdata) : 0;
	int slot;
	if (!src || !mi_devid_valid((const uint8_t *)src, strlen(src))) {
		rc = line_error(w, c, "\\\"source\\\" must be a device id (1-64 of [A-Za-z0-9._:-])");
		goto out;
	}
	if (!data) {
		rc = line_error(w, c, "\\\"data\\\" must be a string");
		goto out;
	}
	if (!ts || clock_parse_rfc3339(ts, &ts_ns) < 0) {
		rc = line_error(w, c, "\\\"timestamp\\\" must be an RFC 3339 time");
		goto out;
	}
	if (dlen > w->s->max_frame) {
		rc = line_error(w, c, "\\\"data\\\" is larger than max_frame");
		goto out;
	}
	if (jsum && !json_is_null(jsum)) {
		const char *hex = json_string_value(jsum);
		uint8_t want[crypto_hash_sha256_BYTES], got[crypto_hash_sha256_BYTES];
		if (!hex || strlen(hex) != 2 * sizeof(want)) {
			rc = line_error(w, c, "\\\"checksum\\\" must be 64 hex digits (SHA-256 of data)");
			goto out;
		}
		for (size_t i = 0; i < sizeof(want); i++) {
			int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
			if (hi < 0 || lo < 0) {
				rc = line_error(w, c, "\\\"checksum\\\" must be 64 hex digits (SHA-256 of data)");
				goto out;
			}
			want[i] = (uint8_t)(hi << 4 | lo);
		}
		crypto_hash_sha256(got, (const uint8_t *)data, dlen);
		if (memcmp(want, got, sizeof(got))) {
			rc = line_error(w, c, "checksum does not match data");
			goto out;
		}
	}
	slot = devtab_insert(w->ctl, (const uint8_t *)src, (uint8_t)strlen(src));
	if (slot < 0) {
		rc = line_error(w, c, "device table full");
		goto out;
	}
	struct shm_dev *d = shm_dev(w->ctl, (uint32_t)slot);
	if (session_store(w, slot, 0, d->last_accepted + 1, ts_ns, data, (uint32_t)dlen,
			  mi_crc32(data, dlen)) < 0)
		rc = line_error(w, c, "server overloaded (ring full); line dropped");
out:
	json_decref(o);
	return rc;
}

int ndjson_feed(struct worker *w, struct conn *c, const uint8_t *buf, size_t len)
{
	/* JSON escapes at most double the data, plus the other fields */
	uint32_t max_line = (uint32_t)w->s->max_frame * 2 + 4096;
	while (len) {
		const uint8_t *nl = memchr(buf, '\n', len);
		size_t take = nl ? (size_t)(nl - buf) : len;
		if (c->line_len == 0 && nl) {
			/* whole line in the read buffer: no copy */
			if (one_line(w, c, buf, take) < 0)
				return -1;
		} else {
			if (c->line_len + take > max_line) {
				if (line_error(w, c, "line longer than the limit") < 0)
					return -1;
				conn_close(w, c, "NDJSON line over the length limit");
				return -1;
			}
			if (pool_grow(w->pool, &c->line, &c->line_cap, c->line_len, c->line_len + (uint32_t)take) < 0) {
				conn_close(w, c, "out of memory for an NDJSON line");
				return -1;
			}
			memcpy(c->line + c->line_len, buf, take);
			c->line_len += (uint32_t)take;
			if (nl) {
				int r = one_line(w, c, c->line, c->line_len);
				if (r < 0)
					return -1;   /* closed: conn_close gave the line back, c is freed */
				pool_put(w->pool, c->line, c->line_cap);
				c->line = NULL;
				c->line_len = c->line_cap = 0;
				if (r < 0)
					return -1;
			}
		}
		if (!nl)
			break;
		buf += take + 1;
		len -= take + 1;
	}
	return 0;
}
