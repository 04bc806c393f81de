#include "common/sinkcfg.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct keys {
	char topics[512];
	uint64_t lag_cap_bytes;
	char lag_policy[16];
};

#define K(f) offsetof(struct keys, f)
#define KS(f) sizeof(((struct keys *)0)->f)
static const struct cfg_opt rows[] = {
	{ NULL, "topics", CFG_STR, "", K(topics), KS(topics), 0, 0,
	  "comma-separated [topics] names or ids this instance gets; default: every topic" },
	{ NULL, "lag_cap_bytes", CFG_SIZE, "0", K(lag_cap_bytes), 0, 0, INT64_MAX,
	  "how far (log bytes) the instance may fall behind the end of the log before lag_policy applies; "
	  "0: no cap" },
	{ NULL, "lag_policy", CFG_STR, "hold", K(lag_policy), KS(lag_policy), 0, 0,
	  "hold: the instance keeps every segment it still needs (the disk may fill); skip: past "
	  "lag_cap_bytes, retention passes it and it skips what retired (counted, logged)" },
};
#define NROWS (sizeof(rows) / sizeof(rows[0]))

int topics_new(const uint16_t *ids, size_t n, uint8_t **ret)
{
	uint8_t *t = calloc(65536 / 8, 1);
	if (!t)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		t[ids[i] >> 3] |= (uint8_t)(1u << (ids[i] & 7));
	*ret = t;
	return 0;
}

static int parse_topics(const struct settings *s, const char *section, const char *list, uint8_t **ret,
			char err[CFG_ERR_LEN])
{
	uint16_t ids[256];
	size_t n = 0;
	char buf[512], *save = NULL;
	snprintf(buf, sizeof(buf), "%s", list);
	for (char *t = strtok_r(buf, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
		char *end;
		unsigned long v = strtoul(t, &end, 10);
		int id = *end == 0 && end != t ? (v <= 65535 ? (int)v : -1) : settings_topic_id(s, t, strlen(t));
		if (id < 0) {
			snprintf(err, CFG_ERR_LEN, "[%s] topics: '%s' is neither a topic id (0..65535) nor a name "
				 "in [topics]", section, t);
			return -EINVAL;
		}
		if (n == sizeof(ids) / sizeof(ids[0])) {
			snprintf(err, CFG_ERR_LEN, "[%s] topics: more than %zu", section, n);
			return -EINVAL;
		}
		ids[n++] = (uint16_t)id;
	}
	*ret = NULL;
	return n ? topics_new(ids, n, ret) : 0;
}

int sinkcfg_read(cfg_t *c, const struct settings *s, const char *section, struct sinkcfg *ret,
		 char err[CFG_ERR_LEN])
{
	struct cfg_opt r[NROWS];
	struct keys k;
	memcpy(r, rows, sizeof(r));
	for (size_t i = 0; i < NROWS; i++)
		r[i].section = section;
	memset(&k, 0, sizeof(k));
	memset(ret, 0, sizeof(*ret));
	int e = cfg_apply(c, r, NROWS, &k, err);
	if (e < 0)
		return e;
	if (!strcmp(k.lag_policy, "hold")) {
		ret->policy = LAG_HOLD;
	} else if (!strcmp(k.lag_policy, "skip")) {
		ret->policy = LAG_SKIP;
		if (!k.lag_cap_bytes) {
			snprintf(err, CFG_ERR_LEN, "[%s] lag_policy = skip needs lag_cap_bytes: how far behind the "
				 "instance may fall before retention passes it", section);
			return -EINVAL;
		}
	} else {
		snprintf(err, CFG_ERR_LEN, "[%s] lag_policy = '%s': use hold or skip", section, k.lag_policy);
		return -EINVAL;
	}
	ret->lag_cap_bytes = k.lag_cap_bytes;
	return parse_topics(s, section, k.topics, &ret->topics, err);
}

void sinkcfg_free(struct sinkcfg *sc)
{
	free(sc->topics);
	sc->topics = NULL;
}

const char *lag_policy_name(enum lag_policy p)
{
	return p == LAG_SKIP ? "skip" : "hold";
}
