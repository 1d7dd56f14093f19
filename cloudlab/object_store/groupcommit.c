/* The object store's group commit, the part that runs without Python's GIL.
 *
 * cl_write_batch() creates and writes a batch of temporary files, then makes all of
 * them durable with one syncfs() of their file system, instead of one fsync() per file.
 * It is one ctypes call per batch: Python's GIL is released for all of it, so the
 * event loop thread keeps serving requests while the disk works.  (Each os.open,
 * os.write and os.close from Python would give the GIL up and take it back, and on a
 * busy two-core machine each take-back waits for the event loop.)  The renames that
 * make the files visible stay in Python, under the container's lock, as for every
 * other write.  commit.py holds the same algorithm in Python for machines without
 * a C compiler.
 *
 * Built by commit.py with `cc -O2 -shared -fPIC` into the cache, on first use.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <unistd.h>

/* For each i < n: create tmps[i] (it must not exist), write lens[i] bytes of datas[i]
 * and close it; errs[i] is 0 or the errno of the step that failed.  A failed file is
 * removed here.  Then, if syncfd >= 0 and any file was written, syncfs(syncfd) makes
 * every written file durable.  Returns 0, or syncfs's errno (the files written are
 * then not known to be durable: the caller fails and removes them).
 */
int cl_write_batch(int n, const char *const *tmps, const char *const *datas,
                   const size_t *lens, int syncfd, int *errs)
{
    int written = 0;
    for (int i = 0; i < n; i++) {
        errs[i] = 0;
        int fd = open(tmps[i], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0) {
            errs[i] = errno;
            continue;
        }
        size_t off = 0;
        while (off < lens[i]) {
            ssize_t w = write(fd, datas[i] + off, lens[i] - off);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                errs[i] = errno;
                break;
            }
            off += (size_t)w;
        }
        if (close(fd) < 0 && errs[i] == 0)
            errs[i] = errno;
        if (errs[i] != 0)
            unlink(tmps[i]);
        else
            written++;
    }
    if (syncfd >= 0 && written > 0 && syncfs(syncfd) < 0)
        return errno;
    return 0;
}
