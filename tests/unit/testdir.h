/* testdir — the unit tests' scratch directories: removed whole, depth first. */
#ifndef MI_TESTDIR_H
#define MI_TESTDIR_H
#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>

static inline int testdir_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Removes dir and everything under it.  0 or -1. */
static inline int testdir_remove(const char *dir)
{
	return nftw(dir, testdir_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}
#endif
