/* cloud_obj — what the cloud sink uploads: one object per batch of one
 * topic, gzip'd NDJSON, one line per record, under a key made from a
 * template.
 *
 *   {"lsn":81920,"device":"pump-7","topic":1,"topic_name":"telemetry",
 *    "seq":42,"ts_ns":...,"srv_ns":...,"payload":"{\"t\":21.5}"}
 *
 * "topic_name" only when the topic has a [topics] name; a device id or
 * payload that is not valid UTF-8 is "device_b64" / "payload_b64"
 * (standard base64) instead.  The key template's placeholders:
 *
 *   {topic}     the [topics] name, else the id     {topic_id}  the id
 *   {date}      YYYY-MM-DD  } of the batch's first  {hour}      HH
 *   {first_lsn} {last_lsn}  the LSNs of its first and last records
 *   {name}      the instance name
 *
 * Date and hour are the first record's server time, UTC.  A template must
 * hold {first_lsn}: it is what makes two objects' keys differ.
 */
#ifndef MI_CLOUD_OBJ_H
#define MI_CLOUD_OBJ_H
#include <stddef.h>
#include <stdint.h>

#include "sinkd/sink.h"

#define CLOUD_KEY_MAX 1024

struct cbuf {
	uint8_t *p;
	size_t len, cap;
};

/* Room for `more` bytes past len: 0, or -ENOMEM (b unchanged). */
int cbuf_reserve(struct cbuf *b, size_t more);
void cbuf_free(struct cbuf *b);

/* Appends r's line ('\n' included).  Returns 0 or -ENOMEM (b unchanged). */
int cloud_line(struct cbuf *b, const struct sink_record *r, const char *topic_name);

/* Checks a key template: 0, or -EINVAL with err naming what is wrong. */
int cloud_key_check(const char *tmpl, char err[SINK_ERR_LEN]);

struct cloud_key_args {
	const char *name;           /* the instance */
	const char *topic_name;     /* NULL: none */
	uint16_t topic;
	uint64_t first_lsn, last_lsn, srv_ns;
};

/* The key, NUL-terminated in out (CLOUD_KEY_MAX).  Returns its length, or
 * -ENAMETOOLONG. */
int cloud_key(const char *tmpl, const struct cloud_key_args *a, char out[CLOUD_KEY_MAX]);

/* gzip of in into out (replaced), with z a stream kept between calls (NULL
 * at first; cloud_gzip_free ends it).  Returns 0, -ENOMEM or -EIO. */
int cloud_gzip(void **z, int level, const uint8_t *in, size_t n, struct cbuf *out);
void cloud_gzip_free(void **z);
#endif
