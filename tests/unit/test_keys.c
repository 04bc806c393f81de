/* test_keys — the device registry (common/keys.h): parsing, validation with
 * line numbers, file mode, lookups, atomic write and reload, a large file.
 * Each test gets its own temp dir under /tmp. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <strings.h>

#include <sodium.h>

#include "tests/unit/testdir.h"
#include "common/keys.h"

/* 32 bytes 0x00..0x1f, and its base64 */
#define K1 "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define FPR "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

struct fix {
	char dir[64];
	char path[128];   /* dir/keys */
	char err[512];
};

static int setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/test-keys-XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	snprintf(f->path, sizeof(f->path), "%s/keys", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fix *f = *state;
	int r = testdir_remove(f->dir);
	free(f);
	return r;
}

static void put(const char *path, const char *text, mode_t mode)
{
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	assert_int_equal(fputs(text, fp) >= 0, 1);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(chmod(path, mode), 0);
}

static keys_t *load_ok(struct fix *f)
{
	keys_t *k = NULL;
	int r = keys_load(f->path, &k, f->err, sizeof(f->err));
	if (r < 0)
		print_error("keys_load: %s\n", f->err);
	assert_int_equal(r, 0);
	assert_non_null(k);
	return k;
}

static const struct keys_device *get(const keys_t *k, const char *id)
{
	return keys_find(k, id, strlen(id));
}

static void test_parse_good(void **state)
{
	struct fix *f = *state;
	put(f->path,
	    "# a comment\n"
	    "\n"
	    "   \t\n"
	    "  # indented comment\n"
	    "dev1 key=" K1 " topics=*\n"
	    "\tgw.lab:7\t topics=telemetry,logs   fpr=" FPR " disabled key=" K1 "  \r\n"
	    "a key=" K1 " topics=t fpr=" "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
	    0600);
	keys_t *k = load_ok(f);
	assert_int_equal(keys_count(k), 3);

	const struct keys_device *d = get(k, "dev1");
	assert_non_null(d);
	assert_int_equal(d->line, 5);
	assert_true(d->enabled);
	assert_true(d->all_topics);
	assert_false(d->has_fpr);
	assert_string_equal(d->topics, "*");
	for (int i = 0; i < KEYS_KEY_LEN; i++)
		assert_int_equal(d->key[i], i);
	assert_true(keys_topic_allowed(d, "anything", 8));

	d = get(k, "gw.lab:7");
	assert_non_null(d);
	assert_int_equal(d->line, 6);
	assert_false(d->enabled);
	assert_false(d->all_topics);
	assert_int_equal(d->ntopics, 2);
	assert_string_equal(d->topics, "telemetry,logs");
	assert_true(d->has_fpr);
	for (int i = 0; i < KEYS_FPR_LEN; i++)
		assert_int_equal(d->fpr[i], i);
	assert_true(keys_topic_allowed(d, "telemetry", 9));
	assert_true(keys_topic_allowed(d, "logs", 4));
	assert_false(keys_topic_allowed(d, "log", 3));
	assert_false(keys_topic_allowed(d, "images", 6));

	d = get(k, "a");   /* last line without LF, upper-case hex */
	assert_non_null(d);
	assert_int_equal(d->fpr[31], 0x1f);
	assert_string_equal(keys_at(k, 0)->id, "dev1");
	assert_string_equal(keys_at(k, 2)->id, "a");
	assert_null(keys_at(k, 3));
	keys_free(k);
}

static void test_empty_file(void **state)
{
	struct fix *f = *state;
	put(f->path, "", 0600);
	keys_t *k = load_ok(f);
	assert_int_equal(keys_count(k), 0);
	assert_null(get(k, "dev1"));
	keys_free(k);
}

struct bad_case {
	const char *line;   /* put on line 3, after a comment and a good device */
	const char *want;   /* substring of the error */
};

