#include "common/settings.h"
#include "common/log.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define S(f) offsetof(struct settings, f), sizeof(((struct settings *)0)->f)
#define N(f) offsetof(struct settings, f), 0

const struct cfg_opt settings_opts[] = {
	{ "instance", "name", CFG_STR, "default", S(instance), 0, 0, "instance name: shm /module-ingest.<name>" },
	{ "data", "dir", CFG_STR, "./data", S(data_dir), 0, 0, "data directory (wal/, meta, devices, sinks/)" },
	{ "server", "listen", CFG_STR, "127.0.0.1:7400", S(listen), 0, 0, "TCP address host:port" },
	{ "server", "user", CFG_STR, "", S(user), 0, 0, "after binding and loading filters, ingestd runs as this user ('' = stay)" },
	{ "server", "udp_listen", CFG_STR, "", S(udp_listen), 0, 0, "UDP address host:port ('' = same as listen, off = none)" },
	{ "server", "udp_rcvbuf", CFG_SIZE, "4M", N(udp_rcvbuf), 64 << 10, 1 << 30, "UDP socket receive buffer (SO_RCVBUF)" },
	{ "server", "workers", CFG_INT, "1", N(workers), 1, 1, "ingestd event loops (one ring each)" },
	{ "server", "max_connections", CFG_INT, "10000", N(max_connections), 1, 1000000, "connections beyond are refused" },
	{ "server", "idle_timeout_ms", CFG_INT, "120000", N(idle_timeout_ms), 0, 86400000, "close silent connections (0: never)" },
	{ "server", "handshake_timeout_ms", CFG_INT, "10000", N(handshake_timeout_ms), 100, 3600000,
	  "close connections without a session (HELLO; keys mode: AUTH) this long after accept" },
	{ "server", "ack_wakeup", CFG_STR, "auto", S(ack_wakeup), 0, 0,
	  "auto, io_uring or thread: how flusherd's durable wake-up reaches the event loop" },
	{ "server", "max_frame", CFG_SIZE, "64K", N(max_frame), 256, 16 << 20, "largest DATA payload accepted" },
	{ "auth", "mode", CFG_STR, "open", S(auth_mode), 0, 0, "open: any device id may send; keys: only devices of keys_file, with proof" },
	{ "auth", "keys_file", CFG_STR, "./keys", S(keys_file), 0, 0, "device registry for keys mode (mi-keys; mode 0600)" },
	{ "auth", "ndjson", CFG_BOOL, "false", N(ndjson), 0, 0, "accept the NDJSON line format (first byte '{')" },
	{ "auth", "require_mac", CFG_BOOL, "false", N(require_mac), 0, 0, "keys mode: every TCP DATA frame must carry a per-frame MAC (flags bit 1)" },
	{ "shm", "ring_bytes", CFG_SIZE, "64M", N(ring_bytes), 1 << 20, 1ll << 32, "ring per ingestd worker (power of two)" },
	{ "shm", "devices", CFG_INT, "65536", N(devices), 16, 1 << 24, "device table slots (power of two)" },
	{ "wal", "segment_bytes", CFG_SIZE, "64M", N(segment_bytes), 1 << 20, 1ll << 32, "segment size before rotation" },
	{ "wal", "commit_bytes", CFG_SIZE, "4M", N(commit_bytes), 4096, 1ll << 30, "group commit: sync after this many bytes" },
	{ "wal", "commit_us", CFG_INT, "1000", N(commit_us), 0, 1000000, "group commit: sync after this long" },
	{ "wal", "checkpoint_ms", CFG_INT, "1000", N(checkpoint_ms), 10, 3600000, "meta + device checkpoint interval" },
	{ "wal", "retain_bytes", CFG_SIZE, "0", N(retain_bytes), 0, INT64_MAX,
	  "retire the oldest segments, once every sink is past them, while the log is larger (0: keep all)" },
	{ "wal", "retain_ms", CFG_INT, "0", N(retain_ms), 0, 3153600000000ll,
	  "retire segments whose newest record is older, once every sink is past them (0: keep all)" },
	{ "filter", "mode", CFG_STR, "auto", S(filter_mode), 0, 0, "auto, ebpf, classic or off: kernel filters on the sockets" },
	{ "filter", "ban_after", CFG_INT, "10", N(ban_after), 1, 1000000, "failed handshakes / framing errors from one address ..." },
	{ "filter", "ban_window_ms", CFG_INT, "10000", N(ban_window_ms), 100, 86400000, "... within this window ..." },
	{ "filter", "ban_ms", CFG_INT, "60000", N(ban_ms), 0, 86400000, "... ban the address for this long (0: never ban)" },
	{ "log", "level", CFG_STR, "info", S(log_level), 0, 0, "error, warn, info or debug" },
	{ "log", "file", CFG_STR, "-", S(log_file), 0, 0, "log file, '-' for stdout" },
	{ "sinkd", "sinks", CFG_STR, "disk", S(sinks), 0, 0,
	  "comma-separated sink instances to run, each configured in [sink.NAME]" },
	{ "sinkd", "commit_ms", CFG_INT, "1000", N(sink_commit_ms), 10, 3600000,
	  "default of every instance's commit_ms: its commit (fsync + offset) interval" },
	{ "sinkd", "batch_ms", CFG_INT, "5", N(sink_batch_ms), 0, 60000,
	  "default of every instance's batch_ms: how long a short batch waits for more (0: deliver at once)" },
};
const unsigned settings_nopts = sizeof(settings_opts) / sizeof(settings_opts[0]);

static int pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

