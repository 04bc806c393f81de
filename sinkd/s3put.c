#include "sinkd/s3put.h"

#include <curl/curl.h>
#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc;

static void global_init(void)
{
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
	struct s3 *s = arg;
	size_t len = size * n, room = sizeof(s->resp) - 1 - s->resp_len;
	memcpy(s->resp + s->resp_len, p, len < room ? len : room);
	s->resp_len += len < room ? len : room;
	s->resp[s->resp_len] = 0;
	return len;
}

int s3_open(struct s3 *s, const struct s3_cfg *c, char err[SINK_ERR_LEN])
{
	memset(s, 0, sizeof(*s));
	int https = !strncmp(c->endpoint, "https://", 8);
	if (!https && strncmp(c->endpoint, "http://", 7)) {
		snprintf(err, SINK_ERR_LEN, "endpoint = %.200s: not an http:// or https:// URL", c->endpoint);
		return -EINVAL;
	}
	const char *host = c->endpoint + (https ? 8 : 7);
	size_t hl = strcspn(host, "/");
	if (!hl || host[hl + (host[hl] == '/')]) {
		snprintf(err, SINK_ERR_LEN, "endpoint = %.200s: give the scheme, host and port only (the bucket "
			 "is bucket =)", c->endpoint);
		return -EINVAL;
	}
	if (!*c->bucket || strchr(c->bucket, '/')) {
		snprintf(err, SINK_ERR_LEN, "bucket = \"%.100s\": %s", c->bucket,
			 *c->bucket ? "a bucket name has no '/'" : "required");
		return -EINVAL;
	}
	if (c->path_style)
		snprintf(s->base, sizeof(s->base), "%s%.*s/%s/", https ? "https://" : "http://", (int)hl, host,
			 c->bucket);
	else
		snprintf(s->base, sizeof(s->base), "%s%s.%.*s/", https ? "https://" : "http://", c->bucket, (int)hl,
			 host);
	snprintf(s->sigv4, sizeof(s->sigv4), "aws:amz:%s:s3", c->region);
	pthread_once(&global_once, global_init);
	if (global_rc != CURLE_OK || !(s->curl = curl_easy_init())) {
		snprintf(err, SINK_ERR_LEN, "libcurl: cannot start (%s)", curl_easy_strerror(global_rc));
		return -ENOMEM;
	}
	CURL *h = s->curl;
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, s->errbuf);
	curl_easy_setopt(h, CURLOPT_AWS_SIGV4, s->sigv4);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PUT");
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, s);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, c->tls_verify ? 1L : 0L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, c->tls_verify ? 2L : 0L);
	if (*c->ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	return 0;
}

void s3_close(struct s3 *s)
{
	if (s->curl)
		curl_easy_cleanup(s->curl);
	s->curl = NULL;
}

/* RFC 3986 unreserved bytes and '/' as they are, the rest %XX: the form
 * SigV4's canonical URI wants, which curl signs as given. */
static int encode_key(const char *key, char *out, size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;
	for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
		int plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
			    *p == '-' || *p == '_' || *p == '.' || *p == '~' || *p == '/';
		if (n + 4 > cap)
			return -ENAMETOOLONG;
		if (plain) {
			out[n++] = (char)*p;
		} else {
			out[n++] = '%';
			out[n++] = hex[*p >> 4];
			out[n++] = hex[*p & 15];
		}
	}
	out[n] = 0;
	return 0;
}

/* The text of <tag>...</tag> in the answer, "" when none. */
static const char *xml_field(const struct s3 *s, const char *tag, char *out, size_t cap)
{
	char open[40], close[40];
	snprintf(open, sizeof(open), "<%s>", tag);
	snprintf(close, sizeof(close), "</%s>", tag);
	const char *a = strstr(s->resp, open), *b = a ? strstr(a, close) : NULL;
	out[0] = 0;
	if (a && b) {
		a += strlen(open);
		snprintf(out, cap, "%.*s", (int)(b - a), a);
	}
	return out;
}

const char *s3_error_code(const struct s3 *s, char *out, size_t cap)
{
	return xml_field(s, "Code", out, cap);
}

/* A store that cannot be trusted or reached as configured: a passing
 * network trouble is retried soon, this is not. */
