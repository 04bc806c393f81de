/* The cloud sink's parts that need no server: NDJSON lines, object keys,
 * gzip, the journal of batch ranges, and where credentials come from. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "sinkd/awscred.h"
#include "sinkd/cloud_journal.h"
#include "sinkd/cloud_obj.h"
#include "tests/unit/testdir.h"

static struct sink_record rec(const char *dev, size_t dlen, const void *pl, size_t plen)
{
	return (struct sink_record){ .lsn = 4096, .seq = 42, .ts_ns = 1700000000123456789ull,
				     .srv_ns = 1700000000223456789ull, .device = (const uint8_t *)dev,
				     .payload = pl, .payload_len = (uint32_t)plen, .topic = 7,
				     .device_len = (uint8_t)dlen };
}

static json_t *parse_line(const struct cbuf *b)
{
	assert_true(b->len > 0 && b->p[b->len - 1] == '\n');
	assert_null(memchr(b->p, '\n', b->len - 1));   /* one line */
	json_error_t e;
	json_t *j = json_loadb((const char *)b->p, b->len, 0, &e);
	if (!j)
		fail_msg("not JSON: %s: %.*s", e.text, (int)b->len, b->p);
	return j;
}

static void test_a_text_payload_is_one_json_line_with_every_field(void **state)
{
	(void)state;
	const char pl[] = "{\"t\":21.5,\"s\":\"a \\\"q\\\"\"}\n\ttab\x01\x7f";
	struct sink_record r = rec("pump-7", 6, pl, sizeof(pl) - 1);
	struct cbuf b = { 0 };
	assert_int_equal(cloud_line(&b, &r, "telemetry"), 0);
	json_t *j = parse_line(&b);
	assert_int_equal(json_integer_value(json_object_get(j, "lsn")), 4096);
	assert_string_equal(json_string_value(json_object_get(j, "device")), "pump-7");
	assert_int_equal(json_integer_value(json_object_get(j, "topic")), 7);
	assert_string_equal(json_string_value(json_object_get(j, "topic_name")), "telemetry");
	assert_int_equal(json_integer_value(json_object_get(j, "seq")), 42);
	assert_int_equal((uint64_t)json_integer_value(json_object_get(j, "ts_ns")), 1700000000123456789ull);
	assert_int_equal((uint64_t)json_integer_value(json_object_get(j, "srv_ns")), 1700000000223456789ull);
	json_t *p = json_object_get(j, "payload");
	assert_int_equal(json_string_length(p), sizeof(pl) - 1);
	assert_memory_equal(json_string_value(p), pl, sizeof(pl) - 1);
	assert_null(json_object_get(j, "payload_b64"));
	json_decref(j);
	cbuf_free(&b);
}

static void test_bytes_that_are_not_utf8_go_as_base64(void **state)
{
	(void)state;
	const uint8_t pl[] = { 0xff, 0x00, 0xc3, 0x28, 'x' };
	const char dev[] = { 'd', (char)0xe9 };   /* latin-1, not UTF-8 */
	struct sink_record r = rec(dev, 2, pl, sizeof(pl));
	struct cbuf b = { 0 };
	assert_int_equal(cloud_line(&b, &r, NULL), 0);
	json_t *j = parse_line(&b);
	assert_null(json_object_get(j, "topic_name"));
	assert_null(json_object_get(j, "payload"));
	uint8_t out[16];
	size_t n;
	const char *s = json_string_value(json_object_get(j, "payload_b64"));
	assert_non_null(s);
	assert_int_equal(sodium_base642bin(out, sizeof(out), s, strlen(s), NULL, &n, NULL,
					   sodium_base64_VARIANT_ORIGINAL), 0);
	assert_int_equal(n, sizeof(pl));
	assert_memory_equal(out, pl, sizeof(pl));
	s = json_string_value(json_object_get(j, "device_b64"));
	assert_non_null(s);
	assert_int_equal(sodium_base642bin(out, sizeof(out), s, strlen(s), NULL, &n, NULL,
					   sodium_base64_VARIANT_ORIGINAL), 0);
	assert_int_equal(n, 2);
	assert_memory_equal(out, dev, 2);
	json_decref(j);
	cbuf_free(&b);
}

