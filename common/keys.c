/* keys — the device registry; file format and API in common/keys.h. */
#include "common/keys.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

struct keys {
	struct keys_device *dev;   /* file order */
	size_t n, cap;
	uint32_t *slot;            /* open addressing: index + 1, 0 = empty */
	size_t nslot;              /* power of two, >= 2 * cap */
};

static const char header_line[] =
	"# module-ingest device registry: <device> key=<base64> topics=<a,b|*> [fpr=<hex>] [require=mac|seal] [disabled]\n"
	"# written by mi-keys; format in common/keys.h; must stay mode 0600\n";

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* A token from the file, safe to quote in a message: at most 64 bytes,
 * non-printable bytes as '?'. */
static const char *quote(const char *s, size_t len, char out[72])
{
	size_t n = len > 64 ? 64 : len;
	for (size_t i = 0; i < n; i++)
		out[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	if (n < len) {
		memcpy(out + n, "...", 3);
		n += 3;
	}
	out[n] = '\0';
	return out;
}

static uint32_t hash_id(const char *id, size_t len)
{
	uint32_t h = 2166136261u;          /* FNV-1a */
	for (size_t i = 0; i < len; i++)
		h = (h ^ (uint8_t)id[i]) * 16777619u;
	return h;
}

static void slot_insert(keys_t *k, size_t idx)
{
	const struct keys_device *d = &k->dev[idx];
	size_t mask = k->nslot - 1, i = hash_id(d->id, d->id_len) & mask;
	while (k->slot[i])
		i = (i + 1) & mask;
	k->slot[i] = (uint32_t)idx + 1;
}

static void rehash(keys_t *k)
{
	memset(k->slot, 0, k->nslot * sizeof(*k->slot));
	for (size_t i = 0; i < k->n; i++)
		slot_insert(k, i);
}

static struct keys_device *find(const keys_t *k, const char *id, size_t len)
{
	if (!k->nslot || len == 0 || len > MI_DEVID_MAX)
		return NULL;
	size_t mask = k->nslot - 1, i = hash_id(id, len) & mask;
	for (uint32_t s; (s = k->slot[i]) != 0; i = (i + 1) & mask) {
		struct keys_device *d = &k->dev[s - 1];
		if (d->id_len == len && memcmp(d->id, id, len) == 0)
			return d;
	}
	return NULL;
}

/* Room for one more device: a new array (the old one wiped) and hash. */
static int grow(keys_t *k)
{
	if (k->n < k->cap)
		return 0;
	if (k->cap >= KEYS_MAX)
		return -E2BIG;
	size_t cap = k->cap ? k->cap * 2 : 64;
	struct keys_device *dev = calloc(cap, sizeof(*dev));
	uint32_t *slot = calloc(cap * 2, sizeof(*slot));
	if (!dev || !slot) {
		free(dev);
		free(slot);
		return -ENOMEM;
	}
	if (k->dev) {
		memcpy(dev, k->dev, k->n * sizeof(*dev));
		sodium_memzero(k->dev, k->cap * sizeof(*k->dev));
	}
	free(k->dev);
	free(k->slot);
	k->dev = dev;
	k->cap = cap;
	k->slot = slot;
	k->nslot = cap * 2;
	rehash(k);
	return 0;
}

int keys_new(keys_t **ret)
{
	keys_t *k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	*ret = k;
	return 0;
}

void keys_free(keys_t *k)
{
	if (!k)
		return;
	if (k->dev)
		sodium_memzero(k->dev, k->cap * sizeof(*k->dev));
	free(k->dev);
	free(k->slot);
	free(k);
}

size_t keys_count(const keys_t *k)
{
	return k->n;
}

const struct keys_device *keys_at(const keys_t *k, size_t i)
{
	return i < k->n ? &k->dev[i] : NULL;
}

const struct keys_device *keys_find(const keys_t *k, const char *id, size_t id_len)
{
	return find(k, id, id_len);
}

int keys_topic_allowed(const struct keys_device *d, const char *name, size_t len)
{
	if (d->all_topics)
		return 1;
	for (const char *p = d->topics; *p;) {
		size_t n = strcspn(p, ",");
		if (n == len && memcmp(p, name, len) == 0)
			return 1;
		p += n;
		if (*p == ',')
			p++;
	}
	return 0;
}

static int topic_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '-';
}

