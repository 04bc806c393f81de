/* index_retain — the index sink's retain_ms: a thread of the instance with
 * its own SQLite connection that, once a second, removes the rows whose
 * device time is older than retain_ms, in small transactions, whether or
 * not records arrive (a sink's calls come only with records).  WAL mode
 * lets it share the database with the instance's writer: each takes the
 * write lock in turn (busy timeout), and readers never wait.
 */
#ifndef MI_INDEX_RETAIN_H
#define MI_INDEX_RETAIN_H
#include <stdint.h>

#include "sinkd/sink.h"

struct index_retainer;

/* Opens path (made by the caller) and starts the thread.  0, or -errno
 * with err naming the database. */
int index_retain_start(struct index_retainer **ret, const char *path, int64_t retain_ms,
		       const struct sink_env *env, char err[SINK_ERR_LEN]);
/* Stops the thread (a pass under way ends first) and closes it all. */
void index_retain_stop(struct index_retainer *r);
#endif
