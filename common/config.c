#include "common/config.h"

#include <ctype.h>
#include <errno.h>
#include <iniparser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

extern char **environ;

#define CFG_CLAIM_MAX 1024

struct cfg {
	dictionary *d;
	char path[256];
	/* "section:key" (iniparser lower-cases) and env names claimed so far */
	char *claimed[CFG_CLAIM_MAX];
	int nclaimed;
	const char **secnames;
	int nsec;
};

static void claim(cfg_t *c, const char *s)
{
	if (c->nclaimed < CFG_CLAIM_MAX)
		c->claimed[c->nclaimed++] = strdup(s);
}

/* File keys: iniparser lower-cases them, so compare without case. */
static int claimed(const cfg_t *c, const char *s)
{
	for (int i = 0; i < c->nclaimed; i++)
		if (c->claimed[i] && !strcasecmp(c->claimed[i], s))
			return 1;
	return 0;
}

/* Environment names: getenv() is case-sensitive, so this must be too, or
 * INGEST_wal_commit_us would be neither read nor reported. */
static int claimed_env(const cfg_t *c, const char *s)
{
	for (int i = 0; i < c->nclaimed; i++)
		if (c->claimed[i] && !strcmp(c->claimed[i], s))
			return 1;
	return 0;
}

/* iniparser prints parse errors to stderr itself; we also check the file can
 * be read first so a missing file gets our own message. */
int cfg_open(const char *path, cfg_t **ret, char err[CFG_ERR_LEN])
{
	cfg_t *c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, CFG_ERR_LEN, "out of memory");
		return -ENOMEM;
	}
	if (path) {
		snprintf(c->path, sizeof(c->path), "%s", path);
		if (access(path, R_OK) < 0) {
			int e = errno;
			snprintf(err, CFG_ERR_LEN, "config %s: %s", path, strerror(e));
			free(c);
			return -e;
		}
		c->d = iniparser_load(path);
		if (!c->d) {
			snprintf(err, CFG_ERR_LEN, "config %s: cannot parse (see the line iniparser named above)", path);
			free(c);
			return -EINVAL;
		}
	} else {
		snprintf(c->path, sizeof(c->path), "(no file)");
		c->d = dictionary_new(0);
	}
	*ret = c;
	return 0;
}

void cfg_close(cfg_t *c)
{
	if (!c)
		return;
	for (int i = 0; i < c->nclaimed; i++)
		free(c->claimed[i]);
	free(c->secnames);
	if (c->d)
		iniparser_freedict(c->d);
	free(c);
}

static void env_name(const char *section, const char *key, char *buf, size_t len)
{
	snprintf(buf, len, "INGEST_%s_%s", section, key);
	for (char *p = buf; *p; p++)
		*p = (*p == '.' || *p == '-') ? '_' : (char)toupper((unsigned char)*p);
}

static int parse_bool(const char *v, int *ret)
{
	static const char *const t[] = { "1", "true", "yes", "on" }, *const f[] = { "0", "false", "no", "off" };
	for (int i = 0; i < 4; i++) {
		if (!strcasecmp(v, t[i]))
			return *ret = 1, 0;
		if (!strcasecmp(v, f[i]))
			return *ret = 0, 0;
	}
	return -1;
}

static int parse_size(const char *v, uint64_t *ret)
{
	char *end;
	errno = 0;
	unsigned long long n = strtoull(v, &end, 10);
	if (errno || end == v || *v == '-')
		return -1;
	uint64_t mul = 1;
	switch (toupper((unsigned char)*end)) {
	case 0: break;
	case 'K': mul = 1ull << 10; end++; break;
	case 'M': mul = 1ull << 20; end++; break;
	case 'G': mul = 1ull << 30; end++; break;
	default: return -1;
	}
	if (*end == 'i' || *end == 'I')
		end++;
	if (*end == 'b' || *end == 'B')
		end++;
	if (*end || n > UINT64_MAX / mul)
		return -1;
	*ret = n * mul;
	return 0;
}

