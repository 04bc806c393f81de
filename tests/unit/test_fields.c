/* test_fields — numeric fields of JSON and binary payloads (common/fields.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "common/fields.h"

static int json(const char *s, struct field_val *fv)
{
	return fields_json((const uint8_t *)s, strlen(s), fv);
}

static void assert_field(const struct field_val *f, const char *name, double v)
{
	assert_int_equal(f->name_len, strlen(name));
	assert_memory_equal(f->name, name, f->name_len);
	assert_true(f->value == v);
}

static void test_top_level_numbers_only(void **st)
{
	struct field_val fv[FIELDS_MAX];
	assert_int_equal(json(" {\"t\": -21.5e1, \"s\":\"9\", \"o\":{\"n\":1}, \"a\":[2,3], \"b\":true,"
			      "\"z\":null, \"h\" : 0 } \n", fv), 2);
	assert_field(&fv[0], "t", -215);
	assert_field(&fv[1], "h", 0);
	assert_int_equal(json("{}", fv), 0);
	/* a key with an escape is not a name; its value is still skipped */
	assert_int_equal(json("{\"a\\\"b\": 1, \"c\": 2}", fv), 1);
	assert_field(&fv[0], "c", 2);
	/* a key that is not UTF-8 is no name either */
	assert_int_equal(json("{\"t\xe9\": 1, \"t\xc3\xa9\": 2}", fv), 1);
	assert_field(&fv[0], "t\xc3\xa9", 2);
}

static void test_utf8_valid(void **st)
{
	const char *good[] = { "", "abc", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf" };
	const char *bad[] = { "\xc3", "\xe9", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
			      "\xff", "a\x80", "\xe2\x82" };
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_true(utf8_valid((const uint8_t *)good[i], strlen(good[i])));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(utf8_valid((const uint8_t *)bad[i], strlen(bad[i])));
}

static void test_anything_but_one_object_has_no_fields(void **st)
{
	struct field_val fv[FIELDS_MAX];
	const char *bad[] = { "", "[1]", "1", "{\"a\":1", "{\"a\":1}x", "{\"a\":01}", "{\"a\":1.}", "{\"a\":-}",
			      "{\"a\" 1}", "{\"a\":1,}", "{a:1}", "{\"a\":tru}", "{\"a\":\"\x01\"}", "{\"a\":[1,}",
			      "{\"a\":{\"b\":1]}", "{\"a\":\"\\x\"}", "{\"a\":1}{}" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(json(bad[i], fv), -1);
	char deep[300];
	memset(deep, '[', sizeof(deep));
	memcpy(deep, "{\"a\":", 5);
	assert_int_equal(fields_json((const uint8_t *)deep, sizeof(deep), fv), -1);
}

static void test_at_most_fields_max_are_taken(void **st)
{
	char buf[4096];
	size_t n = 0;
	buf[n++] = '{';
	for (int i = 0; i < FIELDS_MAX + 10; i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s\"f%d\":%d", i ? "," : "", i, i);
	buf[n++] = '}';
	struct field_val fv[FIELDS_MAX];
	assert_int_equal(fields_json((const uint8_t *)buf, n, fv), FIELDS_MAX);
	assert_field(&fv[FIELDS_MAX - 1], "f63", 63);
}

static void test_layout_reads_each_type_and_endianness(void **st)
{
	struct layout l;
	char err[128];
	assert_int_equal(layout_parse("a:u8@0, b:i16be@1 ,c:f32le@3,d:i64le@7,e:f64be@15", &l, err, sizeof(err)), 0);
	assert_int_equal(l.n, 5);
	uint8_t p[23] = { 200, 0xff, 0xfe };
	float f = 1.25f;
	memcpy(p + 3, &f, 4);
	int64_t d = -5;
	memcpy(p + 7, &d, 8);
	const uint8_t e[8] = { 0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18 };   /* pi */
	memcpy(p + 15, e, 8);
	struct field_val fv[FIELDS_MAX];
	assert_int_equal(fields_layout(&l, p, sizeof(p), fv), 5);
	assert_field(&fv[0], "a", 200);
	assert_field(&fv[1], "b", -2);
	assert_field(&fv[2], "c", 1.25);
	assert_field(&fv[3], "d", -5);
	assert_field(&fv[4], "e", 3.141592653589793);
	/* too short for the last two: only those are missing */
	assert_int_equal(fields_layout(&l, p, 14, fv), 3);
}

static void test_bad_layouts_say_what_is_wrong(void **st)
{
	struct layout l;
	char err[128];
	const char *bad[][2] = { { "", "no fields" }, { "a:u16@0", "type 'u16'" }, { "a:u8le@0", "type 'u8le'" },
				 { "a:f32le", "want name:type@offset" }, { "a:f32le@x", "offset 'x'" },
				 { "a:u8@0,a:u8@1", "named twice" }, { ":u8@0", "a field name" } };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(layout_parse(bad[i][0], &l, err, sizeof(err)), -1);
		assert_non_null(strstr(err, bad[i][1]));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_top_level_numbers_only),
		cmocka_unit_test(test_utf8_valid),
		cmocka_unit_test(test_anything_but_one_object_has_no_fields),
		cmocka_unit_test(test_at_most_fields_max_are_taken),
		cmocka_unit_test(test_layout_reads_each_type_and_endianness),
		cmocka_unit_test(test_bad_layouts_say_what_is_wrong),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
