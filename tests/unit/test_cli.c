/* test_cli — the line that names a refused option (common/cli.h), with the
 * real getopt_long as the oracle of what is left in optopt and optind. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "common/cli.h"

static const struct option lopts[] = {
	{ "config", required_argument, NULL, 'c' },
	{ "json", no_argument, NULL, 'j' },
	{ "replay", no_argument, NULL, 'R' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* Parses argv (NULL-terminated, "p" first) like the programs do; returns
 * the message for the first refused option, or "" if none was refused. */
static const char *refusal(const char **words)
{
	static char msg[256];
	char *argv[16];
	int argc = 0, c;
	while (words[argc]) {
		argv[argc] = (char *)words[argc];
		argc++;
	}
	argv[argc] = NULL;
	optind = 0;   /* glibc: start over, forgetting a half-read cluster */
	msg[0] = 0;
	while ((c = getopt_long(argc, argv, ":c:jh", lopts, NULL)) != -1)
		if (c == '?' || c == ':') {
			int n = cli_bad_option_msg(msg, sizeof(msg), "p", c, optopt, optind, argv);
			assert_int_equal(n, (int)strlen(msg));
			break;
		}
	return msg;
}

#define REFUSED(want, ...) \
	assert_string_equal(refusal((const char *[]){ "p", __VA_ARGS__, NULL }), want)

static void test_unknown_long(void **state)
{
	(void)state;
	REFUSED("p: unknown option '--bogus'", "--bogus");
	REFUSED("p: unknown option '--bogus'", "--bogus=3");
	REFUSED("p: unknown option '--bogus'", "-j", "--bogus", "-c", "x");
	REFUSED("p: unknown option '--bogus'", "file", "--bogus");   /* after a permuted operand */
	REFUSED("", "--jso", "--conf", "x");                          /* unique prefixes are fine */
}

static void test_unknown_short(void **state)
{
	(void)state;
	REFUSED("p: unknown option '-x'", "-x");
	REFUSED("p: unknown option '-x'", "-jx");
	REFUSED("p: unknown option '-x'", "-xj");                    /* optind still on the cluster */
	REFUSED("p: unknown option '-x'", "--json", "-xj");
	REFUSED("p: unknown option '-x'", "--config=a", "-xj");      /* not "--config takes no argument" */
	REFUSED("p: unknown option '-R'", "-R");                     /* a long option's val is not a letter */
}

static void test_missing_argument(void **state)
{
	(void)state;
	REFUSED("p: option '-c' needs an argument", "-c");
	REFUSED("p: option '-c' needs an argument", "-jc");
	REFUSED("p: option '--config' needs an argument", "--config");
	REFUSED("p: option '--config' needs an argument", "-j", "--config");
	REFUSED("", "-c", "--bogus");                                /* "--bogus" is -c's argument */
}

static void test_argument_to_a_flag(void **state)
{
	(void)state;
	REFUSED("p: option '--replay' takes no argument", "--replay=1");
	REFUSED("p: option '--json' takes no argument", "--json=");
}

static void test_truncates_to_the_buffer(void **state)
{
	(void)state;
	char buf[8];
	char *argv[] = { "p", "--bogus", NULL };
	int n = cli_bad_option_msg(buf, sizeof(buf), "prog", '?', 0, 2, argv);
	assert_int_equal(n, (int)strlen("prog: unknown option '--bogus'"));
	assert_string_equal(buf, "prog: u");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unknown_long),
		cmocka_unit_test(test_unknown_short),
		cmocka_unit_test(test_missing_argument),
		cmocka_unit_test(test_argument_to_a_flag),
		cmocka_unit_test(test_truncates_to_the_buffer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