/* Validates a topics= value and, when d is not NULL, stores it there. */
static int parse_topics(const char *s, size_t len, struct keys_device *d, char *why, size_t whylen)
{
	char q[72];
	if (len == 1 && s[0] == '*') {
		if (d) {
			memcpy(d->topics, "*", 2);
			d->all_topics = 1;
			d->ntopics = 0;
		}
		return 0;
	}
	if (len == 0)
		return fail(why, whylen, -EINVAL, "empty topics= (give names, or * for every topic)");
	if (len >= KEYS_TOPICS_LEN)
		return fail(why, whylen, -EINVAL, "topics= list is %zu bytes, at most %d", len,
			    KEYS_TOPICS_LEN - 1);
	const char *name[KEYS_TOPICS_MAX];
	size_t nlen[KEYS_TOPICS_MAX], count = 0;
	for (size_t i = 0; i <= len;) {
		size_t j = i;
		while (j < len && s[j] != ',')
			j++;
		size_t n = j - i;
		if (n == 0)
			return fail(why, whylen, -EINVAL, "empty topic name in topics=%s",
				    quote(s, len, q));
		if (n > KEYS_TOPIC_NAME_MAX)
			return fail(why, whylen, -EINVAL, "topic name '%s' longer than %d characters",
				    quote(s + i, n, q), KEYS_TOPIC_NAME_MAX);
		for (size_t c = i; c < j; c++)
			if (!topic_char(s[c]))
				return fail(why, whylen, -EINVAL,
					    "topic name '%s': only A-Z a-z 0-9 . _ - (or topics=* alone)",
					    quote(s + i, n, q));
		if (count == KEYS_TOPICS_MAX)
			return fail(why, whylen, -EINVAL, "more than %d topics", KEYS_TOPICS_MAX);
		for (size_t t = 0; t < count; t++)
			if (nlen[t] == n && memcmp(name[t], s + i, n) == 0)
				return fail(why, whylen, -EINVAL, "topic '%s' listed twice",
					    quote(s + i, n, q));
		name[count] = s + i;
		nlen[count++] = n;
		i = j + 1;
	}
	if (d) {
		memcpy(d->topics, s, len);
		d->topics[len] = '\0';
		d->all_topics = 0;
		d->ntopics = (uint8_t)count;
	}
	return 0;
}