static int refused_by_curl(CURLcode rc)
{
	switch (rc) {
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
	case CURLE_LOGIN_DENIED:
		return 1;
	default:
		return 0;
	}
}

enum s3_rc s3_put(struct s3 *s, const struct aws_creds *cr, const char *key, const uint8_t *body, size_t len,
		  const char *content_type, const char *content_encoding, char err[SINK_ERR_LEN])
{
	char url[sizeof(s->base) + 3 * 1024 + 4], enc[3 * 1024 + 4];
	if (encode_key(key, enc, sizeof(enc)) < 0) {
		snprintf(err, SINK_ERR_LEN, "key %.100s...: too long", key);
		return S3_REFUSED;
	}
	snprintf(url, sizeof(url), "%s%s", s->base, enc);

	uint8_t sha[crypto_hash_sha256_BYTES], md5[16];
	unsigned int md5_len = 0;
	char sha_hex[2 * sizeof(sha) + 1], md5_b64[sodium_base64_ENCODED_LEN(16, sodium_base64_VARIANT_ORIGINAL)];
	crypto_hash_sha256(sha, body, len);
	sodium_bin2hex(sha_hex, sizeof(sha_hex), sha, sizeof(sha));
	if (!EVP_Digest(body, len, md5, &md5_len, EVP_md5(), NULL)) {
		snprintf(err, SINK_ERR_LEN, "OpenSSL: no MD5 for Content-MD5");
		return S3_RETRY;
	}
	sodium_bin2base64(md5_b64, sizeof(md5_b64), md5, sizeof(md5), sodium_base64_VARIANT_ORIGINAL);

	char h_sha[100], h_md5[64], h_type[128], h_enc[64], userpwd[sizeof(cr->id) + sizeof(cr->secret) + 2];
	char h_token[sizeof(cr->token) + 32];
	snprintf(h_sha, sizeof(h_sha), "x-amz-content-sha256: %s", sha_hex);
	snprintf(h_md5, sizeof(h_md5), "Content-MD5: %s", md5_b64);
	snprintf(h_type, sizeof(h_type), "Content-Type: %s", content_type);
	snprintf(h_enc, sizeof(h_enc), "Content-Encoding: %s", content_encoding);
	struct curl_slist *hdr = NULL, *t;
	/* no "Expect:" to switch 100-continue off: curl 7.88 signs the empty
	 * header it then does not send, and the store refuses the signature */
	const char *lines[] = { h_sha, h_md5, h_type, h_enc, NULL, NULL };
	if (cr->token[0]) {
		snprintf(h_token, sizeof(h_token), "x-amz-security-token: %s", cr->token);
		lines[4] = h_token;
	}
	for (int i = 0; lines[i]; i++) {
		if (!(t = curl_slist_append(hdr, lines[i]))) {
			curl_slist_free_all(hdr);
			snprintf(err, SINK_ERR_LEN, "out of memory for a request's headers");
			return S3_RETRY;
		}
		hdr = t;
	}
	snprintf(userpwd, sizeof(userpwd), "%s:%s", cr->id, cr->secret);

	CURL *h = s->curl;
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_USERPWD, userpwd);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, (const char *)body);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	s->resp_len = 0;
	s->resp[0] = 0;
	s->errbuf[0] = 0;
	CURLcode rc = curl_easy_perform(h);
	sodium_memzero(userpwd, sizeof(userpwd));
	sodium_memzero(h_token, sizeof(h_token));
	curl_easy_setopt(h, CURLOPT_USERPWD, NULL);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(hdr);
	if (rc != CURLE_OK) {
		snprintf(err, SINK_ERR_LEN, "PUT %.300s: %s", url, s->errbuf[0] ? s->errbuf : curl_easy_strerror(rc));
		return refused_by_curl(rc) ? S3_REFUSED : S3_RETRY;
	}
	long status = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	if (status >= 200 && status < 300)
		return S3_OK;
	char code[64], msg[160];
	xml_field(s, "Code", code, sizeof(code));
	xml_field(s, "Message", msg, sizeof(msg));
	snprintf(err, SINK_ERR_LEN, "PUT %.200s: HTTP %ld%s%s%s%s", url, status, code[0] ? " " : "", code,
		 msg[0] ? ": " : "", msg);
	return status >= 500 || status == 408 || status == 429 ? S3_RETRY : S3_REFUSED;
}
