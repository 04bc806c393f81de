/* cli — the one answer every program gives a command line it cannot parse.
 *
 * A program's optstring starts with ':' (so getopt prints nothing itself and
 * tells a missing argument, ':', from an unknown option, '?'), and both
 * cases call cli_bad_option(), print the program's usage on stderr and exit
 * CLI_EX_USAGE.  The first line on stderr then names what was wrong:
 *
 *     sinkd: unknown option '--bogus'
 *     sinkd: option '-c' needs an argument
 *     flusherd: option '--replay' takes no argument
 *
 * --help prints the usage on stdout and exits 0; that is each program's own.
 */
#ifndef MI_CLI_H
#define MI_CLI_H
#include <stddef.h>

/* Exit status of every program for a bad command line (unknown option,
 * missing or unexpected option argument, bad arguments). */
#define CLI_EX_USAGE 2

/* Writes "<prog>: <what was wrong>" (no newline) into buf for getopt's
 * return c ('?' or ':'), from optopt, optind and argv as getopt_long left
 * them.  A long option is named without its "=value".  Returns what
 * snprintf returns. */
int cli_bad_option_msg(char *buf, size_t len, const char *prog, int c, int opt, int ind, char *const argv[]);

/* The same line on stderr, from getopt's own optopt and optind. */
void cli_bad_option(const char *prog, int c, char *const argv[]);
#endif