int keys_topics_valid(const char *topics, size_t len, char *err, size_t errlen)
{
	return parse_topics(topics, len, NULL, err, errlen);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int keys_fpr_parse(const char *hex, size_t len, uint8_t fpr[KEYS_FPR_LEN])
{
	uint8_t out[KEYS_FPR_LEN];
	if (len != 2 * KEYS_FPR_LEN)
		return -EINVAL;
	for (size_t i = 0; i < KEYS_FPR_LEN; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	memcpy(fpr, out, sizeof(out));
	return 0;
}

static int parse_key(const char *s, size_t len, uint8_t key[KEYS_KEY_LEN], char *why, size_t whylen)
{
	uint8_t tmp[96];
	size_t bl = 0;
	const char *end = NULL;
	if (len == 0)
		return fail(why, whylen, -EINVAL, "empty key=");
	if (len > 128)
		return fail(why, whylen, -EINVAL, "key= is %zu characters; a 32-byte key is %d in base64",
			    len, KEYS_KEY_B64_LEN);
	if (sodium_base642bin(tmp, sizeof(tmp), s, len, NULL, &bl, &end,
			      sodium_base64_VARIANT_ORIGINAL) != 0 || end != s + len) {
		sodium_memzero(tmp, sizeof(tmp));
		return fail(why, whylen, -EINVAL, "key= is not valid base64 (standard alphabet, with = padding)");
	}
	if (bl != KEYS_KEY_LEN) {
		sodium_memzero(tmp, sizeof(tmp));
		return fail(why, whylen, -EINVAL, "key= decodes to %zu bytes; keys are %d bytes", bl,
			    KEYS_KEY_LEN);
	}
	memcpy(key, tmp, KEYS_KEY_LEN);
	sodium_memzero(tmp, sizeof(tmp));
	return 0;
}

/* Appends a filled device (d->id set).  -EEXIST (*old set), -E2BIG, -ENOMEM. */
static int append(keys_t *k, const struct keys_device *d, const struct keys_device **old)
{
	const struct keys_device *o = find(k, d->id, d->id_len);
	if (o) {
		*old = o;
		return -EEXIST;
	}
	int r = grow(k);
	if (r < 0)
		return r;
	k->dev[k->n] = *d;
	slot_insert(k, k->n);
	k->n++;
	return 0;
}

static int is_ws(char c)
{
	return c == ' ' || c == '\t';
}

/* One line, NUL-terminated at s[len]. */
static int parse_line(keys_t *k, const char *path, unsigned ln, char *s, size_t len, char *err,
		      size_t errlen)
{
	char why[160], q[72];
	const char *end = s + len, *p = s;
	struct keys_device d;
	int r = 0, seen_key = 0, seen_topics = 0, seen_fpr = 0, seen_dis = 0, seen_req = 0;

	while (p < end && is_ws(*p))
		p++;
	if (p == end || *p == '#')
		return 0;
	const char *id = p;
	while (p < end && !is_ws(*p))
		p++;
	size_t idlen = (size_t)(p - id);
	if (!mi_devid_valid((const uint8_t *)id, idlen))
		return fail(err, errlen, -EINVAL,
			    "%s:%u: bad device id '%s': 1-%d characters of A-Z a-z 0-9 . _ : -", path, ln,
			    quote(id, idlen, q), MI_DEVID_MAX);
	memset(&d, 0, sizeof(d));
	memcpy(d.id, id, idlen);
	d.id_len = (uint8_t)idlen;
	d.enabled = 1;
	d.line = ln;

	for (;;) {
		while (p < end && is_ws(*p))
			p++;
		if (p == end)
			break;
		const char *a = p;
		while (p < end && !is_ws(*p))
			p++;
		size_t alen = (size_t)(p - a);
		const char *dup = NULL;
		if (alen >= 4 && memcmp(a, "key=", 4) == 0) {
			if (seen_key++)
				dup = "key=";
			else if ((r = parse_key(a + 4, alen - 4, d.key, why, sizeof(why))) < 0)
				goto bad;
		} else if (alen >= 7 && memcmp(a, "topics=", 7) == 0) {
			if (seen_topics++)
				dup = "topics=";
			else if ((r = parse_topics(a + 7, alen - 7, &d, why, sizeof(why))) < 0)
				goto bad;
		} else if (alen >= 4 && memcmp(a, "fpr=", 4) == 0) {
			if (seen_fpr++) {
				dup = "fpr=";
			} else if (keys_fpr_parse(a + 4, alen - 4, d.fpr) < 0) {
				r = fail(why, sizeof(why), -EINVAL,
					 "fpr= must be 64 hex digits (32 bytes), got '%s'",
					 quote(a + 4, alen - 4, q));
				goto bad;
			}
			d.has_fpr = 1;
		} else if (alen >= 8 && memcmp(a, "require=", 8) == 0) {
			if (seen_req++) {
				dup = "require=";
			} else if ((r = keys_require_parse(a + 8, alen - 8)) < 0) {
				r = fail(why, sizeof(why), -EINVAL, "require= must be mac or seal, got '%s'",
					 quote(a + 8, alen - 8, q));
				goto bad;
			} else {
				d.require = (uint8_t)r;
			}
		} else if (alen == 8 && memcmp(a, "disabled", 8) == 0) {
			if (seen_dis++)
				dup = "disabled";
			d.enabled = 0;
		} else {
			size_t n = strcspn(a, "= \t");
			r = fail(why, sizeof(why), -EINVAL,
				 "unknown attribute '%s' (expected key=, topics=, fpr=, require=, disabled)",
				 quote(a, n < alen ? n : alen, q));
			goto bad;
		}
		if (dup) {
			r = fail(why, sizeof(why), -EINVAL, "%s given twice", dup);
			goto bad;
		}
	}
	if (!seen_key) {
		r = fail(why, sizeof(why), -EINVAL, "no key= attribute");
		goto bad;
	}
	if (!seen_topics) {
		r = fail(why, sizeof(why), -EINVAL, "no topics= attribute (use topics=* for every topic)");
		goto bad;
	}
	const struct keys_device *old = NULL;
	r = append(k, &d, &old);
	if (r == -EEXIST)
		r = fail(err, errlen, -EINVAL, "%s:%u: duplicate device '%s' (already on line %u)", path,
			 ln, d.id, old->line);
	else if (r == -E2BIG)
		r = fail(err, errlen, r, "%s:%u: more than %u devices", path, ln, KEYS_MAX);
	else if (r < 0)
		r = fail(err, errlen, r, "%s:%u: %s", path, ln, strerror(-r));
	sodium_memzero(&d, sizeof(d));
	return r;
bad:
	r = fail(err, errlen, r, "%s:%u: device '%s': %s", path, ln, d.id, why);
	sodium_memzero(&d, sizeof(d));
	return r;
}

int keys_load(const char *path, keys_t **ret, char *err, size_t errlen)
{
	char iob[16384], line[KEYS_LINE_MAX + 2];
	keys_t *k = NULL;
	FILE *f = NULL;
	struct stat st;
	int r, fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(err, errlen, -errno, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0) {
		r = fail(err, errlen, -errno, "%s: %s", path, strerror(errno));
		goto cleanup;
	}
	if (!S_ISREG(st.st_mode)) {
		r = fail(err, errlen, -EINVAL, "%s: not a regular file", path);
		goto cleanup;
	}
	if (st.st_mode & 077) {
		r = fail(err, errlen, -EPERM,
			 "%s: mode %04o lets group or others read or write the device keys; "
			 "run chmod 600 %s",
			 path, (unsigned)(st.st_mode & 07777), path);
		goto cleanup;
	}
	f = fdopen(fd, "r");
	if (!f) {
		r = fail(err, errlen, -errno, "%s: %s", path, strerror(errno));
		goto cleanup;
	}
	fd = -1;
	setvbuf(f, iob, _IOFBF, sizeof(iob));
	if ((r = keys_new(&k)) < 0) {
		r = fail(err, errlen, r, "%s: %s", path, strerror(-r));
		goto cleanup;
	}
	for (unsigned ln = 1;; ln++) {
		size_t len = 0, total = 0;
		int c, nul = 0;
		while ((c = getc_unlocked(f)) != EOF && c != '\n') {
			if (len < sizeof(line) - 1)
				line[len++] = (char)c;
			total++;
			nul |= c == 0;
		}
		if (c == EOF && ferror(f)) {
			r = fail(err, errlen, -EIO, "%s:%u: read error", path, ln);
			goto cleanup;
		}
		if (c == EOF && len == 0)
			break;
		if (total == len && len > 0 && line[len - 1] == '\r')
			len--;
		if (total > len + 1 || len > KEYS_LINE_MAX) {
			r = fail(err, errlen, -EINVAL, "%s:%u: line longer than %d bytes", path, ln,
				 KEYS_LINE_MAX);
			goto cleanup;
		}
		if (nul) {
			r = fail(err, errlen, -EINVAL, "%s:%u: NUL byte in line", path, ln);
			goto cleanup;
		}
		line[len] = '\0';
		if ((r = parse_line(k, path, ln, line, len, err, errlen)) < 0)
			goto cleanup;
		if (c == EOF)
			break;
	}
	*ret = k;
	k = NULL;
	r = 0;
cleanup:
	if (f)
		fclose(f);
	if (fd >= 0)
		close(fd);
	sodium_memzero(line, sizeof(line));
	sodium_memzero(iob, sizeof(iob));
	keys_free(k);
	return r;
}

static int write_device(FILE *f, const struct keys_device *d)
{
	char b64[KEYS_KEY_B64_LEN + 1];
	keys_key_to_base64(d->key, b64);
	int r = fprintf(f, "%s key=%s topics=%s", d->id, b64, d->topics);
	sodium_memzero(b64, sizeof(b64));
	if (r >= 0 && d->has_fpr) {
		char hex[2 * KEYS_FPR_LEN + 1];
		sodium_bin2hex(hex, sizeof(hex), d->fpr, KEYS_FPR_LEN);
		r = fprintf(f, " fpr=%s", hex);
	}
	if (r >= 0 && d->require)
		r = fprintf(f, " require=%s", keys_require_name(d->require));
	if (r >= 0 && !d->enabled)
		r = fputs(" disabled", f);
	if (r >= 0)
		r = fputc('\n', f);
	return r < 0 ? -EIO : 0;
}

int keys_write(const keys_t *k, const char *path, char *err, size_t errlen)
{
	char dir[PATH_MAX], tmp[PATH_MAX], iob[16384];
	const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
	FILE *f = NULL;
	int r = 0, fd = -1, dfd = -1, made = 0;

	if (!*base)
		return fail(err, errlen, -EINVAL, "%s: not a file name", path);
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == path)
		snprintf(dir, sizeof(dir), "/");
	else if ((size_t)(slash - path) < sizeof(dir))
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	else
		return fail(err, errlen, -ENAMETOOLONG, "%s: path too long", path);
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s/.%s.XXXXXX", dir, base) >= sizeof(tmp))
		return fail(err, errlen, -ENAMETOOLONG, "%s: path too long", path);

	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		r = fail(err, errlen, -errno, "%s: cannot create a temp file in %s: %s", path, dir,
			 strerror(errno));
		goto cleanup;
	}
	made = 1;
	if (fchmod(fd, 0600) < 0 || !(f = fdopen(fd, "w"))) {
		r = fail(err, errlen, -errno, "%s: %s", tmp, strerror(errno));
		goto cleanup;
	}
	fd = -1;
	setvbuf(f, iob, _IOFBF, sizeof(iob));
	if (fputs(header_line, f) < 0)
		r = -EIO;
	for (size_t i = 0; r == 0 && i < k->n; i++)
		r = write_device(f, &k->dev[i]);
	if (r == 0 && fflush(f) != 0)
		r = -errno;
	if (r == 0 && fsync(fileno(f)) < 0)
		r = -errno;
	int cr = fclose(f);
	f = NULL;
	if (r == 0 && cr != 0)
		r = -errno;
	if (r < 0) {
		r = fail(err, errlen, r, "%s: writing %s: %s", path, tmp, strerror(-r));
		goto cleanup;
	}
	if (rename(tmp, path) < 0) {
		r = fail(err, errlen, -errno, "%s: rename from %s: %s", path, tmp, strerror(errno));
		goto cleanup;
	}
	made = 0;
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd) < 0)
		r = fail(err, errlen, -errno, "%s: fsync of directory %s: %s", path, dir,
			 strerror(errno));
