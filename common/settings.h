/* settings — the options every stage reads from the one INI file.
 *
 * All three daemons load the same table so a key means the same thing
 * everywhere; sink instances add their own keys in sections [sink.NAME]
 * (common/sinkcfg.h, sinkd/instance.h).
 */
#ifndef MI_SETTINGS_H
#define MI_SETTINGS_H
#include <stdint.h>

#include "common/config.h"

#define TOPICS_MAX 256
#define TOPIC_NAME_MAX 32

/* [topics] name = id: the names keys-file scopes use.  Names are 1-32 bytes
 * of [a-z0-9._-] (INI keys are case-insensitive: a name matches in any
 * case); ids 1..65535, each name and id once.  "default" is topic 0
 * unless the section names it otherwise. */
struct topic_def {
	char name[TOPIC_NAME_MAX + 1];
	uint16_t id;
};

struct settings {
	char instance[64];        /* names the shm region and bpffs dir */
	char data_dir[256];
	char listen[128];         /* host:port */
	char user[64];            /* drop to this user after binding ("" = stay) */
	char udp_listen[128];     /* host:port, "" = same as listen, "off" = none */
	uint64_t udp_rcvbuf;
	int64_t workers;
	int64_t max_connections;
	int64_t idle_timeout_ms;
	int64_t handshake_timeout_ms;
	uint64_t max_frame;
	char ack_wakeup[16];      /* auto, io_uring, thread */
	char auth_mode[16];       /* "open" or "keys" */
	char keys_file[256];      /* device registry, read by ingestd in keys mode */
	int ndjson;
	int require_mac;          /* keys mode: every TCP DATA frame must carry a MAC */
	uint64_t ring_bytes;
	int64_t devices;
	uint64_t segment_bytes;
	uint64_t commit_bytes;
	int64_t commit_us;
	int64_t checkpoint_ms;
	uint64_t retain_bytes;    /* retire the oldest segments above this (0: keep all) */
	int64_t retain_ms;        /* retire segments whose newest record is older (0: keep all) */
	char filter_mode[16];     /* auto, ebpf, classic, off */
	int64_t ban_after;        /* failures from one source ... */
	int64_t ban_window_ms;    /* ... within this window ... */
	int64_t ban_ms;           /* ... ban it for this long (0: no bans) */
	char log_level[16];
	char log_file[256];
	char sinks[256];          /* comma-separated sink names to run */
	int64_t sink_commit_ms;   /* how often sinks make their output durable */
	int64_t sink_batch_ms;    /* a caught-up sink reads again no sooner than this */
	uint32_t ntopics;
	struct topic_def topics[TOPICS_MAX];
};

extern const struct cfg_opt settings_opts[];
extern const unsigned settings_nopts;

/* Opens path (NULL: defaults), applies the core table and, when check is
 * set, rejects unknown keys outside sink_* sections.  Returns 0 or -errno
 * with err filled; on success *ret_cfg stays open for sink tables. */
int settings_load(const char *path, struct settings *ret, cfg_t **ret_cfg, int check,
		  char err[CFG_ERR_LEN]);
/* The id of the topic named name[0..len) (any case), or -1. */
int settings_topic_id(const struct settings *s, const char *name, size_t len);
#endif
