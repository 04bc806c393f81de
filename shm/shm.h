/* shm — one POSIX shared-memory region per instance: /module-ingest.<name>.
 *
 * Layout (all offsets from the region start, every part 4 KiB aligned):
 *
 *   0              struct shm_ctl     identity, stages, counters, futexes
 *   ring_off(i)    struct ring_hdr    + ring_bytes of data, one per worker
 *   dev_off        struct shm_dev[devices]  the device table
 *
 * The region is created mode 0600 by whichever stage starts first; the
 * creator fills it and stores the magic last, so an attacher that sees the
 * magic sees a whole region.  Attachers check magic, layout version and
 * geometry (rings, ring size, device slots) and refuse a mismatch by name.
 * Fields written by different processes sit on different cache lines.
 */
#ifndef MI_SHM_H
#define MI_SHM_H
#include <stddef.h>
#include <stdint.h>

#include "shm/futex.h"

#define SHM_MAGIC 0x4853494du   /* "MISH" */
#define SHM_LAYOUT_VERSION 3
#define SHM_MAX_RINGS 16
#define SHM_MAX_SINKS 8
#define SHM_CTR_MAX 64

enum shm_stage_id { STAGE_INGESTD, STAGE_FLUSHERD, STAGE_SINKD, STAGE_MAX };

/* Counters, indexed per stage.  Names in shm_counter_name(). */
enum ingestd_ctr {
	IC_CONN_ACCEPTED, IC_CONN_OPEN, IC_CONN_REFUSED, IC_CONN_IDLE_CLOSED, IC_HELLO,
	IC_SESSION_TAKEOVER, IC_FRAMES_IN, IC_BYTES_IN, IC_FRAMES_STORED, IC_FRAMES_RETRY,
	IC_ACKS_SENT, IC_NACKS_SENT, IC_NACK_CRC, IC_NACK_TOO_LARGE, IC_NACK_SEQ, IC_NACK_NOT_AUTH,
	IC_NACK_MALFORMED, IC_NACK_OVERLOADED, IC_FRAMING_ERRORS, IC_RING_FULL_STALLS,
	IC_NDJSON_LINES, IC_NDJSON_ERRORS, IC_POOL_BYTES,
	IC_UDP_DATAGRAMS, IC_UDP_STORED, IC_UDP_REPLAYED, IC_UDP_DROPPED, IC_UDP_RING_FULL, IC_UDP_RXQ_OVFL,
	IC_BANS, IC_BANNED_ACCEPTS, IC_FILTER_MODE,
	IC_NACK_TOPIC, IC_NACK_AUTH_FAILED, IC_AUTH_OK, IC_AUTH_FAILED, IC_BAD_MAC, IC_SEALED_OPENED,
	IC_SEAL_FAILED, IC_KEYS_RELOADS, IC_RELOAD_CLOSED, IC_UDP_BAD_MAC, IC_HANDSHAKE_TIMEOUTS,
	IC_MAX
};
enum flusherd_ctr {
	FC_RECORDS, FC_BYTES, FC_WRITES, FC_SYNCS, FC_SYNC_NS_TOTAL, FC_SYNC_NS_MAX,
	FC_SEGMENTS, FC_WRITE_ERRORS, FC_SYNC_ERRORS, FC_STALLED, FC_DURABLE_LSN,
	FC_CHECKPOINTS, FC_RECOVERED_RECORDS, FC_RECOVERY_CUT_BYTES, FC_RECOVERY_NS,
	/* successful fdatasyncs by duration: [0, 64) us, then one bucket per
	 * power of two, [2^k, 2^(k+1)) us for k = 6..15, then >= 65536 us */
	FC_SYNC_HIST, FC_SYNC_HIST_END = FC_SYNC_HIST + 12, FC_MAX = FC_SYNC_HIST_END
};
enum sinkd_ctr { SC_RECORDS, SC_BYTES, SC_BATCHES, SC_RETRIES, SC_FATAL, SC_COMMITS, SC_MAX };

_Static_assert(IC_MAX <= SHM_CTR_MAX && FC_MAX <= SHM_CTR_MAX && SC_MAX <= SHM_CTR_MAX,
	       "counter table overflow");