cleanup:
	if (f)
		fclose(f);
	if (fd >= 0)
		close(fd);
	if (dfd >= 0)
		close(dfd);
	if (made)
		unlink(tmp);
	sodium_memzero(iob, sizeof(iob));
	return r;
}

int keys_add(keys_t *k, const char *id, const char *topics, const uint8_t *fpr,
	     const uint8_t key[KEYS_KEY_LEN], char *err, size_t errlen)
{
	char q[72], why[160];
	struct keys_device d;
	size_t idlen = strlen(id);
	if (!mi_devid_valid((const uint8_t *)id, idlen))
		return fail(err, errlen, -EINVAL, "bad device id '%s': 1-%d characters of A-Z a-z 0-9 . _ : -",
			    quote(id, idlen, q), MI_DEVID_MAX);
	memset(&d, 0, sizeof(d));
	memcpy(d.id, id, idlen);
	d.id_len = (uint8_t)idlen;
	d.enabled = 1;
	int r = parse_topics(topics, strlen(topics), &d, why, sizeof(why));
	if (r < 0)
		return fail(err, errlen, r, "device '%s': %s", d.id, why);
	if (fpr) {
		memcpy(d.fpr, fpr, KEYS_FPR_LEN);
		d.has_fpr = 1;
	}
	memcpy(d.key, key, KEYS_KEY_LEN);
	const struct keys_device *old = NULL;
	r = append(k, &d, &old);
	sodium_memzero(&d, sizeof(d));
	if (r == -EEXIST)
		return fail(err, errlen, r, "device '%s' already exists", id);
	if (r == -E2BIG)
		return fail(err, errlen, r, "more than %u devices", KEYS_MAX);
	if (r < 0)
		return fail(err, errlen, r, "%s", strerror(-r));
	return 0;
}

