/* config — INI files (iniparser) described by declarative option tables.
 *
 * Every option is one row: section, key, type, default, where it lands in the
 * caller's struct, range and a one-line description.  A value comes from, in
 * order: the environment (INGEST_<SECTION>_<KEY>, upper-cased, '.' and '-'
 * read as '_'), the file, the row's default.  Keys in the file and INGEST_*
 * variables that no table claims are errors, so a typo stops start-up with a
 * message that names it instead of being silently ignored.
 */
#ifndef MI_CONFIG_H
#define MI_CONFIG_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum cfg_type {
	CFG_STR,    /* char[size] */
	CFG_INT,    /* int64_t, min..max */
	CFG_SIZE,   /* uint64_t bytes; accepts K, M, G suffixes (powers of 1024) */
	CFG_BOOL,   /* int: true/false/yes/no/on/off/1/0 */
	CFG_TYPE_MAX
};

struct cfg_opt {
	const char *section;
	const char *key;
	enum cfg_type type;
	const char *def;
	size_t off;      /* offsetof() into the destination struct */
	size_t size;     /* CFG_STR: the char array's size */
	int64_t min, max;/* CFG_INT / CFG_SIZE bounds (inclusive) */
	const char *desc;
};

typedef struct cfg cfg_t;

#define CFG_ERR_LEN 512

/* path NULL: no file, defaults and environment only.  On error *err names
 * the file and the reason.  Returns 0 or -errno / -EINVAL. */
int cfg_open(const char *path, cfg_t **ret, char err[CFG_ERR_LEN]);
void cfg_close(cfg_t *c);
/* Fills dst from the table.  Returns 0 or -EINVAL with err naming the key. */
int cfg_apply(cfg_t *c, const struct cfg_opt *opts, size_t n, void *dst, char err[CFG_ERR_LEN]);
/* After every table was applied: rejects unclaimed keys and INGEST_* vars.
 * Sections whose name starts with one of skip_prefixes (NULL-terminated
 * list, may be NULL) are left to another binary. */
int cfg_check_unused(cfg_t *c, const char *const *skip_prefixes, char err[CFG_ERR_LEN]);
/* The section names present in the file, for callers that enable things by
 * section (sinks).  Returns the count; names valid until cfg_close. */
int cfg_sections(const cfg_t *c, const char ***ret_names);
/* Every key = value of a free-form section (names lower-cased by iniparser,
 * without the "section:" prefix), each claimed.  Returns the count (0 when
 * the section is absent) or -ENOMEM; the arrays are malloc'd (free them),
 * the strings valid until cfg_close. */
int cfg_section_pairs(cfg_t *c, const char *section, const char ***keys, const char ***vals);
/* Prints the table as documentation (key, default, description) on f, so a
 * usage printed on stderr for a bad command line keeps stdout empty. */
void cfg_print_help(FILE *f, const struct cfg_opt *opts, size_t n);
#endif
