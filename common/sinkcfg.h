/* sinkcfg — the keys of a [sink.NAME] section that the log's retention
 * reads too: which topics the instance gets, and how far it may fall
 * behind (lag_cap_bytes, lag_policy).  sinkd and flusherd both read them
 * here, so an instance means the same thing to the stage that feeds it and
 * to the one that decides what of the log it still needs.
 *
 *   topics = telemetry, 7     [topics] names or ids; default: every topic
 *   lag_cap_bytes = 1G        how far behind the end of the log it may fall
 *   lag_policy = hold | skip  past that: hold the log (default), or let
 *                             retention pass it (it skips what retired)
 */
#ifndef MI_SINKCFG_H
#define MI_SINKCFG_H
#include <stdint.h>

#include "common/config.h"
#include "common/settings.h"

enum lag_policy {
	LAG_HOLD,               /* holds the log at its offset, however far behind */
	LAG_SKIP,               /* past lag_cap_bytes behind, retention passes it */
	LAG_POLICY_MAX
};

struct sinkcfg {
	uint8_t *topics;        /* bitmap of 65536 topics; NULL: every topic */
	uint64_t lag_cap_bytes; /* 0: no cap (only with hold) */
	enum lag_policy policy;
};

/* Reads the keys of [section] (instance name for messages).  A bad topic,
 * policy or a skip without a cap is -EINVAL with err naming the key.
 * Returns 0, -EINVAL or -ENOMEM. */
int sinkcfg_read(cfg_t *c, const struct settings *s, const char *section, struct sinkcfg *ret,
		 char err[CFG_ERR_LEN]);
void sinkcfg_free(struct sinkcfg *sc);
const char *lag_policy_name(enum lag_policy p);

/* A topic filter from ids (for tests and the runner); 0 or -ENOMEM. */
int topics_new(const uint16_t *ids, size_t n, uint8_t **ret);
static inline int topics_has(const uint8_t *topics, uint16_t topic)
{
	return !topics || (topics[topic >> 3] >> (topic & 7) & 1);
}
#endif