int keys_remove(keys_t *k, const char *id)
{
	struct keys_device *d = find(k, id, strlen(id));
	if (!d)
		return -ENOENT;
	size_t i = (size_t)(d - k->dev);
	memmove(&k->dev[i], &k->dev[i + 1], (k->n - i - 1) * sizeof(*d));
	k->n--;
	sodium_memzero(&k->dev[k->n], sizeof(*d));
	rehash(k);
	return 0;
}

int keys_set_enabled(keys_t *k, const char *id, int enabled)
{
	struct keys_device *d = find(k, id, strlen(id));
	if (!d)
		return -ENOENT;
	d->enabled = enabled ? 1 : 0;
	return 0;
}

int keys_set_key(keys_t *k, const char *id, const uint8_t key[KEYS_KEY_LEN])
{
	struct keys_device *d = find(k, id, strlen(id));
	if (!d)
		return -ENOENT;
	memcpy(d->key, key, KEYS_KEY_LEN);
	return 0;
}

int keys_generate(uint8_t key[KEYS_KEY_LEN])
{
	if (sodium_init() < 0)
		return -EIO;
	randombytes_buf(key, KEYS_KEY_LEN);
	return 0;
}

void keys_key_to_base64(const uint8_t key[KEYS_KEY_LEN], char out[KEYS_KEY_B64_LEN + 1])
{
	sodium_bin2base64(out, KEYS_KEY_B64_LEN + 1, key, KEYS_KEY_LEN, sodium_base64_VARIANT_ORIGINAL);
}

