#include "sinkd/awscred.h"

#include <ctype.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void aws_creds_wipe(struct aws_creds *c)
{
	sodium_memzero(c, sizeof(*c));
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n && isspace((unsigned char)s[n - 1]))
		s[--n] = 0;
	return s;
}

static int put(char *dst, size_t cap, const char *v, const char *what, const char *where, char err[SINK_ERR_LEN])
{
	if (strlen(v) >= cap) {
		snprintf(err, SINK_ERR_LEN, "%.200s: %s is longer than %zu characters", where, what, cap - 1);
		return -EINVAL;
	}
	strcpy(dst, v);
	return 0;
}

static int from_env(struct aws_creds *c, char err[SINK_ERR_LEN])
{
	const char *id = getenv("AWS_ACCESS_KEY_ID"), *secret = getenv("AWS_SECRET_ACCESS_KEY");
	const char *token = getenv("AWS_SESSION_TOKEN");
	if (!secret || !*secret) {
		snprintf(err, SINK_ERR_LEN, "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not");
		return -EINVAL;
	}
	snprintf(c->source, sizeof(c->source), "the environment (AWS_ACCESS_KEY_ID)");
	int r = put(c->id, sizeof(c->id), id, "AWS_ACCESS_KEY_ID", "the environment", err);
	if (!r)
		r = put(c->secret, sizeof(c->secret), secret, "AWS_SECRET_ACCESS_KEY", "the environment", err);
	if (!r && token)
		r = put(c->token, sizeof(c->token), token, "AWS_SESSION_TOKEN", "the environment", err);
	return r;
}

static int from_file(const char *path, const char *profile, struct aws_creds *c, char err[SINK_ERR_LEN])
{
	FILE *f = fopen(path, "re");
	if (!f) {
		int e = errno;
		snprintf(err, SINK_ERR_LEN, "credentials file %.200s: %s (or set AWS_ACCESS_KEY_ID and "
			 "AWS_SECRET_ACCESS_KEY)", path, strerror(e));
		return -e;
	}
	snprintf(c->source, sizeof(c->source), "%.200s [%.100s]", path, profile);
	char line[4096];
	int in = 0, found = 0, r = 0;
	while (!r && fgets(line, sizeof(line), f)) {
		char *s = trim(line);
		if (!*s || *s == '#' || *s == ';')
			continue;
		if (*s == '[') {
			char *e = strchr(s, ']');
			if (e)
				*e = 0;
			/* the config file's form, [profile NAME], is read too */
			char *name = trim(s + 1);
			if (!strncmp(name, "profile ", 8))
				name = trim(name + 8);
			in = !strcmp(name, profile);
			found |= in;
			continue;
		}
		char *eq = strchr(s, '=');
		if (!in || !eq)
			continue;
		*eq = 0;
		char *k = trim(s), *v = trim(eq + 1);
		if (!strcmp(k, "aws_access_key_id"))
			r = put(c->id, sizeof(c->id), v, "aws_access_key_id", c->source, err);
		else if (!strcmp(k, "aws_secret_access_key"))
			r = put(c->secret, sizeof(c->secret), v, "aws_secret_access_key", c->source, err);
		else if (!strcmp(k, "aws_session_token"))
			r = put(c->token, sizeof(c->token), v, "aws_session_token", c->source, err);
	}
	sodium_memzero(line, sizeof(line));
	fclose(f);
	if (r)
		return r;
	if (!found || !c->id[0] || !c->secret[0]) {
		snprintf(err, SINK_ERR_LEN, "credentials file %.200s: %s", path,
			 !found ? "no such profile" : !c->id[0] ? "the profile has no aws_access_key_id" :
			 "the profile has no aws_secret_access_key");
		if (!found)
			snprintf(err + strlen(err), SINK_ERR_LEN - strlen(err), " [%.60s]", profile);
		return -ENOENT;
	}
	return 0;
}

int aws_creds_load(const char *file, const char *profile, struct aws_creds *c, char err[SINK_ERR_LEN])
{
	struct aws_creds n;
	memset(&n, 0, sizeof(n));
	int r;
	const char *id = getenv("AWS_ACCESS_KEY_ID");
	if (id && *id) {
		r = from_env(&n, err);
	} else {
		char path[512];
		const char *home = getenv("HOME");
		if (!*profile)
			profile = getenv("AWS_PROFILE") && *getenv("AWS_PROFILE") ? getenv("AWS_PROFILE") : "default";
		if (*file)
			snprintf(path, sizeof(path), "%s", file);
		else if (getenv("AWS_SHARED_CREDENTIALS_FILE") && *getenv("AWS_SHARED_CREDENTIALS_FILE"))
			snprintf(path, sizeof(path), "%s", getenv("AWS_SHARED_CREDENTIALS_FILE"));
		else
			snprintf(path, sizeof(path), "%s/.aws/credentials", home ? home : "");
		r = from_file(path, profile, &n, err);
	}
	if (r == 0) {
		aws_creds_wipe(c);
		*c = n;
	}
	sodium_memzero(&n, sizeof(n));
	return r;
}
