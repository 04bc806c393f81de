/* replay — offline verification of the whole log: flusherd --replay.
 *
 * Checks every segment header, that segments are contiguous, and every
 * record's CRC; reports each damage with file and offset.  --dump prints
 * one JSON object per DATA record; --repair cuts the log at the end of the
 * last whole write (MARK) before the first damage, exactly where recovery
 * would, and removes the segments after it, under the WAL lock.
 */
#ifndef MI_REPLAY_H
#define MI_REPLAY_H

#include "common/settings.h"

/* Returns the process exit code: 0 whole (or repaired), 1 damaged, 2 error. */
int replay_run(const struct settings *s, int dump, int repair);
#endif
