/* shm — one POSIX shared-memory region per instance: /module-ingest.<name>.
 *
 * Layout (all offsets from the region start, every part 4 KiB aligned):
 *
 *   0              struct shm_ctl     identity, stages, counters, futexes
 *   ring_off(i)    struct ring_hdr    + ring_bytes of data, one per worker
 *   dev_off        struct shm_dev[devices]  the device table
 *
 * Lifecycle.  flusherd alone creates the region (mode 0600) and, when it
 * does not fit (layout, geometry, another log or data directory) and no live
 * stage holds it, discards it and makes it anew: the log is the authority
 * for everything acknowledged, so nothing acked is lost by that.  The
 * creator fills the region and stores the magic last, so an attacher that
 * sees the magic sees a whole region.  ingestd and sinkd only attach
 * (shm_attach_stage): they wait until a live flusherd has recovered their
 * own data directory into the region (ready_pid), and re-attach when the
 * one they hold was discarded.  Every read-write holder keeps a shared
 * flock(2) on the region's file; a stage stopping cleanly that finds itself
 * the last holder, with nothing left in the rings, removes the region
 * (shm_release), so a clean stop leaves nothing a later start trips on.
 * A stage is named by its pid and its start time (/proc/PID/stat field 22),
 * so a reused pid never passes for a live stage.
 * Fields written by different processes sit on different cache lines.
 */
#ifndef MI_SHM_H
#define MI_SHM_H
#include <stddef.h>
#include <stdint.h>

#include "shm/futex.h"

#define SHM_MAGIC 0x4853494du   /* "MISH" */
#define SHM_LAYOUT_VERSION 4
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
	FC_SYNC_HIST, FC_SYNC_HIST_END = FC_SYNC_HIST + 12,
	FC_RETIRED_SEGMENTS = FC_SYNC_HIST_END, FC_RETIRED_BYTES, FC_RECYCLED_SEGMENTS,
	FC_MAX
};
enum sinkd_ctr {
	SC_RECORDS, SC_BYTES, SC_BATCHES, SC_RETRIES, SC_FATAL, SC_COMMITS,
	SC_SKIPPED_RECORDS, SC_SKIPPED_BYTES,   /* retired before delivery (lag_policy) */
	SC_MAX
};

_Static_assert(IC_MAX <= SHM_CTR_MAX && FC_MAX <= SHM_CTR_MAX && SC_MAX <= SHM_CTR_MAX,
	       "counter table overflow");

struct shm_stage {
	_Alignas(128) int32_t pid;      /* 0: not running (or never ran) */
	uint32_t restarts;              /* starts after the first, counted by the stage */
	uint64_t pid_start;             /* the pid's start time in clock ticks (/proc) */
	uint64_t started_ns;            /* CLOCK_REALTIME */
	uint64_t heartbeat_ns;          /* CLOCK_REALTIME, bumped by the stage's loop */
	uint64_t ctr[SHM_CTR_MAX];      /* written only by this stage */
};

/* One sink instance, published by the sinkd process that runs it, for the
 * stats command.  The slot is the instance's place in [sinkd] sinks, so
 * sinkd processes running different instances (--only) never share one.
 * Written only by that instance's thread (relaxed stores; name and type
 * before state, released). */
struct shm_sink {
	_Alignas(128) char name[32];
	char type[32];
	int32_t pid;                    /* the sinkd process running it */
	uint32_t state;                 /* enum shm_sink_state */
	uint64_t pid_start;             /* that process's start time, as in shm_stage */
	uint64_t committed_lsn;         /* next LSN to deliver after a restart */
	uint64_t cursor_lsn;            /* delivered up to here */
	uint64_t records, bytes;        /* delivered (payload bytes) */
	uint64_t retries;               /* deliveries or commits retried */
	uint64_t failures;              /* deliveries or commits that failed */
	uint64_t oldest_ns;             /* server time of the oldest undelivered record; 0: caught up */
	uint64_t lag_records;           /* its topics' records not yet delivered, counted ahead ... */
	uint32_t lag_exact;             /* ... up to the durable end (0: still counting: at least) */
	uint32_t pad_;
	uint64_t skipped_records, skipped_bytes;
	char last_error[160];
};
enum shm_sink_state {
	SINK_ST_OFF, SINK_ST_RUNNING, SINK_ST_RETRYING, SINK_ST_STOPPED, SINK_ST_SKIPPING, SINK_ST_FAILING,
	SINK_ST_MAX
};

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

	/* set by flusherd once recovery has rebuilt the device table (the
	 * region has been recovered at least once); never cleared */
	_Alignas(128) uint32_t ready;
	/* the flusherd (pid, start time) that recovered the log into this
	 * region and still serves it; 0 while none does.  ingestd and sinkd
	 * attach only while it is alive: WELCOME tells a device its last
	 * durable seq, wrong until recovery has rebuilt the device table.
	 * Written by flusherd: ready_start, the data dir identity and log_id
	 * first, then ready_pid with release. */
	int32_t ready_pid;
	uint64_t ready_start;
	/* the log (data directory) whose rings and device seqs this region
	 * holds, set by flusherd: a region is never paired with another log */
	uint64_t log_id;
	uint64_t data_dev, data_ino;    /* stat(2) of the data directory */
	char data_dir[256];             /* its path, for messages */

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
	int fd;                         /* holds the shared flock; -1 read-only */
	char name[96];
} shm_region_t;

