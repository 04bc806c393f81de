/* sink_nats — every record of the instance's topics as one message in a
 * NATS JetStream stream, for a cluster that gathers many ingest nodes
 * (docs/SCALING.md).
 *
 * A message is the payload byte for byte, on a subject from a template
 * (default ingest.{topic}.{device}), with headers naming the record:
 * Ingest-Device (Ingest-Device-B64 when it is not printable ASCII),
 * Ingest-Topic (and Ingest-Topic-Name), Ingest-Seq, Ingest-Device-Time,
 * Ingest-Server-Time (ns), Ingest-Lsn, and Nats-Msg-Id = "<log id>:<LSN>"
 * (16 hex digits, decimal), so that the stream's duplicate window makes a
 * redelivery harmless.
 *
 * Publishing is asynchronous with at most max_pending in flight; the acks
 * come back on the client's thread (on_ack), in a ring of the LSNs in
 * flight.  commit() stops the offset at the first LSN not yet acked.  An
 * error ack, a publish that fails or an ack not back within ack_wait_ms is
 * SINK_RETRY: the host redelivers from the committed offset, and JetStream
 * drops what it already has by its Msg-Id.  A refusal no retry mends (an
 * authorization error, a subject no stream takes) is SINK_FAILING.
 */
#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <nats/nats.h>
#include <pthread.h>
#include <sodium.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "sinkd/sink.h"

struct nats_cfg {
	char servers[512];
	char user[128];
	char password[256];
	char token[256];
	char nkey[128];
	char nkey_seed_file[256];
	char creds_file[256];
	char ca_file[256];
	char stream[64];
	char subject[256];
	int create_stream;
	char stream_subjects[256];
	int64_t replicas;
	char duplicate_window[32];
	int64_t max_pending;
	int64_t ack_wait_ms;
};

#define C(f) offsetof(struct nats_cfg, f)
#define S(f) sizeof(((struct nats_cfg *)0)->f)
static const struct sink_opt nats_opts[] = {
	{ "servers", SINK_OPT_STR, "nats://127.0.0.1:4222", C(servers), S(servers), 0, 0,
	  "the cluster's URLs, comma-separated (tls:// for TLS)" },
	{ "user", SINK_OPT_STR, "", C(user), S(user), 0, 0, "user name (with password)" },
	{ "password", SINK_OPT_STR, "", C(password), S(password), 0, 0, "its password" },
	{ "token", SINK_OPT_STR, "", C(token), S(token), 0, 0, "an authentication token" },
	{ "nkey", SINK_OPT_STR, "", C(nkey), S(nkey), 0, 0, "an NKey public key (with nkey_seed_file)" },
	{ "nkey_seed_file", SINK_OPT_STR, "", C(nkey_seed_file), S(nkey_seed_file), 0, 0, "its seed file" },
	{ "creds_file", SINK_OPT_STR, "", C(creds_file), S(creds_file), 0, 0, "a .creds file (JWT and NKey seed)" },
	{ "ca_file", SINK_OPT_STR, "", C(ca_file), S(ca_file), 0, 0, "CA certificates: TLS, verifying the servers" },
	{ "stream", SINK_OPT_STR, "INGEST", C(stream), S(stream), 0, 0, "the JetStream stream" },
	{ "subject", SINK_OPT_STR, "ingest.{topic}.{device}", C(subject), S(subject), 0, 0,
	  "subject template: {topic} {topic_id} {device} {name}" },
	{ "create_stream", SINK_OPT_BOOL, "true", C(create_stream), 0, 0, 0,
	  "create the stream when it is missing (file storage)" },
	{ "stream_subjects", SINK_OPT_STR, "ingest.>", C(stream_subjects), S(stream_subjects), 0, 0,
	  "the subjects of a stream it creates" },
	{ "replicas", SINK_OPT_INT, "1", C(replicas), 0, 1, 5, "the replicas of a stream it creates" },
	{ "duplicate_window", SINK_OPT_STR, "2m", C(duplicate_window), S(duplicate_window), 0, 0,
	  "the duplicate window of a stream it creates (30s, 2m, 1h)" },
	{ "max_pending", SINK_OPT_INT, "8192", C(max_pending), 0, 1, 1 << 20,
	  "publishes in flight, not yet acknowledged" },
	{ "ack_wait_ms", SINK_OPT_INT, "5000", C(ack_wait_ms), 0, 100, 600000,
	  "a publish not acknowledged in this long is sent again" },
};