static void test_lines_append_to_one_buffer(void **state)
{
	(void)state;
	struct cbuf b = { 0 };
	char big[5000];
	memset(big, 'a', sizeof(big));
	struct sink_record r = rec("d", 1, big, sizeof(big));
	for (int i = 0; i < 20; i++)
		assert_int_equal(cloud_line(&b, &r, NULL), 0);
	size_t lines = 0;
	for (size_t i = 0; i < b.len; i++)
		lines += b.p[i] == '\n';
	assert_int_equal(lines, 20);
	cbuf_free(&b);
}

static void test_the_default_key_names_topic_date_hour_and_range(void **state)
{
	(void)state;
	char key[CLOUD_KEY_MAX], err[SINK_ERR_LEN];
	const char *t = "{topic}/{date}/{hour}/{first_lsn}-{last_lsn}.ndjson.gz";
	assert_int_equal(cloud_key_check(t, err), 0);
	/* 2023-11-14T22:13:20Z */
	struct cloud_key_args a = { .name = "s3", .topic_name = "telemetry", .topic = 1, .first_lsn = 81920,
				    .last_lsn = 90112, .srv_ns = 1700000000000000000ull };
	assert_int_equal(cloud_key(t, &a, key), (int)strlen("telemetry/2023-11-14/22/81920-90112.ndjson.gz"));
	assert_string_equal(key, "telemetry/2023-11-14/22/81920-90112.ndjson.gz");
	a.topic_name = NULL;   /* no [topics] name: the id */
	cloud_key("{name}/{topic}/{topic_id}/{first_lsn}", &a, key);
	assert_string_equal(key, "s3/1/1/81920");
	char longt[CLOUD_KEY_MAX + 8];
	memset(longt, 'k', sizeof(longt) - 1);
	longt[sizeof(longt) - 1] = 0;
	assert_int_equal(cloud_key(longt, &a, key), -ENAMETOOLONG);
}

static void test_a_key_template_without_first_lsn_or_with_unknowns_is_refused(void **state)
{
	(void)state;
	char err[SINK_ERR_LEN];
	assert_int_equal(cloud_key_check("{topic}/{date}.gz", err), -EINVAL);
	assert_non_null(strstr(err, "has no {first_lsn}"));
	assert_int_equal(cloud_key_check("{topic}/{first_lsn}/{when}", err), -EINVAL);
	assert_non_null(strstr(err, "unknown placeholder {when}"));
	assert_int_equal(cloud_key_check("a}{first_lsn}", err), -EINVAL);
	assert_int_equal(cloud_key_check("/abs/{first_lsn}", err), -EINVAL);
	assert_int_equal(cloud_key_check("{first_lsn", err), -EINVAL);
	assert_int_equal(cloud_key_check("x/{first_lsn}", err), 0);
}

static void gunzip(const struct cbuf *gz, uint8_t *out, size_t cap, size_t *n)
{
	z_stream z = { 0 };
	assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
	z.next_in = gz->p;
	z.avail_in = (uInt)gz->len;
	z.next_out = out;
	z.avail_out = (uInt)cap;
	assert_int_equal(inflate(&z, Z_FINISH), Z_STREAM_END);
	*n = cap - z.avail_out;
	inflateEnd(&z);
}

static void test_gzip_round_trips_with_one_stream_for_many_objects(void **state)
{
	(void)state;
	void *z = NULL;
	struct cbuf gz = { 0 };
	static uint8_t in[200000], out[200000];
	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)(i % 251 < 200 ? 'a' + i % 7 : i);
	for (int round = 0; round < 3; round++) {
		size_t n = sizeof(in) / (size_t)(round + 1), got;
		assert_int_equal(cloud_gzip(&z, 6, in, n, &gz), 0);
		assert_true(gz.len > 18 && gz.len < n);
		assert_int_equal(gz.p[0], 0x1f);   /* a gzip member */
		assert_int_equal(gz.p[1], 0x8b);
		gunzip(&gz, out, sizeof(out), &got);
		assert_int_equal(got, n);
		assert_memory_equal(out, in, n);
	}
	cloud_gzip_free(&z);
	cbuf_free(&gz);
}

struct dirfix {
	char dir[64], path[96];
};