static int set_one(const struct cfg_opt *o, const char *v, void *dst, const char *where,
		   char err[CFG_ERR_LEN])
{
	char *p = (char *)dst + o->off;
	switch (o->type) {
	case CFG_STR:
		if (strlen(v) >= o->size) {
			snprintf(err, CFG_ERR_LEN, "%s: [%s] %s: value longer than %zu bytes", where,
				 o->section, o->key, o->size - 1);
			return -EINVAL;
		}
		memcpy(p, v, strlen(v) + 1);
		return 0;
	case CFG_INT: {
		char *end;
		errno = 0;
		long long n = strtoll(v, &end, 10);
		if (errno || end == v || *end) {
			snprintf(err, CFG_ERR_LEN, "%s: [%s] %s = '%s': not an integer", where, o->section,
				 o->key, v);
			return -EINVAL;
		}
		if (n < o->min || n > o->max) {
			snprintf(err, CFG_ERR_LEN, "%s: [%s] %s = %lld: out of range %lld..%lld", where,
				 o->section, o->key, n, (long long)o->min, (long long)o->max);
			return -EINVAL;
		}
		*(int64_t *)(void *)p = n;
		return 0;
	}
	case CFG_SIZE: {
		uint64_t n;
		if (parse_size(v, &n) < 0) {
			snprintf(err, CFG_ERR_LEN, "%s: [%s] %s = '%s': not a size (e.g. 4096, 64K, 16M, 1G)",
				 where, o->section, o->key, v);
			return -EINVAL;
		}
		if (n < (uint64_t)o->min || n > (uint64_t)o->max) {
			snprintf(err, CFG_ERR_LEN, "%s: [%s] %s = %s: out of range %lld..%lld bytes", where,
				 o->section, o->key, v, (long long)o->min, (long long)o->max);
			return -EINVAL;
		}
		*(uint64_t *)(void *)p = n;
		return 0;
	}
	case CFG_BOOL: {
		int b;
		if (parse_bool(v, &b) < 0) {
			snprintf(err, CFG_ERR_LEN, "%s: [%s] %s = '%s': not a boolean (true/false)", where,
				 o->section, o->key, v);
			return -EINVAL;
		}
		*(int *)(void *)p = b;
		return 0;
	}
	default:
		snprintf(err, CFG_ERR_LEN, "[%s] %s: bad option type", o->section, o->key);
		return -EINVAL;
	}
}

int cfg_apply(cfg_t *c, const struct cfg_opt *opts, size_t n, void *dst, char err[CFG_ERR_LEN])
{
	for (size_t i = 0; i < n; i++) {
		const struct cfg_opt *o = &opts[i];
		char ek[160], fk[160], where[320];
		env_name(o->section, o->key, ek, sizeof(ek));
		snprintf(fk, sizeof(fk), "%s:%s", o->section, o->key);
		claim(c, ek);
		claim(c, fk);
		const char *v = getenv(ek);
		if (v) {
			snprintf(where, sizeof(where), "environment %s", ek);
		} else {
			v = iniparser_getstring(c->d, fk, NULL);
			if (v) {
				snprintf(where, sizeof(where), "config %s", c->path);
			} else {
				v = o->def;
				snprintf(where, sizeof(where), "built-in default");
			}
		}
		int r = set_one(o, v, dst, where, err);
		if (r < 0)
			return r;
	}
	return 0;
}

static int skipped(const char *sec, const char *const *skip)
{
	for (; skip && *skip; skip++)
		if (!strncasecmp(sec, *skip, strlen(*skip)))
			return 1;
	return 0;
}