struct nats {
	const struct sink_env *env;
	struct nats_cfg cfg;
	natsOptions *opts;
	natsConnection *nc;
	jsCtx *js;
	int stream_ok;
	int closing;                 /* exit: a disconnection is ours */
	int js_published;            /* this JetStream context has published */
	uint64_t window_ns;
	char msg_id_prefix[24];
	/* the LSNs in flight, oldest first; on_ack marks them */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t *lsn;
	uint8_t *acked;
	size_t cap, head, tail;      /* head..tail in flight, indices mod cap */
	int failed;
	enum sink_rc fail_rc;
	char fail_err[SINK_ERR_LEN];
	uint64_t published, acks;
};

static void set_failed(struct nats *x, enum sink_rc rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_failed(struct nats *x, enum sink_rc rc, const char *fmt, ...)
{
	if (x->failed)
		return;   /* the first error is the one to tell */
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(x->fail_err, sizeof(x->fail_err), fmt, ap);
	va_end(ap);
	x->failed = 1;
	x->fail_rc = rc;
}

/* Errors no retry mends soon: the server refused us or the subject. */
static enum sink_rc rc_of(natsStatus s, jsErrCode e)
{
	if (s == NATS_NOT_PERMITTED || s == NATS_CONNECTION_AUTH_FAILED || s == NATS_NO_SERVER_SUPPORT ||
	    e == JSStreamNotFoundErr || e == JSNotEnabledErr || e == JSNotEnabledForAccountErr)
		return SINK_FAILING;
	return SINK_RETRY;
}

/* The client's thread: an ack (pa) or an error (pae) for one message. */
static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	struct nats *x = closure;
	const char *v = NULL;
	(void)js;
	uint64_t lsn = natsMsgHeader_Get(msg, "Ingest-Lsn", &v) == NATS_OK && v ? strtoull(v, NULL, 10) : 0;
	pthread_mutex_lock(&x->mu);
	if (pa) {
		/* the ring is in LSN order: find it by bisection */
		size_t lo = x->head, hi = x->tail;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			if (x->lsn[mid % x->cap] < lsn)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo < x->tail && x->lsn[lo % x->cap] == lsn)
			x->acked[lo % x->cap] = 1;
		while (x->head < x->tail && x->acked[x->head % x->cap])
			x->head++;
		x->acks++;
	} else if (pae && lsn >= (x->head < x->tail ? x->lsn[x->head % x->cap] : UINT64_MAX)) {
		/* (an error for what is no longer in flight, from before a retry,
		 * is old news) */
		set_failed(x, rc_of(pae->Err, pae->ErrCode), "publish of LSN %llu to stream %s: %s (%s, error %d)",
			   (unsigned long long)lsn, x->cfg.stream, pae->ErrText ? pae->ErrText : "no text",
			   natsStatus_GetText(pae->Err), (int)pae->ErrCode);
	}
	pthread_cond_broadcast(&x->cv);
	pthread_mutex_unlock(&x->mu);
	natsMsg_Destroy(msg);
}

/* Back at the last commit: what is in flight is forgotten (the host sends
 * it again; its Msg-Id keeps the stream from storing it twice). */
static void reset(struct nats *x)
{
	natsMsgList pending = { 0 };
	/* (cnats 3.4.1 crashes here on a context that never published) */
	if (x->js && x->js_published && js_PublishAsyncGetPendingList(&pending, x->js) == NATS_OK)
		natsMsgList_Destroy(&pending);
	pthread_mutex_lock(&x->mu);
	x->head = x->tail = 0;
	x->failed = 0;
	pthread_mutex_unlock(&x->mu);
}