static int setup_dir(void **state)
{
	struct dirfix *f = calloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/test-cloud-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/s3.journal", f->dir);
	*state = f;
	return 0;
}

static int teardown_dir(void **state)
{
	struct dirfix *f = *state;
	int r = testdir_remove(f->dir);
	free(f);
	return r;
}

static struct cj_plan plan(uint16_t topic, uint64_t first, uint64_t last)
{
	return (struct cj_plan){ .topic = topic, .first = first, .last = last, .srv_ns = first * 1000,
				 .records = (uint32_t)(last - first) / 10 + 1 };
}

static void test_the_journal_keeps_what_a_restart_needs_and_marks_what_was_uploaded(void **state)
{
	struct dirfix *f = *state;
	struct cjournal j;
	char err[SINK_ERR_LEN];
	assert_int_equal(cj_open(&j, f->path, 0, err), 0);
	struct cj_plan v[] = { plan(1, 0, 90), plan(2, 10, 200), plan(1, 100, 300), plan(3, 400, 500) };
	for (int i = 0; i < 4; i++)
		assert_int_equal(cj_add(&j, &v[i], err), i);
	cj_close(&j);
	/* restarted from LSN 150: the first range is past, the second and third
	 * began before it (uploaded), the fourth is to be rebuilt */
	assert_int_equal(cj_open(&j, f->path, 150, err), 0);
	assert_int_equal(j.n, 3);
	assert_int_equal(j.v[0].first, 10);
	assert_int_equal(j.v[0].uploaded, 1);
	assert_int_equal(j.v[1].first, 100);
	assert_int_equal(j.v[1].uploaded, 1);
	assert_int_equal(j.v[2].topic, 3);
	assert_int_equal(j.v[2].last, 500);
	assert_int_equal(j.v[2].srv_ns, 400000);
	assert_int_equal(j.v[2].records, v[3].records);
	assert_int_equal(j.v[2].uploaded, 0);
	cj_prune(&j, 250);   /* stored past the first of them */
	assert_int_equal(j.n, 2);
	cj_close(&j);
}

static void test_a_torn_last_entry_ends_the_journal_there(void **state)
{
	struct dirfix *f = *state;
	struct cjournal j;
	char err[SINK_ERR_LEN];
	assert_int_equal(cj_open(&j, f->path, 0, err), 0);
	struct cj_plan a = plan(1, 0, 10), b = plan(1, 20, 30);
	assert_int_equal(cj_add(&j, &a, err), 0);
	assert_int_equal(cj_add(&j, &b, err), 1);
	cj_close(&j);
	/* the crash cut the second entry short */
	assert_int_equal(truncate(f->path, 40 + 17), 0);
	assert_int_equal(cj_open(&j, f->path, 0, err), 0);
	assert_int_equal(j.n, 1);
	assert_int_equal(j.v[0].last, 10);
	/* and the file was rewritten whole: what comes next reads back */
	assert_int_equal(cj_add(&j, &b, err), 1);
	cj_close(&j);
	assert_int_equal(cj_open(&j, f->path, 0, err), 0);
	assert_int_equal(j.n, 2);
	cj_close(&j);
}

static void test_the_journal_file_stays_small_as_ranges_pass(void **state)
{
	struct dirfix *f = *state;
	struct cjournal j;
	char err[SINK_ERR_LEN];
	assert_int_equal(cj_open(&j, f->path, 0, err), 0);
	for (uint64_t i = 0; i < 1000; i++) {
		struct cj_plan p = plan(1, i * 100, i * 100 + 99);
		assert_true(cj_add(&j, &p, err) >= 0);
		cj_prune(&j, i * 100);   /* the offset follows one range behind */
	}
	struct stat st;
	assert_int_equal(stat(f->path, &st), 0);
	assert_true(st.st_size <= 40 * (2 * 2 + 64 + 1));
	cj_close(&j);
	assert_int_equal(cj_open(&j, f->path, 99900, err), 0);
	assert_int_equal(j.n, 1);
	assert_int_equal(j.v[0].first, 99900);
	cj_close(&j);
}

static void write_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
}

