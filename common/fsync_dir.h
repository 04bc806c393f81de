/* fsync_dir — makes a directory's entries durable (a rename or unlink in it
 * survives a power cut only once the directory is synced). */
#ifndef MI_FSYNC_DIR_H
#define MI_FSYNC_DIR_H

/* Returns 0 or -errno. */
int fsync_dir(const char *dir);
#endif