static enum sink_rc failed(struct nats *x, char err[SINK_ERR_LEN])
{
	pthread_mutex_lock(&x->mu);
	enum sink_rc rc = x->fail_rc;
	snprintf(err, SINK_ERR_LEN, "%s", x->fail_err);
	pthread_mutex_unlock(&x->mu);
	reset(x);
	return rc;
}

/* A connection, and its JetStream context: made at the first delivery, and
 * made again when the client gave up on the last one (an authorization
 * violation closes it for good). */
static enum sink_rc ensure_conn(struct nats *x, char err[SINK_ERR_LEN])
{
	if (x->nc && !natsConnection_IsClosed(x->nc))
		return SINK_OK;
	const char *why = NULL;
	natsStatus s = NATS_OK;
	if (x->nc) {
		s = natsConnection_GetLastError(x->nc, &why);
		snprintf(err, SINK_ERR_LEN, "connection to %s closed: %s", x->cfg.servers,
			 why && *why ? why : natsStatus_GetText(s));
		int refused = s == NATS_CONNECTION_AUTH_FAILED || s == NATS_NOT_PERMITTED ||
			      (why && strstr(why, "uthoriz"));
		reset(x);
		jsCtx_Destroy(x->js);
		natsConnection_Destroy(x->nc);
		x->js = NULL;
		x->nc = NULL;
		x->stream_ok = x->js_published = 0;
		return refused ? SINK_FAILING : SINK_RETRY;
	}
	/* the first connection is the host's retry loop's to make, so that
	 * its error (a refused password, no server) reaches the state; once
	 * made, the client reconnects by itself */
	s = natsConnection_Connect(&x->nc, x->opts);
	if (s != NATS_OK) {
		const char *le = nats_GetLastError(NULL);
		snprintf(err, SINK_ERR_LEN, "connect to %s: %s", x->cfg.servers, le && *le ? le : natsStatus_GetText(s));
		natsConnection_Destroy(x->nc);
		x->nc = NULL;
		return s == NATS_CONNECTION_AUTH_FAILED || (le && strstr(le, "uthoriz")) ? SINK_FAILING : SINK_RETRY;
	}
	char url[256] = "";
	natsConnection_GetConnectedUrl(x->nc, url, sizeof(url));
	x->env->log(x->env, SINK_LOG_INFO, "connected to %s", url);
	jsOptions jo;
	jsOptions_Init(&jo);
	jo.Wait = x->cfg.ack_wait_ms;
	jo.PublishAsync.MaxPending = x->cfg.max_pending;
	jo.PublishAsync.AckHandler = on_ack;
	jo.PublishAsync.AckHandlerClosure = x;
	if ((s = natsConnection_JetStream(&x->js, x->nc, &jo)) != NATS_OK) {
		snprintf(err, SINK_ERR_LEN, "JetStream: %s", natsStatus_GetText(s));
		natsConnection_Destroy(x->nc);
		x->nc = NULL;
		return SINK_RETRY;
	}
	return SINK_OK;
}