static void test_credentials_come_from_the_profile_of_the_shared_file(void **state)
{
	struct dirfix *f = *state;
	char path[128], err[SINK_ERR_LEN];
	struct aws_creds c;
	memset(&c, 0, sizeof(c));
	snprintf(path, sizeof(path), "%s/credentials", f->dir);
	write_file(path, "# comment\n[default]\naws_access_key_id = AKDEF\naws_secret_access_key = sdef\n\n"
			 "[profile edge]\n  aws_access_key_id=AKEDGE  \naws_secret_access_key = s/edge+1\n"
			 "aws_session_token = tok\n; other\n[bare]\naws_access_key_id = AKBARE\n");
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_PROFILE");
	assert_int_equal(aws_creds_load(path, "", &c, err), 0);
	assert_string_equal(c.id, "AKDEF");
	assert_string_equal(c.secret, "sdef");
	assert_string_equal(c.token, "");
	assert_int_equal(aws_creds_load(path, "edge", &c, err), 0);
	assert_string_equal(c.id, "AKEDGE");
	assert_string_equal(c.secret, "s/edge+1");
	assert_string_equal(c.token, "tok");
	assert_non_null(strstr(c.source, "[edge]"));
	/* a failed load leaves the last good key in place */
	assert_int_equal(aws_creds_load(path, "bare", &c, err), -ENOENT);
	assert_non_null(strstr(err, "no aws_secret_access_key"));
	assert_string_equal(c.id, "AKEDGE");
	assert_int_equal(aws_creds_load(path, "nosuch", &c, err), -ENOENT);
	assert_non_null(strstr(err, "no such profile [nosuch]"));
	setenv("AWS_PROFILE", "edge", 1);
	assert_int_equal(aws_creds_load(path, "", &c, err), 0);
	assert_string_equal(c.id, "AKEDGE");
	unsetenv("AWS_PROFILE");
	aws_creds_wipe(&c);
}

static void test_the_environment_wins_over_the_file(void **state)
{
	struct dirfix *f = *state;
	char path[128], err[SINK_ERR_LEN];
	struct aws_creds c;
	memset(&c, 0, sizeof(c));
	snprintf(path, sizeof(path), "%s/credentials", f->dir);
	write_file(path, "[default]\naws_access_key_id = AKFILE\naws_secret_access_key = sfile\n");
	setenv("AWS_ACCESS_KEY_ID", "AKENV", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "senv", 1);
	assert_int_equal(aws_creds_load(path, "", &c, err), 0);
	assert_string_equal(c.id, "AKENV");
	assert_string_equal(c.secret, "senv");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	assert_int_equal(aws_creds_load(path, "", &c, err), -EINVAL);
	assert_non_null(strstr(err, "AWS_SECRET_ACCESS_KEY is not"));
	unsetenv("AWS_ACCESS_KEY_ID");
	assert_int_equal(aws_creds_load(path, "", &c, err), 0);
	assert_string_equal(c.id, "AKFILE");
	char missing[140];
	snprintf(missing, sizeof(missing), "%s/none", f->dir);
	assert_int_equal(aws_creds_load(missing, "", &c, err), -ENOENT);
	assert_non_null(strstr(err, missing));
	aws_creds_wipe(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_text_payload_is_one_json_line_with_every_field),
		cmocka_unit_test(test_bytes_that_are_not_utf8_go_as_base64),
		cmocka_unit_test(test_lines_append_to_one_buffer),
		cmocka_unit_test(test_the_default_key_names_topic_date_hour_and_range),
		cmocka_unit_test(test_a_key_template_without_first_lsn_or_with_unknowns_is_refused),
		cmocka_unit_test(test_gzip_round_trips_with_one_stream_for_many_objects),
		cmocka_unit_test_setup_teardown(test_the_journal_keeps_what_a_restart_needs_and_marks_what_was_uploaded,
						setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_a_torn_last_entry_ends_the_journal_there, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_the_journal_file_stays_small_as_ranges_pass, setup_dir,
						teardown_dir),
		cmocka_unit_test_setup_teardown(test_credentials_come_from_the_profile_of_the_shared_file, setup_dir,
						teardown_dir),
		cmocka_unit_test_setup_teardown(test_the_environment_wins_over_the_file, setup_dir, teardown_dir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
