/* auth — the keys-mode registry as ingestd holds it: loading (with topic
 * names resolved through [topics]), the per-frame policy of a session
 * (scopes, MAC or seal required) and SIGHUP reloads.
 *
 * A keyed session points at its device's entry in the current registry.
 * A reload builds a whole new registry first; if that fails the old one
 * stays, with every session.  Otherwise each keyed session is matched to
 * its device in the new registry: gone, disabled, a new key or a new
 * fingerprint closes it (the proof it gave no longer stands); anything
 * else (topics, require=) applies from its next frame on. */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "ingestd/ingestd.h"
#include "shm/atomic.h"

static int topic_lookup(void *ctx, const char *name, size_t len)
{
	return settings_topic_id(ctx, name, len);
}

int auth_load(const struct settings *s, keys_t **ret, char *err, size_t errlen)
{
	keys_t *k = NULL;
	int r = keys_load(s->keys_file, &k, err, errlen);
	if (r < 0)
		return r;
	r = keys_resolve_topics(k, topic_lookup, (void *)s, s->keys_file, err, errlen);
	if (r < 0) {
		keys_free(k);
		return r;
	}
	*ret = k;
	return 0;
}

enum auth_verdict auth_frame_allowed(const struct worker *w, const struct keys_device *d, uint16_t flags,
				     uint16_t topic)
{
	if (d->require == KEYS_REQ_SEAL && !(flags & MI_F_SEALED))
		return AUTH_NEED_SEAL;
	if ((d->require == KEYS_REQ_MAC || w->s->require_mac) && !(flags & (MI_F_MAC | MI_F_SEALED)))
		return AUTH_NEED_MAC;
	return keys_topic_id_allowed(d, topic) ? AUTH_OK : AUTH_TOPIC;
}

static const char *changed(const struct keys_device *old, const struct keys_device *now)
{
	if (!now)
		return "device removed from the keys file";
	if (!now->enabled)
		return "device disabled in the keys file";
	if (sodium_memcmp(old->key, now->key, KEYS_KEY_LEN))
		return "device key rotated in the keys file";
	if (old->has_fpr != now->has_fpr || (old->has_fpr && sodium_memcmp(old->fpr, now->fpr, KEYS_FPR_LEN)))
		return "device fingerprint changed in the keys file";
	return NULL;
}

void auth_reload(struct worker *w)
{
	char err[512];
	keys_t *k = NULL;
	if (!w->keys_mode) {
		log_info("SIGHUP: [auth] mode = open, no keys file to reload");
		return;
	}
	if (auth_load(w->s, &k, err, sizeof(err)) < 0) {
		log_error("SIGHUP: keys file not reloaded, the old one stays in force: %s", err);
		return;
	}
	unsigned closed = 0, kept = 0;
	for (int fd = 0; fd < w->nconns_max_fd; fd++) {
		struct conn *c = w->conns[fd];
		if (!c || c->state == CS_CLOSING || !c->dev)
			continue;
		const struct keys_device *now = keys_find(k, c->dev->id, c->dev->id_len);
		const char *why = changed(c->dev, now);
		if (why) {
			c->dev = NULL;
			closed++;
			conn_close(w, c, why);
		} else {
			c->dev = now;
			kept++;
		}
	}
	keys_free(w->keys);
	w->keys = k;
	shm_count(&w->ctr[IC_KEYS_RELOADS], 1);
	shm_count(&w->ctr[IC_RELOAD_CLOSED], closed);
	log_info("SIGHUP: reloaded %s: %zu devices; %u sessions kept, %u closed", w->s->keys_file, keys_count(k),
		 kept, closed);
}