static int ensure_stream(struct nats *x, char err[SINK_ERR_LEN])
{
	jsStreamInfo *si = NULL;
	jsErrCode je = 0;
	natsStatus s = js_GetStreamInfo(&si, x->js, x->cfg.stream, NULL, &je);
	if (s == NATS_OK) {
		if ((uint64_t)si->Config->Duplicates < x->window_ns)
			x->env->log(x->env, SINK_LOG_WARN, "stream %s keeps a duplicate window of %.0f s, shorter than "
				    "duplicate_window (%s): a redelivery after a longer outage may store a record twice",
				    x->cfg.stream, (double)si->Config->Duplicates / 1e9, x->cfg.duplicate_window);
		jsStreamInfo_Destroy(si);
		x->stream_ok = 1;
		return 0;
	}
	if (je != JSStreamNotFoundErr || !x->cfg.create_stream) {
		snprintf(err, SINK_ERR_LEN, "stream %s: %s%s", x->cfg.stream,
			 je == JSStreamNotFoundErr ? "not found (create_stream = false)" : natsStatus_GetText(s),
			 je == JSStreamNotFoundErr ? "" : " (looking it up)");
		return je == JSStreamNotFoundErr ? -ENOENT : -EAGAIN;
	}
	jsStreamConfig sc;
	jsStreamConfig_Init(&sc);
	const char *subj[] = { x->cfg.stream_subjects };
	sc.Name = x->cfg.stream;
	sc.Subjects = subj;
	sc.SubjectsLen = 1;
	sc.Storage = js_FileStorage;
	sc.Replicas = x->cfg.replicas;
	sc.Duplicates = (int64_t)x->window_ns;
	s = js_AddStream(&si, x->js, &sc, NULL, &je);
	if (s != NATS_OK) {
		snprintf(err, SINK_ERR_LEN, "stream %s: cannot create it (subjects %s, %lld replicas): %s (error %d)",
			 x->cfg.stream, x->cfg.stream_subjects, (long long)x->cfg.replicas, natsStatus_GetText(s),
			 (int)je);
		return -EAGAIN;
	}
	jsStreamInfo_Destroy(si);
	x->env->log(x->env, SINK_LOG_INFO, "created stream %s: subjects %s, %lld replica(s), file storage, "
		    "duplicate window %s", x->cfg.stream, x->cfg.stream_subjects, (long long)x->cfg.replicas,
		    x->cfg.duplicate_window);
	x->stream_ok = 1;
	return 0;
}

/* A subject token from the device id: NATS subjects have no '.', '*', '>'
 * or white space in a token; those and other bytes become '_'. */
static size_t subject_token(char *out, size_t cap, const uint8_t *p, size_t n)
{
	size_t k = 0;
	for (size_t i = 0; i < n && k + 1 < cap; i++)
		out[k++] = p[i] > 0x20 && p[i] < 0x7f && p[i] != '.' && p[i] != '*' && p[i] != '>' ? (char)p[i] : '_';
	if (!k && cap > 1)
		out[k++] = '_';
	out[k] = 0;
	return k;
}

static int subject_of(const struct nats *x, const struct sink_record *r, char *out, size_t cap)
{
	size_t n = 0, dlen;
	const uint8_t *dev = sink_rec_device(r, &dlen);
	for (const char *t = x->cfg.subject; *t && n + 1 < cap; t++) {
		char v[300];
		const char *put = v;
		if (!strncmp(t, "{topic}", 7) || !strncmp(t, "{topic_id}", 10)) {
			const char *name = t[6] == '}' ? x->env->topic_name(x->env, sink_rec_topic(r)) : NULL;
			if (name)
				put = name;
			else
				snprintf(v, sizeof(v), "%u", sink_rec_topic(r));
			t += t[6] == '}' ? 6 : 9;
		} else if (!strncmp(t, "{device}", 8)) {
			subject_token(v, sizeof(v), dev, dlen);
			t += 7;
		} else if (!strncmp(t, "{name}", 6)) {
			put = x->env->name;
			t += 5;
		} else {
			v[0] = *t;
			v[1] = 0;
		}
		size_t l = strlen(put);
		if (n + l >= cap)
			return -ENAMETOOLONG;
		memcpy(out + n, put, l);
		n += l;
	}
	out[n] = 0;
	return 0;
}

static int check_subject(const char *t, char err[SINK_ERR_LEN])
{
	for (const char *s = strchr(t, '{'); s; s = strchr(s + 1, '{'))
		if (strncmp(s, "{topic}", 7) && strncmp(s, "{topic_id}", 10) && strncmp(s, "{device}", 8) &&
		    strncmp(s, "{name}", 6)) {
			snprintf(err, SINK_ERR_LEN, "subject = %.100s: unknown placeholder at \"%.20s\" (known: "
				 "{topic}, {topic_id}, {device}, {name})", t, s);
			return -EINVAL;
		}
	if (!*t || strchr(t, ' ') || strchr(t, '*') || strchr(t, '>') || t[0] == '.' || t[strlen(t) - 1] == '.' ||
	    strstr(t, "..")) {
		snprintf(err, SINK_ERR_LEN, "subject = \"%.100s\": not a subject to publish on (no spaces, wildcards "
			 "or empty tokens)", t);
		return -EINVAL;
	}
	return 0;
}

