/* s3put — one object PUT to an S3-compatible store, signed with AWS
 * Signature V4 by libcurl itself (CURLOPT_AWS_SIGV4), over one kept-alive
 * connection.
 *
 * Every request carries the body's real SHA-256 (x-amz-content-sha256:
 * curl 7.88 does not add it, and UNSIGNED-PAYLOAD would leave the body
 * unchecked) and its Content-MD5, so the store refuses a body damaged on
 * the way.  What came back decides what the caller does:
 *   S3_OK       2xx: stored
 *   S3_RETRY    no answer (refused, reset, timeout), 5xx, 408, 429: a
 *               passing trouble, retried with backoff
 *   S3_REFUSED  any other answer (403 SignatureDoesNotMatch, 404
 *               NoSuchBucket, ...): retrying soon will not mend it
 * err then holds the URL, the status and the store's error Code and
 * Message.
 */
#ifndef MI_S3PUT_H
#define MI_S3PUT_H
#include <stddef.h>
#include <stdint.h>

#include "sinkd/awscred.h"
#include "sinkd/sink.h"

struct s3_cfg {
	const char *endpoint;        /* http(s)://host[:port] */
	const char *region, *bucket;
	const char *ca_file;         /* "": the system's */
	int path_style;              /* endpoint/bucket/key, else bucket.host/key */
	int tls_verify;
	long connect_timeout_ms, timeout_ms;
};

struct s3 {
	void *curl;
	char base[1024];             /* URL up to the key, '/' included */
	char sigv4[160];
	char errbuf[256];
	char resp[2048];             /* the start of the last answer's body */
	size_t resp_len;
};

enum s3_rc { S3_OK, S3_RETRY, S3_REFUSED };

/* Returns 0, or -EINVAL / -ENOMEM with err naming the key at fault. */
int s3_open(struct s3 *s, const struct s3_cfg *c, char err[SINK_ERR_LEN]);
enum s3_rc s3_put(struct s3 *s, const struct aws_creds *cr, const char *key, const uint8_t *body, size_t len,
		  const char *content_type, const char *content_encoding, char err[SINK_ERR_LEN]);
void s3_close(struct s3 *s);

/* The S3 error Code of the last answer ("" when none). */
const char *s3_error_code(const struct s3 *s, char *out, size_t cap);
#endif