int cfg_check_unused(cfg_t *c, const char *const *skip, char err[CFG_ERR_LEN])
{
	/* iniparser files a key above the first [section] as ":key" */
	for (ssize_t i = 0; i < c->d->size; i++)
		if (c->d->key[i] && c->d->key[i][0] == ':') {
			snprintf(err, CFG_ERR_LEN, "config %s: key '%s' outside any [section]", c->path, c->d->key[i] + 1);
			return -EINVAL;
		}
	int nsec = iniparser_getnsec(c->d);
	for (int s = 0; s < nsec; s++) {
		const char *sec = iniparser_getsecname(c->d, s);
		if (skipped(sec, skip))
			continue;
		int nk = iniparser_getsecnkeys(c->d, sec);
		if (nk == 0) {
			char fk[160];
			/* an empty section still must be known: claimed as a prefix */
			int known = 0;
			snprintf(fk, sizeof(fk), "%s:", sec);
			for (int i = 0; i < c->nclaimed; i++)
				if (c->claimed[i] && !strncasecmp(c->claimed[i], fk, strlen(fk)))
					known = 1;
			if (!known) {
				snprintf(err, CFG_ERR_LEN, "config %s: unknown section [%s]", c->path, sec);
				return -EINVAL;
			}
			continue;
		}
		const char **keys = calloc((size_t)nk, sizeof(*keys));
		if (!keys)
			return -ENOMEM;
		iniparser_getseckeys(c->d, sec, keys);
		for (int k = 0; k < nk; k++) {
			if (!claimed(c, keys[k])) {
				const char *colon = strchr(keys[k], ':');
				snprintf(err, CFG_ERR_LEN, "config %s: unknown key '%s' in section [%s]",
					 c->path, colon ? colon + 1 : keys[k], sec);
				free(keys);
				return -EINVAL;
			}
		}
		free(keys);
	}
	for (char **e = environ; *e; e++) {
		if (strncmp(*e, "INGEST_", 7))
			continue;
		char name[160];
		const char *eq = strchr(*e, '=');
		size_t len = eq ? (size_t)(eq - *e) : strlen(*e);
		if (len >= sizeof(name))
			len = sizeof(name) - 1;
		memcpy(name, *e, len);
		name[len] = 0;
		if (claimed_env(c, name))
			continue;
		/* a variable for a section another binary owns is not ours to judge */
		int other = 0;
		for (const char *const *p = skip; p && *p; p++) {
			char pre[80];
			env_name(*p, "", pre, sizeof(pre));
			if (!strncmp(name, pre, strlen(pre) - 1))
				other = 1;
		}
		if (!other) {
			snprintf(err, CFG_ERR_LEN, "environment %s: no such config key", name);
			return -EINVAL;
		}
	}
	return 0;
}

int cfg_section_pairs(cfg_t *c, const char *section, const char ***keys, const char ***vals)
{
	*keys = *vals = NULL;
	if (!c->d || !iniparser_find_entry(c->d, section))
		return 0;
	int nk = iniparser_getsecnkeys(c->d, section);
	char fk[160];
	snprintf(fk, sizeof(fk), "%s:", section);
	claim(c, fk);   /* an empty section is known too */
	if (nk <= 0)
		return 0;
	*keys = calloc((size_t)nk, sizeof(**keys));
	*vals = calloc((size_t)nk, sizeof(**vals));
	if (!*keys || !*vals) {
		free(*keys);
		free(*vals);
		*keys = *vals = NULL;
		return -ENOMEM;
	}
	iniparser_getseckeys(c->d, section, *keys);
	for (int i = 0; i < nk; i++) {
		claim(c, (*keys)[i]);
		(*vals)[i] = iniparser_getstring(c->d, (*keys)[i], "");
		const char *colon = strchr((*keys)[i], ':');
		if (colon)
			(*keys)[i] = colon + 1;
	}
	return nk;
}

int cfg_sections(const cfg_t *c, const char ***ret_names)
{
	cfg_t *m = (cfg_t *)c;
	if (!m->secnames) {
		m->nsec = iniparser_getnsec(c->d);
		m->secnames = calloc((size_t)(m->nsec ? m->nsec : 1), sizeof(char *));
		if (!m->secnames)
			return 0;
		for (int i = 0; i < m->nsec; i++)
			m->secnames[i] = iniparser_getsecname(c->d, i);
	}
	*ret_names = m->secnames;
	return m->nsec;
}

void cfg_print_help(FILE *f, const struct cfg_opt *opts, size_t n)
{
	const char *sec = "";
	for (size_t i = 0; i < n; i++) {
		if (strcmp(sec, opts[i].section)) {
			sec = opts[i].section;
			fprintf(f, "  [%s]\n", sec);
		}
		fprintf(f, "    %-18s %-14s %s\n", opts[i].key, opts[i].def, opts[i].desc);
	}
}