static natsStatus header_u64(natsMsg *m, const char *k, uint64_t v)
{
	char b[24];
	snprintf(b, sizeof(b), "%" PRIu64, v);
	return natsMsgHeader_Set(m, k, b);
}

static int printable(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] < 0x20 || p[i] >= 0x7f)
			return 0;
	return n > 0;
}

static natsStatus build(struct nats *x, const struct sink_record *r, natsMsg **mp)
{
	char subj[512], id[48];
	size_t dlen, plen;
	const uint8_t *dev = sink_rec_device(r, &dlen), *pl = sink_rec_payload(r, &plen);
	if (subject_of(x, r, subj, sizeof(subj)) < 0)
		return NATS_INVALID_SUBJECT;
	natsStatus s = natsMsg_Create(mp, subj, NULL, (const char *)pl, (int)plen);
	natsMsg *m = *mp;
	char dv[3 * 256];
	if (s == NATS_OK && printable(dev, dlen)) {
		memcpy(dv, dev, dlen);
		dv[dlen] = 0;
		s = natsMsgHeader_Set(m, "Ingest-Device", dv);
	} else if (s == NATS_OK) {
		sodium_bin2base64(dv, sizeof(dv), dev, dlen, sodium_base64_VARIANT_ORIGINAL);
		s = natsMsgHeader_Set(m, "Ingest-Device-B64", dv);
	}
	const char *tn = x->env->topic_name(x->env, sink_rec_topic(r));
	if (s == NATS_OK)
		s = header_u64(m, "Ingest-Topic", sink_rec_topic(r));
	if (s == NATS_OK && tn)
		s = natsMsgHeader_Set(m, "Ingest-Topic-Name", tn);
	if (s == NATS_OK)
		s = header_u64(m, "Ingest-Seq", sink_rec_seq(r));
	if (s == NATS_OK)
		s = header_u64(m, "Ingest-Device-Time", sink_rec_device_time(r));
	if (s == NATS_OK)
		s = header_u64(m, "Ingest-Server-Time", sink_rec_server_time(r));
	if (s == NATS_OK)
		s = header_u64(m, "Ingest-Lsn", sink_rec_lsn(r));
	snprintf(id, sizeof(id), "%s%" PRIu64, x->msg_id_prefix, sink_rec_lsn(r));
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, "Nats-Msg-Id", id);
	return s;
}

static enum sink_rc publish(struct nats *x, const struct sink_record *r, char err[SINK_ERR_LEN])
{
	uint64_t lsn = sink_rec_lsn(r);
	pthread_mutex_lock(&x->mu);
	uint64_t deadline = clock_mono_ns() + (uint64_t)x->cfg.ack_wait_ms * 1000000u;
	while (x->tail - x->head >= x->cap && !x->failed) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
		if (now >= deadline) {
			set_failed(x, SINK_RETRY, "stream %s: %zu publishes in flight, none acknowledged in %lld ms "
				   "(the oldest LSN %llu)", x->cfg.stream, x->tail - x->head,
				   (long long)x->cfg.ack_wait_ms, (unsigned long long)x->lsn[x->head % x->cap]);
			break;
		}
		struct timespec until = clock_ts_from_ns(deadline);
		pthread_cond_timedwait(&x->cv, &x->mu, &until);
	}
	int bad = x->failed;
	if (!bad) {
		x->lsn[x->tail % x->cap] = lsn;
		x->acked[x->tail % x->cap] = 0;
		x->tail++;
	}
	pthread_mutex_unlock(&x->mu);
	if (bad)
		return failed(x, err);
	natsMsg *m = NULL;
	natsStatus s = build(x, r, &m);
	jsPubOptions po;
	jsPubOptions_Init(&po);
	po.MaxWait = x->cfg.ack_wait_ms;
	if (s == NATS_OK) {
		x->js_published = 1;
		s = js_PublishMsgAsync(x->js, &m, &po);
	}
	natsMsg_Destroy(m);   /* NULL once the library took it */
	if (s != NATS_OK) {
		pthread_mutex_lock(&x->mu);
		set_failed(x, rc_of(s, 0), "publish of LSN %llu to %s: %s", (unsigned long long)lsn, x->cfg.servers,
			   natsStatus_GetText(s));
		pthread_mutex_unlock(&x->mu);
		return failed(x, err);
	}
	x->published++;
	return SINK_OK;
}