struct shm_geom {
	uint32_t nrings;
	uint32_t ndevices;              /* power of two */
	uint64_t ring_bytes;            /* power of two */
};

/* room for two data directory paths and the advice around them */
#define SHM_ERR_LEN 1024

/* Creates the region if missing (create != 0), else attaches, and takes a
 * shared flock on it.  err names the region and the reason.  Returns 0,
 * -ENOENT (no region, create == 0), -ESTALE (a region of another layout or
 * geometry: shm_discard() may replace it) or another -errno. */
int shm_open_region(const char *instance, const struct shm_geom *geom, int create,
		    shm_region_t *ret, char err[SHM_ERR_LEN]);
/* Attaches without knowing the geometry (stats command), read-only, no lock. */
int shm_attach_ro(const char *instance, shm_region_t *ret, char err[SHM_ERR_LEN]);
void shm_close_region(shm_region_t *r);
int shm_unlink_instance(const char *instance);
void shm_region_name(const char *instance, char *buf, size_t len);

/* Whether the region's name no longer leads to the region r maps (it was
 * discarded, or discarded and made anew). */
int shm_region_unlinked(const shm_region_t *r);

/* Removes the instance's region unless a live stage other than this process
 * is registered in it.  Returns 0 (removed, or there was none), or -EBUSY
 * with holders[] naming them ("flusherd 123, ingestd 456") and the data
 * directory they serve; other -errno with err. */
int shm_discard(const char *instance, char holders[SHM_ERR_LEN]);

/* The live stages registered in ctl other than this process, as
 * "flusherd 123, ingestd 456" (empty: none), sinkd processes that run one
 * sink instance (sinkd --only) included.  Returns how many. */
int shm_live_holders(const struct shm_ctl *ctl, char *buf, size_t len);

/* A clean stop: unmaps r and, when this process was its last holder and
 * the rings hold nothing the log lacks, removes the region.  Returns 1
 * removed or 0 kept; msg says which when it is worth a log line (removed,
 * or kept for the records in its rings), else is empty. */
int shm_release(shm_region_t *r, char msg[SHM_ERR_LEN]);

/* ingestd and sinkd: waits until the instance's region exists, fits geom,
 * and a live flusherd has recovered data_dir into it; re-attaches when the
 * region is discarded meanwhile.  waiting(why) is called each time the
 * reason for waiting changes (for one log line).  Returns 0, -EINTR when
 * *stop became set, -EUSERS when a live flusherd of another data directory
 * or geometry holds the instance (err says which, and how to run a second
 * pipeline), or another -errno (err). */
int shm_attach_stage(const char *instance, const struct shm_geom *geom, const char *data_dir,
		     const volatile int *stop, void (*waiting)(const char *why), shm_region_t *ret,
		     char err[SHM_ERR_LEN]);

/* flusherd, once recovery is done: records the data directory and itself
 * as the flusherd serving the region; ingestd and sinkd may attach. */
int shm_set_ready(struct shm_ctl *ctl, const char *data_dir, uint64_t log_id);
/* flusherd, stopping: no flusherd serves the region. */
void shm_clear_ready(struct shm_ctl *ctl);

/* Whether (pid, start) is a live process: not reused, not a zombie.
 * start 0 checks the pid alone. */
int shm_pid_alive(int32_t pid, uint64_t start);
/* The start time of pid in clock ticks since boot, or 0. */
uint64_t shm_pid_start(int32_t pid);

/* Marks this process as the stage's live incarnation (pid, restart count). */
void shm_stage_start(struct shm_ctl *ctl, enum shm_stage_id s);
void shm_stage_heartbeat(struct shm_ctl *ctl, enum shm_stage_id s);
void shm_stage_stop(struct shm_ctl *ctl, enum shm_stage_id s);
/* Whether the stage's registered incarnation is a live process. */
int shm_stage_alive(const struct shm_ctl *ctl, enum shm_stage_id s);

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