struct shm_stage {
	_Alignas(128) int32_t pid;      /* 0: not running (or never ran) */
	uint32_t restarts;              /* starts after the first, counted by the stage */
	uint64_t started_ns;            /* CLOCK_REALTIME */
	uint64_t heartbeat_ns;          /* CLOCK_REALTIME, bumped by the stage's loop */
	uint64_t ctr[SHM_CTR_MAX];      /* written only by this stage */
};

/* Per-sink state published by sinkd for the stats command. */
struct shm_sink {
	_Alignas(128) char name[32];
	uint64_t committed_lsn;
	uint64_t records;
	uint64_t retries;
	uint32_t state;                 /* enum shm_sink_state */
	uint32_t pad_;
};
enum shm_sink_state { SINK_ST_OFF, SINK_ST_RUNNING, SINK_ST_RETRYING, SINK_ST_FAILED, SINK_ST_MAX };

struct shm_ctl {
	/* identity: written once by the creator, magic last */
	uint32_t magic;
	uint32_t layout_version;
	uint64_t size;
	uint64_t shm_id;                /* random per creation: the ring epoch */
	uint32_t nrings;
	uint32_t ndevices;
	uint64_t ring_bytes;
	uint64_t ring_off;              /* first ring header */
	uint64_t ring_stride;           /* header + data */
	uint64_t dev_off;
	uint64_t created_ns;

	/* set by flusherd once recovery has rebuilt the device table; ingestd
	 * answers no HELLO before it */
	_Alignas(128) uint32_t ready;
	/* the log (data directory) whose rings and device seqs this region
	 * holds, set by flusherd: a region is never paired with another log */
	uint64_t log_id;

	struct shm_stage stage[STAGE_MAX];
	struct shm_sink sink[SHM_MAX_SINKS];

	/* flusherd -> everyone: the log is durable up to durable_lsn; the seq
	 * moves on every publication (acks, ring space, sinkd) */
	_Alignas(128) uint64_t durable_lsn;
	struct futex_seq durable;
	/* ingestd -> flusherd: records were published to a ring */
	struct futex_seq work;
};

typedef struct shm_region {
	struct shm_ctl *ctl;
	size_t size;
	int created;                    /* this process created (and initialised) it */
	char name[96];
} shm_region_t;

struct shm_geom {
	uint32_t nrings;
	uint32_t ndevices;              /* power of two */
	uint64_t ring_bytes;            /* power of two */
};

#define SHM_ERR_LEN 256

/* Creates the region if missing (create != 0), else attaches.  err names
 * the region and the reason.  Returns 0 or -errno. */
int shm_open_region(const char *instance, const struct shm_geom *geom, int create,
		    shm_region_t *ret, char err[SHM_ERR_LEN]);
/* Attaches without knowing the geometry (stats command), read-only. */
int shm_attach_ro(const char *instance, shm_region_t *ret, char err[SHM_ERR_LEN]);
void shm_close_region(shm_region_t *r);
int shm_unlink_instance(const char *instance);
void shm_region_name(const char *instance, char *buf, size_t len);

/* Marks this process as the stage's live incarnation (pid, restart count). */
void shm_stage_start(struct shm_ctl *ctl, enum shm_stage_id s);
void shm_stage_heartbeat(struct shm_ctl *ctl, enum shm_stage_id s);
void shm_stage_stop(struct shm_ctl *ctl, enum shm_stage_id s);

struct ring_hdr;
static inline struct ring_hdr *shm_ring_hdr(struct shm_ctl *ctl, uint32_t i)
{
	return (struct ring_hdr *)(void *)((uint8_t *)ctl + ctl->ring_off + ctl->ring_stride * i);
}

static inline uint64_t *shm_ctr(struct shm_ctl *ctl, enum shm_stage_id s)
{
	return ctl->stage[s].ctr;
}

const char *shm_stage_name(enum shm_stage_id s);
/* Counter name, or NULL past the stage's last counter. */
const char *shm_counter_name(enum shm_stage_id s, unsigned i);
const char *shm_sink_state_name(unsigned st);
#endif