static enum sink_rc nats_deliver(void *state, const struct sink_record *recs, size_t n, uint32_t *retry_ms,
				 char err[SINK_ERR_LEN])
{
	struct nats *x = state;
	(void)retry_ms;
	enum sink_rc rc = ensure_conn(x, err);
	if (rc != SINK_OK)
		return rc;
	if (!x->stream_ok) {
		int r = ensure_stream(x, err);
		if (r < 0 && natsConnection_IsClosed(x->nc))
			return ensure_conn(x, err);   /* says why the client gave up */
		if (r < 0)
			return r == -ENOENT ? SINK_FAILING : SINK_RETRY;
	}
	for (size_t i = 0; i < n; i++)
		if ((rc = publish(x, &recs[i], err)) != SINK_OK)
			return rc;
	return SINK_OK;
}

static enum sink_rc nats_commit(void *state, struct sink_commit *c, uint32_t *retry_ms, char err[SINK_ERR_LEN])
{
	struct nats *x = state;
	(void)retry_ms;
	pthread_mutex_lock(&x->mu);
	int bad = x->failed;
	/* in flight the longest, with no ack: the ack is lost, or the server */
	if (!bad && x->head < x->tail && x->lsn[x->head % x->cap] < c->upto)
		c->upto = x->lsn[x->head % x->cap];
	pthread_mutex_unlock(&x->mu);
	return bad ? failed(x, err) : SINK_OK;
}

static void nats_exit(void *state)
{
	struct nats *x = state;
	if (!x)
		return;
	if (x->js) {
		jsPubOptions po;
		jsPubOptions_Init(&po);
		po.MaxWait = 1000;
		js_PublishAsyncComplete(x->js, &po);
		reset(x);
		jsCtx_Destroy(x->js);
	}
	__atomic_store_n(&x->closing, 1, __ATOMIC_RELAXED);
	if (x->nc) {
		natsConnection_Close(x->nc);
		natsConnection_Destroy(x->nc);
	}
	natsOptions_Destroy(x->opts);
	if (x->published)
		x->env->log(x->env, SINK_LOG_INFO, "%llu messages published, %llu acknowledged",
			    (unsigned long long)x->published, (unsigned long long)x->acks);
	pthread_cond_destroy(&x->cv);
	pthread_mutex_destroy(&x->mu);
	free(x->lsn);
	free(x->acked);
	free(x);
}

static void on_disconnected(natsConnection *nc, void *closure)
{
	struct nats *x = closure;
	(void)nc;
	if (!__atomic_load_n(&x->closing, __ATOMIC_RELAXED))
		x->env->log(x->env, SINK_LOG_WARN, "disconnected from %s; reconnecting", x->cfg.servers);
}

static void on_reconnected(natsConnection *nc, void *closure)
{
	struct nats *x = closure;
	char url[256] = "";
	natsConnection_GetConnectedUrl(nc, url, sizeof(url));
	x->env->log(x->env, SINK_LOG_INFO, "connected to %s", url);
}