static void test_malformed(void **state)
{
	struct fix *f = *state;
	char text[2048], big[KEYS_LINE_MAX + 64];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	const struct bad_case cases[] = {
		{ "bad/id key=" K1 " topics=*", "bad device id 'bad/id'" },
		{ "01234567890123456789012345678901234567890123456789012345678901234 key=" K1 " topics=*",
		  "bad device id" },
		{ "dev2 key=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8 topics=*", "not valid base64" },
		{ "dev2 key=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh*= topics=*", "not valid base64" },
		{ "dev2 key=AAECAwQFBgcICQoLDA0ODw== topics=*", "decodes to 16 bytes" },
		{ "dev2 key= topics=*", "empty key=" },
		{ "dev1 key=" K1 " topics=*", "duplicate device 'dev1' (already on line 2)" },
		{ "dev2 key=" K1 " topics=* fpr=00ff", "fpr= must be 64 hex digits" },
		{ "dev2 key=" K1 " topics=* fpr=" "zz0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
		  "fpr= must be 64 hex digits" },
		{ "dev2 key=" K1 " topics=* colour=blue", "unknown attribute 'colour'" },
		{ "dev2 key=" K1 " topics=* enabled", "unknown attribute 'enabled'" },
		{ "dev2 topics=*", "no key=" },
		{ "dev2 key=" K1, "no topics=" },
		{ "dev2", "no key=" },
		{ "dev2 key=" K1 " key=" K1 " topics=*", "key= given twice" },
		{ "dev2 key=" K1 " topics=* disabled disabled", "disabled given twice" },
		{ "dev2 key=" K1 " topics=", "empty topics=" },
		{ "dev2 key=" K1 " topics=a,,b", "empty topic name" },
		{ "dev2 key=" K1 " topics=a,*", "topic name '*'" },
		{ "dev2 key=" K1 " topics=a,b,a", "topic 'a' listed twice" },
		{ "dev2 key=" K1 " topics=abcdefghijabcdefghijabcdefghijabc", "longer than 32" },
		{ "dev2 key=" K1 " topics=a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q", "more than 16 topics" },
		{ "dev2 key=" K1 " topics=* # trailing comment", "unknown attribute '#'" },
		{ big, "line longer than 1024 bytes" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(text, sizeof(text), "# header\ndev1 key=" K1 " topics=*\n%s\ndev9 key=" K1 " topics=*\n",
			 cases[i].line);
		put(f->path, text, 0600);
		keys_t *k = (keys_t *)0x1;
		memset(f->err, 0, sizeof(f->err));
		int r = keys_load(f->path, &k, f->err, sizeof(f->err));
		char where[160];
		snprintf(where, sizeof(where), "%s:3: ", f->path);
		if (r != -EINVAL || strncmp(f->err, where, strlen(where)) != 0 ||
		    !strstr(f->err, cases[i].want))
			print_error("case %zu: r=%d err='%s' want '%s'\n", i, r, f->err, cases[i].want);
		assert_int_equal(r, -EINVAL);
		assert_ptr_equal(k, (keys_t *)0x1);   /* untouched on failure */
		assert_int_equal(strncmp(f->err, where, strlen(where)), 0);
		assert_non_null(strstr(f->err, cases[i].want));
	}
}

static void test_nul_byte(void **state)
{
	struct fix *f = *state;
	int fd = open(f->path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	static const char text[] = "# x\ndev\0 key=" K1 " topics=*\n";
	assert_int_equal(write(fd, text, sizeof(text) - 1), (ssize_t)sizeof(text) - 1);
	close(fd);
	keys_t *k = NULL;
	assert_int_equal(keys_load(f->path, &k, f->err, sizeof(f->err)), -EINVAL);
	assert_non_null(strstr(f->err, ":2: NUL byte"));
}

static void test_mode(void **state)
{
	struct fix *f = *state;
	static const mode_t bad[] = { 0644, 0640, 0604, 0602, 0620, 0601, 0666 };
	keys_t *k = NULL;
	put(f->path, "dev1 key=" K1 " topics=*\n", 0600);
	k = load_ok(f);
	keys_free(k);
	k = NULL;
	put(f->path, "dev1 key=" K1 " topics=*\n", 0400);
	k = load_ok(f);
	keys_free(k);
	k = NULL;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char mode[16];
		assert_int_equal(chmod(f->path, bad[i]), 0);
		assert_int_equal(keys_load(f->path, &k, f->err, sizeof(f->err)), -EPERM);
		assert_null(k);
		snprintf(mode, sizeof(mode), "mode %04o", (unsigned)bad[i]);
		assert_non_null(strstr(f->err, mode));
		assert_non_null(strstr(f->err, "chmod 600"));
		assert_non_null(strstr(f->err, f->path));
	}
	/* missing file, directory */
	char other[160];
	snprintf(other, sizeof(other), "%s/none", f->dir);
	assert_int_equal(keys_load(other, &k, f->err, sizeof(f->err)), -ENOENT);
	assert_non_null(strstr(f->err, other));
	assert_int_equal(chmod(f->dir, 0700), 0);
	assert_int_equal(keys_load(f->dir, &k, f->err, sizeof(f->err)), -EINVAL);
	assert_non_null(strstr(f->err, "not a regular file"));
}

static void test_api_add_remove(void **state)
{
	struct fix *f = *state;
	keys_t *k = NULL;
	uint8_t key[KEYS_KEY_LEN], fpr[KEYS_FPR_LEN];
	assert_int_equal(keys_new(&k), 0);
	assert_int_equal(keys_generate(key), 0);
	assert_int_equal(keys_fpr_parse(FPR, strlen(FPR), fpr), 0);
	assert_int_equal(keys_fpr_parse(FPR, 62, fpr), -EINVAL);
	assert_int_equal(keys_add(k, "a", "*", NULL, key, f->err, sizeof(f->err)), 0);
	assert_int_equal(keys_add(k, "b", "x,y", fpr, key, f->err, sizeof(f->err)), 0);
	assert_int_equal(keys_add(k, "c", "z", NULL, key, f->err, sizeof(f->err)), 0);
	assert_int_equal(keys_add(k, "b", "*", NULL, key, f->err, sizeof(f->err)), -EEXIST);
	assert_non_null(strstr(f->err, "'b' already exists"));
	assert_int_equal(keys_add(k, "b c", "*", NULL, key, f->err, sizeof(f->err)), -EINVAL);
	assert_int_equal(keys_add(k, "", "*", NULL, key, f->err, sizeof(f->err)), -EINVAL);
	assert_int_equal(keys_add(k, "d", "a b", NULL, key, f->err, sizeof(f->err)), -EINVAL);
	assert_non_null(strstr(f->err, "device 'd'"));
	assert_int_equal(keys_count(k), 3);
	assert_int_equal(keys_topics_valid("a,b", 3, f->err, sizeof(f->err)), 0);
	assert_int_equal(keys_topics_valid("a,", 2, f->err, sizeof(f->err)), -EINVAL);

	assert_int_equal(keys_remove(k, "b"), 0);
	assert_int_equal(keys_remove(k, "b"), -ENOENT);
	assert_int_equal(keys_count(k), 2);
	assert_null(get(k, "b"));
	assert_non_null(get(k, "a"));
	assert_non_null(get(k, "c"));
	assert_string_equal(keys_at(k, 1)->id, "c");   /* order kept */
	assert_int_equal(keys_set_enabled(k, "zz", 0), -ENOENT);
	assert_int_equal(keys_set_key(k, "zz", key), -ENOENT);
	assert_null(keys_find(k, "a", 0));
	assert_ptr_equal(keys_find(k, "ab", 1), get(k, "a"));   /* by length, not NUL */
	keys_free(k);
	keys_free(NULL);
}

static void test_round_trip(void **state)
{
	struct fix *f = *state;
	keys_t *k = NULL;
	uint8_t key[3][KEYS_KEY_LEN], fpr[KEYS_FPR_LEN];
	assert_int_equal(keys_new(&k), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(keys_generate(key[i]), 0);
	assert_memory_not_equal(key[0], key[1], KEYS_KEY_LEN);
	assert_int_equal(keys_fpr_parse(FPR, strlen(FPR), fpr), 0);
	assert_int_equal(keys_add(k, "s-1", "*", NULL, key[0], f->err, sizeof(f->err)), 0);
	assert_int_equal(keys_add(k, "gw:2", "telemetry,logs", fpr, key[1], f->err, sizeof(f->err)), 0);
	assert_int_equal(keys_add(k, "x.3", "img", NULL, key[2], f->err, sizeof(f->err)), 0);
	assert_int_equal(keys_set_enabled(k, "x.3", 0), 0);
	assert_int_equal(keys_write(k, f->path, f->err, sizeof(f->err)), 0);

	keys_t *r = load_ok(f);
	assert_int_equal(keys_count(r), 3);
	for (size_t i = 0; i < 3; i++) {
		const struct keys_device *a = keys_at(k, i), *b = keys_at(r, i);
		assert_string_equal(a->id, b->id);
		assert_int_equal(a->id_len, b->id_len);
		assert_memory_equal(a->key, b->key, KEYS_KEY_LEN);
		assert_string_equal(a->topics, b->topics);
		assert_int_equal(a->ntopics, b->ntopics);
		assert_int_equal(a->all_topics, b->all_topics);
		assert_int_equal(a->has_fpr, b->has_fpr);
		assert_memory_equal(a->fpr, b->fpr, KEYS_FPR_LEN);
		assert_int_equal(a->enabled, b->enabled);
		assert_memory_equal(b->key, key[i], KEYS_KEY_LEN);
	}
	assert_false(get(r, "x.3")->enabled);

	/* rewrite of the reloaded registry is byte-identical */
	char p2[160];
	snprintf(p2, sizeof(p2), "%s/keys2", f->dir);
	assert_int_equal(keys_write(r, p2, f->err, sizeof(f->err)), 0);
	char a[4096], b[4096];
	FILE *fa = fopen(f->path, "r"), *fb = fopen(p2, "r");
	size_t na = fread(a, 1, sizeof(a), fa), nb = fread(b, 1, sizeof(b), fb);
	fclose(fa);
	fclose(fb);
	assert_int_equal(na, nb);
	assert_memory_equal(a, b, na);
	char b64[KEYS_KEY_B64_LEN + 1];
	keys_key_to_base64(key[1], b64);
	assert_int_equal(strlen(b64), KEYS_KEY_B64_LEN);
	assert_non_null(strstr(a, b64));
	keys_free(k);
	keys_free(r);
}

static void test_rotate_and_disable(void **state)
{
	struct fix *f = *state;
	put(f->path, "dev1 key=" K1 " topics=*\ndev2 key=" K1 " topics=a disabled\n", 0600);
	keys_t *k = load_ok(f);
	uint8_t old[KEYS_KEY_LEN], nk[KEYS_KEY_LEN];
	memcpy(old, get(k, "dev1")->key, KEYS_KEY_LEN);
	assert_int_equal(keys_generate(nk), 0);
	assert_int_equal(keys_set_key(k, "dev1", nk), 0);
	assert_memory_not_equal(get(k, "dev1")->key, old, KEYS_KEY_LEN);
	assert_memory_equal(get(k, "dev2")->key, old, KEYS_KEY_LEN);   /* others untouched */
	assert_false(get(k, "dev2")->enabled);
	assert_int_equal(keys_set_enabled(k, "dev2", 1), 0);
	assert_int_equal(keys_set_enabled(k, "dev1", 0), 0);
	assert_int_equal(keys_write(k, f->path, f->err, sizeof(f->err)), 0);
	keys_free(k);

	k = load_ok(f);
	assert_memory_equal(get(k, "dev1")->key, nk, KEYS_KEY_LEN);
	assert_false(get(k, "dev1")->enabled);
	assert_true(get(k, "dev2")->enabled);
	keys_free(k);
}

static int lookup(void *ctx, const char *name, size_t len)
{
	(void)ctx;
	static const char *const names[] = { "default", "tel", "logs" };
	for (int i = 0; i < 3; i++)
		if (strlen(names[i]) == len && !strncasecmp(names[i], name, len))
			return i == 0 ? 0 : 10 * i;
	return -1;
}

/* require= round-trips; topic names resolve to ids; an unknown name is an
 * error naming file, line, device and topic. */
static void test_require_and_topic_ids(void **state)
{
	struct fix *f = *state;
	put(f->path, "a key=" K1 " topics=tel,LOGS require=seal\nb key=" K1 " topics=* require=mac\n"
		     "c key=" K1 " topics=default\n", 0600);
	keys_t *k = load_ok(f);
	assert_int_equal(get(k, "a")->require, KEYS_REQ_SEAL);
	assert_int_equal(get(k, "b")->require, KEYS_REQ_MAC);
	assert_int_equal(get(k, "c")->require, KEYS_REQ_NONE);
	assert_int_equal(keys_resolve_topics(k, lookup, NULL, f->path, f->err, sizeof(f->err)), 0);
	assert_true(keys_topic_id_allowed(get(k, "a"), 10));
	assert_true(keys_topic_id_allowed(get(k, "a"), 20));
	assert_false(keys_topic_id_allowed(get(k, "a"), 0));
	assert_true(keys_topic_id_allowed(get(k, "b"), 12345));
	assert_true(keys_topic_id_allowed(get(k, "c"), 0));
	assert_false(keys_topic_id_allowed(get(k, "c"), 10));
	assert_int_equal(keys_set_require(k, "a", KEYS_REQ_NONE), 0);
	assert_int_equal(keys_set_require(k, "zz", KEYS_REQ_MAC), -ENOENT);
	assert_int_equal(keys_set_topics(k, "c", "tel,,x", f->err, sizeof(f->err)), -EINVAL);
	assert_string_equal(get(k, "c")->topics, "default");        /* unchanged on error */
	assert_int_equal(keys_set_topics(k, "c", "nosuch", f->err, sizeof(f->err)), 0);
	assert_int_equal(keys_write(k, f->path, f->err, sizeof(f->err)), 0);
	keys_free(k);
	k = load_ok(f);
	assert_int_equal(get(k, "a")->require, KEYS_REQ_NONE);
	assert_int_equal(get(k, "b")->require, KEYS_REQ_MAC);
	assert_int_equal(keys_resolve_topics(k, lookup, NULL, f->path, f->err, sizeof(f->err)), -EINVAL);
	assert_true(!strncmp(f->err, f->path, strlen(f->path)) && f->err[strlen(f->path)] == ':');
	assert_non_null(strstr(f->err, ": device 'c': topic 'nosuch' is not named in the config's [topics]"));
	keys_free(k);
	put(f->path, "a key=" K1 " topics=* require=both\n", 0600);
	assert_int_equal(keys_load(f->path, &k, f->err, sizeof(f->err)), -EINVAL);
	assert_non_null(strstr(f->err, "require= must be mac or seal, got 'both'"));
	put(f->path, "a key=" K1 " topics=* require=mac require=mac\n", 0600);
	assert_int_equal(keys_load(f->path, &k, f->err, sizeof(f->err)), -EINVAL);
	assert_non_null(strstr(f->err, "require= given twice"));
}

static int dir_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;
	assert_non_null(d);
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static void test_atomic_write_mode(void **state)
{
	struct fix *f = *state;
	keys_t *k = NULL;
	uint8_t key[KEYS_KEY_LEN];
	struct stat st;
	assert_int_equal(keys_new(&k), 0);
	assert_int_equal(keys_generate(key), 0);
	assert_int_equal(keys_add(k, "dev1", "*", NULL, key, f->err, sizeof(f->err)), 0);

	mode_t old = umask(0);
	assert_int_equal(keys_write(k, f->path, f->err, sizeof(f->err)), 0);
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(dir_entries(f->dir), 1);
	/* replacing an existing file: still one file, 0600, new content */
	assert_int_equal(keys_add(k, "dev2", "*", NULL, key, f->err, sizeof(f->err)), 0);
	assert_int_equal(keys_write(k, f->path, f->err, sizeof(f->err)), 0);
	umask(old);
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(dir_entries(f->dir), 1);
	keys_free(k);
	k = load_ok(f);
	assert_int_equal(keys_count(k), 2);

	/* a failed write (directory gone) leaves nothing and says where */
	char p2[160];
	snprintf(p2, sizeof(p2), "%s/nodir/keys", f->dir);
	assert_int_equal(keys_write(k, p2, f->err, sizeof(f->err)), -ENOENT);
	assert_non_null(strstr(f->err, p2));
	assert_int_equal(dir_entries(f->dir), 1);
	keys_free(k);
}

static void test_large(void **state)
{
	struct fix *f = *state;
	enum { N = 50000 };
	keys_t *k = NULL;
	uint8_t key[KEYS_KEY_LEN];
	char id[32];
	assert_int_equal(keys_new(&k), 0);
	for (int i = 0; i < N; i++) {
		snprintf(id, sizeof(id), "dev-%06d", i);
		memset(key, 0, sizeof(key));
		memcpy(key, &i, sizeof(i));
		assert_int_equal(keys_add(k, id, i % 3 ? "a,b" : "*", NULL, key, f->err, sizeof(f->err)), 0);
	}
	assert_int_equal(keys_write(k, f->path, f->err, sizeof(f->err)), 0);
	keys_free(k);

	k = load_ok(f);
	assert_int_equal(keys_count(k), N);
	for (int i = 0; i < N; i++) {
		snprintf(id, sizeof(id), "dev-%06d", i);
		const struct keys_device *d = get(k, id);
		assert_non_null(d);
		int v;
		memcpy(&v, d->key, sizeof(v));
		assert_int_equal(v, i);
		assert_int_equal(d->line, (unsigned)i + 3);   /* after the 2-line header */
		assert_int_equal(d->all_topics, i % 3 == 0);
	}
	for (int i = N; i < N + 1000; i++) {
		snprintf(id, sizeof(id), "dev-%06d", i);
		assert_null(get(k, id));
	}
	keys_free(k);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_parse_good, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nul_byte, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_api_add_remove, setup, teardown),
		cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rotate_and_disable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_require_and_topic_ids, setup, teardown),
		cmocka_unit_test_setup_teardown(test_atomic_write_mode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_large, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