static int topic_name_valid(const char *n)
{
	size_t len = strlen(n);
	if (len < 1 || len > TOPIC_NAME_MAX)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!islower((unsigned char)n[i]) && !isdigit((unsigned char)n[i]) && !strchr("._-", n[i]))
			return 0;
	return 1;
}

static int load_topics(cfg_t *c, struct settings *s, char err[CFG_ERR_LEN])
{
	const char **keys, **vals;
	int n = cfg_section_pairs(c, "topics", &keys, &vals), r = 0;
	if (n < 0) {
		snprintf(err, CFG_ERR_LEN, "[topics]: out of memory");
		return n;
	}
	if (n > TOPICS_MAX) {
		snprintf(err, CFG_ERR_LEN, "[topics]: %d names, at most %d", n, TOPICS_MAX);
		r = -EINVAL;
		goto out;
	}
	for (int i = 0; i < n && r == 0; i++) {
		char *end;
		errno = 0;
		long id = strtol(vals[i], &end, 10);
		r = -EINVAL;
		if (!topic_name_valid(keys[i]))
			snprintf(err, CFG_ERR_LEN, "[topics] %s: a topic name is 1-%d bytes of [a-z0-9._-]", keys[i],
				 TOPIC_NAME_MAX);
		else if (errno || end == vals[i] || *end || id < 0 || id > 65535 ||
			 (id == 0) != !strcmp(keys[i], "default"))
			snprintf(err, CFG_ERR_LEN, "[topics] %s = '%s': a topic id is 1..65535 (0 is 'default', always)",
				 keys[i], vals[i]);
		else
			r = 0;
		for (uint32_t j = 0; r == 0 && j < s->ntopics; j++)
			if (s->topics[j].id == id) {
				snprintf(err, CFG_ERR_LEN, "[topics] %s = %ld: id already named '%s'", keys[i], id,
					 s->topics[j].name);
				r = -EINVAL;
			}
		if (r == 0) {
			snprintf(s->topics[s->ntopics].name, sizeof(s->topics[0].name), "%s", keys[i]);
			s->topics[s->ntopics++].id = (uint16_t)id;
		}
	}
out:
	free(keys);
	free(vals);
	return r;
}

int settings_topic_id(const struct settings *s, const char *name, size_t len)
{
	for (uint32_t i = 0; i < s->ntopics; i++)
		if (strlen(s->topics[i].name) == len && !strncasecmp(s->topics[i].name, name, len))
			return s->topics[i].id;
	return len == 7 && !strncasecmp(name, "default", 7) ? 0 : -1;
}

int settings_load(const char *path, struct settings *ret, cfg_t **ret_cfg, int check,
		  char err[CFG_ERR_LEN])
{
	cfg_t *c = NULL;
	struct settings s;
	memset(&s, 0, sizeof(s));
	int r = cfg_open(path, &c, err);
	if (r < 0)
		return r;
	r = cfg_apply(c, settings_opts, settings_nopts, &s, err);
	if (r < 0)
		goto fail;
	if ((r = load_topics(c, &s, err)) < 0)
		goto fail;
	static const char *const skip[] = { "sink_", "sink.", NULL };
	if (check && (r = cfg_check_unused(c, skip, err)) < 0)
		goto fail;
	r = -EINVAL;
	if (strcmp(s.auth_mode, "open") && strcmp(s.auth_mode, "keys")) {
		snprintf(err, CFG_ERR_LEN, "[auth] mode = '%s': use open or keys", s.auth_mode);
		goto fail;
	}
	if (!pow2(s.ring_bytes)) {
		snprintf(err, CFG_ERR_LEN, "[shm] ring_bytes = %llu: must be a power of two", (unsigned long long)s.ring_bytes);
		goto fail;
	}
	if (!pow2((uint64_t)s.devices)) {
		snprintf(err, CFG_ERR_LEN, "[shm] devices = %lld: must be a power of two", (long long)s.devices);
		goto fail;
	}
	/* a record must fit the ring with room for a second batch behind it */
	if (s.max_frame + 4096 > s.ring_bytes / 4) {
		snprintf(err, CFG_ERR_LEN, "[server] max_frame = %llu: must be under a quarter of [shm] ring_bytes",
			 (unsigned long long)s.max_frame);
		goto fail;
	}
	if (s.commit_bytes > s.ring_bytes / 2) {
		snprintf(err, CFG_ERR_LEN, "[wal] commit_bytes = %llu: must be at most half of [shm] ring_bytes",
			 (unsigned long long)s.commit_bytes);
		goto fail;
	}
	if (s.max_frame + 4096 > s.segment_bytes) {
		snprintf(err, CFG_ERR_LEN, "[wal] segment_bytes = %llu: smaller than a max_frame record",
			 (unsigned long long)s.segment_bytes);
		goto fail;
	}
	if (strcmp(s.ack_wakeup, "auto") && strcmp(s.ack_wakeup, "io_uring") && strcmp(s.ack_wakeup, "thread")) {
		snprintf(err, CFG_ERR_LEN, "[server] ack_wakeup = '%s': use auto, io_uring or thread", s.ack_wakeup);
		goto fail;
	}
	if (strcmp(s.filter_mode, "auto") && strcmp(s.filter_mode, "ebpf") && strcmp(s.filter_mode, "classic") &&
	    strcmp(s.filter_mode, "off")) {
		snprintf(err, CFG_ERR_LEN, "[filter] mode = '%s': use auto, ebpf, classic or off", s.filter_mode);
		goto fail;
	}
	if (log_level_parse(s.log_level) < 0) {
		snprintf(err, CFG_ERR_LEN, "[log] level = '%s': use error, warn, info or debug", s.log_level);
		goto fail;
	}
	*ret = s;
	*ret_cfg = c;
	return 0;
fail:
	cfg_close(c);
	return r;
}