static int nats_init(void **state, const void *cfgp, const struct sink_env *env, const void *blob, size_t blob_len,
		     char err[SINK_ERR_LEN])
{
	(void)blob;
	(void)blob_len;   /* the offset and the Msg-Ids say it all */
	struct nats *x = calloc(1, sizeof(*x));
	if (!x) {
		snprintf(err, SINK_ERR_LEN, "out of memory");
		return -ENOMEM;
	}
	x->env = env;
	x->cfg = *(const struct nats_cfg *)cfgp;
	pthread_mutex_init(&x->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&x->cv, &ca);
	pthread_condattr_destroy(&ca);
	snprintf(x->msg_id_prefix, sizeof(x->msg_id_prefix), "%016llx:", (unsigned long long)env->log_id);
	int r = -EINVAL;
	char dur[40];
	snprintf(dur, sizeof(dur), "+%s", x->cfg.duplicate_window);
	if (clock_parse_time(dur, 0, &x->window_ns) < 0 || !x->window_ns) {
		snprintf(err, SINK_ERR_LEN, "duplicate_window = %.30s: not a duration (30s, 2m, 1h)",
			 x->cfg.duplicate_window);
		goto fail;
	}
	if (check_subject(x->cfg.subject, err) < 0)
		goto fail;
	if (!x->cfg.stream[0] || strpbrk(x->cfg.stream, " .*>")) {
		snprintf(err, SINK_ERR_LEN, "stream = \"%.60s\": not a stream name", x->cfg.stream);
		goto fail;
	}
	x->cap = (size_t)x->cfg.max_pending;
	x->lsn = calloc(x->cap, sizeof(*x->lsn));
	x->acked = calloc(x->cap, 1);
	if (!x->lsn || !x->acked) {
		snprintf(err, SINK_ERR_LEN, "out of memory for %zu publishes in flight", x->cap);
		r = -ENOMEM;
		goto fail;
	}
	const char *urls[64];
	char servers[sizeof(x->cfg.servers)];
	int nurls = 0;
	snprintf(servers, sizeof(servers), "%s", x->cfg.servers);
	for (char *sv, *t = strtok_r(servers, ", ", &sv); t && nurls < 64; t = strtok_r(NULL, ", ", &sv))
		urls[nurls++] = t;
	if (!nurls) {
		snprintf(err, SINK_ERR_LEN, "servers: empty");
		goto fail;
	}
	natsStatus s = natsOptions_Create(&x->opts);
	if (s == NATS_OK)
		s = natsOptions_SetServers(x->opts, urls, nurls);
	if (s == NATS_OK && x->cfg.user[0])
		s = natsOptions_SetUserInfo(x->opts, x->cfg.user, x->cfg.password);
	if (s == NATS_OK && x->cfg.token[0])
		s = natsOptions_SetToken(x->opts, x->cfg.token);
	if (s == NATS_OK && x->cfg.creds_file[0])
		s = natsOptions_SetUserCredentialsFromFiles(x->opts, x->cfg.creds_file, NULL);
	if (s == NATS_OK && (x->cfg.nkey[0] || x->cfg.nkey_seed_file[0]))
		s = natsOptions_SetNKeyFromSeed(x->opts, x->cfg.nkey, x->cfg.nkey_seed_file);
	if (s == NATS_OK && x->cfg.ca_file[0]) {
		s = natsOptions_SetSecure(x->opts, true);
		if (s == NATS_OK)
			s = natsOptions_LoadCATrustedCertificates(x->opts, x->cfg.ca_file);
	}
	/* the servers in the order given: the first is the one to use (a
	 * local node), the others are for when it is away */
	if (s == NATS_OK)
		s = natsOptions_SetNoRandomize(x->opts, true);
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(x->opts, -1);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectWait(x->opts, 250);
	if (s == NATS_OK)
		s = natsOptions_SetDisconnectedCB(x->opts, on_disconnected, x);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectedCB(x->opts, on_reconnected, x);
	if (s != NATS_OK) {
		snprintf(err, SINK_ERR_LEN, "options: %s (%s)", natsStatus_GetText(s), nats_GetLastError(NULL));
		goto fail;
	}
	env->log(env, SINK_LOG_INFO, "stream %s at %s, subjects %s, Nats-Msg-Id %s<LSN>", x->cfg.stream,
		 x->cfg.servers, x->cfg.subject, x->msg_id_prefix);
	*state = x;
	return 0;
fail:
	nats_exit(x);
	return r;
}

const struct sink_desc sink_nats = {
	.abi = SINK_ABI_VERSION,
	.name = "nats",
	.description = "every record as a message in a NATS JetStream stream, deduplicated by log id and LSN",
	.opts = nats_opts,
	.nopts = sizeof(nats_opts) / sizeof(nats_opts[0]),
	.cfg_size = sizeof(struct nats_cfg),
	.init = nats_init,
	.deliver = nats_deliver,
	.commit = nats_commit,
	.exit = nats_exit,
};
