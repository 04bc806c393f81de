/* sink — the consumer interface.  A sink is one static descriptor.
 *
 * sinkd gives each sink its own thread and cursor: records are delivered in
 * LSN order, in batches, straight from the mmap'd segments (no copy).  After
 * a batch is delivered, sinkd may call commit(), which must make everything
 * delivered so far durable in the sink and return a small resume blob;
 * sinkd then stores (LSN, blob) in data/sinks/<name>.offset.  After a crash
 * the sink is initialised with the last stored blob and redelivered from the
 * stored LSN, so it must undo anything past its blob (the disk sink cuts its
 * files back) to avoid duplicates, or accept at-least-once.
 *
 * To add a sink: write sinkd/sink_<name>.c with one `const struct sink_desc`
 * and list it in sinkd/registry.c.
 */
#ifndef MI_SINK_H
#define MI_SINK_H
#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "common/record.h"

enum sink_rc { SINK_OK, SINK_RETRY, SINK_FATAL };

struct sink_item {
	uint64_t lsn;
	const struct rec_hdr *rec;   /* DATA record, valid during deliver() */
};

struct sink_env {
	const char *data_dir;        /* the instance's data directory */
	const char *name;
};

#define SINK_ERR_LEN 256

struct sink_desc {
	const char *name;
	const char *description;
	/* rows for section [sink_<name>], landing in a struct of cfg_size bytes */
	const struct cfg_opt *opts;
	size_t nopts;
	size_t cfg_size;
	/* blob: what commit() returned last time (NULL, 0 on a first start) */
	int (*init)(void **state, const void *cfg, const struct sink_env *env, const void *blob,
		    size_t blob_len, char err[SINK_ERR_LEN]);
	/* SINK_RETRY: the sink has gone back to its last commit (undone what it
	 * took since); sinkd redelivers from the committed LSN after *retry_ms
	 * (preset to a backoff with jitter, which the sink may change).
	 * SINK_FATAL: the sink stops; the others go on. */
	enum sink_rc (*deliver)(void *state, const struct sink_item *items, size_t n, uint32_t *retry_ms,
				char err[SINK_ERR_LEN]);
	/* Makes all delivered items durable; *blob (malloc'd, freed by sinkd) */
	int (*commit)(void *state, void **blob, size_t *blob_len, char err[SINK_ERR_LEN]);
	void (*exit)(void *state);
};

extern const struct sink_desc *const sink_registry[];
const struct sink_desc *sink_find(const char *name);
#endif