int keys_require_parse(const char *s, size_t len)
{
	if (len == 3 && !memcmp(s, "mac", 3))
		return KEYS_REQ_MAC;
	if (len == 4 && !memcmp(s, "seal", 4))
		return KEYS_REQ_SEAL;
	if (len == 4 && !memcmp(s, "none", 4))
		return KEYS_REQ_NONE;
	return -EINVAL;
}

const char *keys_require_name(int req)
{
	return req == KEYS_REQ_MAC ? "mac" : req == KEYS_REQ_SEAL ? "seal" : "none";
}

int keys_set_topics(keys_t *k, const char *id, const char *topics, char *err, size_t errlen)
{
	struct keys_device *d = (struct keys_device *)keys_find(k, id, strlen(id));
	if (!d)
		return -ENOENT;
	struct keys_device tmp = *d;
	int r = parse_topics(topics, strlen(topics), &tmp, err, errlen);
	if (r == 0) {
		memcpy(d->topics, tmp.topics, sizeof(d->topics));
		d->all_topics = tmp.all_topics;
		d->ntopics = tmp.ntopics;
	}
	sodium_memzero(&tmp, sizeof(tmp));
	return r;
}

int keys_set_require(keys_t *k, const char *id, int req)
{
	struct keys_device *d = (struct keys_device *)keys_find(k, id, strlen(id));
	if (!d)
		return -ENOENT;
	d->require = (uint8_t)req;
	return 0;
}

int keys_resolve_topics(keys_t *k, int (*lookup)(void *ctx, const char *name, size_t len), void *ctx,
			const char *path, char *err, size_t errlen)
{
	for (size_t i = 0; i < keys_count(k); i++) {
		struct keys_device *d = (struct keys_device *)keys_at(k, i);
		int n = 0;
		for (const char *p = d->topics; !d->all_topics && *p;) {
			size_t len = strcspn(p, ",");
			int id = lookup(ctx, p, len);
			if (id < 0) {
				char q[72];
				return fail(err, errlen, -EINVAL,
					    "%s:%u: device '%s': topic '%s' is not named in the config's [topics]",
					    path, d->line, d->id, quote(p, len, q));
			}
			d->topic_ids[n++] = (uint16_t)id;
			p += len;
			if (*p == ',')
				p++;
		}
	}
	return 0;
}

int keys_topic_id_allowed(const struct keys_device *d, uint16_t topic)
{
	if (d->all_topics)
		return 1;
	for (unsigned i = 0; i < d->ntopics; i++)
		if (d->topic_ids[i] == topic)
			return 1;
	return 0;
}
