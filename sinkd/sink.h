/* sink.h — the one header a sink author needs, built in or loaded (.so).
 *
 * A sink is one static descriptor (struct sink_desc).  sinkd runs each
 * configured instance ([sinkd] sinks = a, b; [sink.a] type = ...) in its
 * own thread, with its own cursor and committed offset:
 *
 *   init(state, cfg, env, blob)      once; blob = what commit() returned last
 *   deliver(state, records, n)       batches, in LSN order, of the instance's
 *                                    topics; the records live during the call
 *   commit(state, &c)                make what was delivered durable, up to
 *                                    c.upto (the sink may lower it to the
 *                                    first record it still holds); the host
 *                                    then stores (c.upto, c.blob)
 *   exit(state)
 *
 * After a crash the instance is initialised with the last stored blob and
 * redelivered from the stored LSN: a sink undoes what lies past its blob (as
 * the disk sink cuts its files back) or accepts at-least-once.  deliver()
 * and commit() return SINK_OK, SINK_RETRY (the sink went back to its last
 * commit; the host redelivers from the committed LSN after *retry_ms,
 * preset to the instance's backoff with jitter), SINK_FAILING (the same,
 * for a refusal no quick retry mends: a wrong key, a missing bucket; state
 * failing, retried every retry_max_ms) or SINK_FATAL (this instance stops;
 * the others go on).  All calls come from the instance's one thread.
 *
 * docs/SINKS.md is the whole contract, with an example that builds against
 * this header alone (examples/sinks/count/).  A loaded sink exports
 *   const struct sink_desc mi_sink_plugin = { .abi = SINK_ABI_VERSION, ... };
 * and sinkd refuses one of another ABI version, naming both.
 */
#ifndef MI_SINK_H
#define MI_SINK_H
#include <stddef.h>
#include <stdint.h>

#define SINK_ABI_VERSION 2
#define SINK_PLUGIN_SYMBOL "mi_sink_plugin"

enum sink_rc { SINK_OK, SINK_RETRY, SINK_FATAL, SINK_FAILING };

/* One stored record, as the host hands it to deliver(): a view into the
 * log, valid only during that call.  Read it through the accessors below;
 * a later ABI version may add fields. */
struct sink_record {
	uint64_t lsn;             /* its position in the log: unique, increasing */
	uint64_t seq;             /* the device's sequence number */
	uint64_t ts_ns;           /* device time, ns since the epoch (server's if the device sent 0) */
	uint64_t srv_ns;          /* server time when ingestd accepted it */
	const uint8_t *device;    /* device id, device_len bytes, not NUL-terminated */
	const uint8_t *payload;
	uint32_t payload_len;
	uint16_t topic;
	uint8_t device_len;
};

static inline uint64_t sink_rec_lsn(const struct sink_record *r) { return r->lsn; }
static inline uint64_t sink_rec_seq(const struct sink_record *r) { return r->seq; }
static inline uint64_t sink_rec_device_time(const struct sink_record *r) { return r->ts_ns; }
static inline uint64_t sink_rec_server_time(const struct sink_record *r) { return r->srv_ns; }
static inline uint16_t sink_rec_topic(const struct sink_record *r) { return r->topic; }
static inline const uint8_t *sink_rec_device(const struct sink_record *r, size_t *len)
{
	*len = r->device_len;
	return r->device;
}
static inline const uint8_t *sink_rec_payload(const struct sink_record *r, size_t *len)
{
	*len = r->payload_len;
	return r->payload;
}

/* A config key of the sink's section [sink.NAME]: unknown keys stop
 * start-up; the value lands at `off` in a struct of cfg_size bytes. */
enum sink_opt_type {
	SINK_OPT_STR,    /* char[size] */
	SINK_OPT_INT,    /* int64_t, min..max */
	SINK_OPT_SIZE,   /* uint64_t bytes, K/M/G suffixes, min..max */
	SINK_OPT_BOOL,   /* int */
	SINK_OPT_MAX
};

struct sink_opt {
	const char *key;
	enum sink_opt_type type;
	const char *def;
	size_t off;
	size_t size;
	int64_t min, max;
	const char *desc;
};

enum sink_log_level { SINK_LOG_ERROR, SINK_LOG_WARN, SINK_LOG_INFO, SINK_LOG_DEBUG };

/* sink_env.flags */
#define SINK_ENV_BACKFILL 1u         /* a backfill run: see docs/SINKS.md */

/* What the host tells a sink at init(); valid until exit(). */
struct sink_env {
	uint32_t abi;                /* SINK_ABI_VERSION of the host */
	uint32_t flags;              /* SINK_ENV_* */
	/* a backfill run delivers [backfill_from, backfill_to) once, from no
	 * blob, and its commits are never stored: a sink whose output is not
	 * keyed by LSN writes it apart from the live instance's */
	uint64_t backfill_from, backfill_to;
	uint64_t start_lsn;          /* where delivery starts: the stored offset */
	uint64_t log_id;             /* the log's id (data/meta): unique per data directory */
	/* the instance's batch limits ([sink.NAME] batch_*): a sink that
	 * gathers its own batches across deliveries closes them at these */
	uint32_t batch_records;
	uint64_t batch_bytes;
	uint64_t batch_ms;
	const char *name;            /* the instance name */
	const char *data_dir;        /* the pipeline's data directory */
	/* one log line, prefixed "sink NAME: " by the host */
	void (*log)(const struct sink_env *env, enum sink_log_level level, const char *fmt, ...)
		__attribute__((format(printf, 3, 4)));
	/* the [topics] name of a topic id, or NULL when it has none */
	const char *(*topic_name)(const struct sink_env *env, uint16_t topic);
	/* how many reloads (SIGHUP) the host has been asked for: a sink that
	 * reads files of its own (credentials) reads them again when it grows */
	uint32_t (*reloads)(const struct sink_env *env);
	void *host;                  /* the host's; do not touch */
};

#define SINK_ERR_LEN 256

/* What commit() is told and tells back. */
struct sink_commit {
	/* in: the LSN after the last record delivered; out: at most that, and
	 * no higher than the first record the sink still holds undurable (an
	 * upload not yet made, a publish not yet acknowledged): a crash
	 * redelivers from here */
	uint64_t upto;
	uint64_t stored;             /* in: the LSN the host last stored */
	void *blob;                  /* out: malloc'd (freed by the host), or NULL */
	size_t blob_len;
};

struct sink_desc {
	uint32_t abi;                /* SINK_ABI_VERSION */
	const char *name;            /* the type name ([sink.X] type = name) */
	const char *description;
	const struct sink_opt *opts;
	size_t nopts;
	size_t cfg_size;
	int (*init)(void **state, const void *cfg, const struct sink_env *env, const void *blob,
		    size_t blob_len, char err[SINK_ERR_LEN]);
	enum sink_rc (*deliver)(void *state, const struct sink_record *recs, size_t n, uint32_t *retry_ms,
				char err[SINK_ERR_LEN]);
	enum sink_rc (*commit)(void *state, struct sink_commit *c, uint32_t *retry_ms, char err[SINK_ERR_LEN]);
	void (*exit)(void *state);
	/* defaults of the instance's batch_* keys for this type, where the
	 * host's do not fit (an object store wants large batches); 0: the
	 * host's.  Read for built-in types only. */
	uint32_t def_batch_records;
	uint64_t def_batch_bytes, def_batch_ms;
};
#endif
