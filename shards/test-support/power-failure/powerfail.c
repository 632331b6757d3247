/*
 * powerfail.c: an LD_PRELOAD power-failure emulator (README.md next to this file).
 *
 * The process runs on the real file system as usual. Beside it, for one watched directory, this library
 * keeps the *durable image*: what the directory would hold after a power cut right now. The image changes
 * only where POSIX says data reaches stable storage:
 *   - a regular file's bytes and size: fsync/fdatasync of that file, msync(MS_SYNC) of a shared mapping,
 *     or at once for a write through an O_SYNC/O_DSYNC descriptor or with RWF_DSYNC (LMDB writes its meta
 *     pages that way);
 *   - a directory's entries (create, rename, unlink, mkdir, link): fsync of that directory;
 *   - in `metadata` mode, additionally every entry change at once (a journaling file system may commit
 *     the rename before the data: ext4's delayed allocation gives the zero-length file after a crash).
 * A power failure is SIGKILL of every process using the directory, then rebuilding the directory from the
 * image (power-failure.ts, restoreImage). sync_file_range is not interposed: it never makes data durable.
 *
 * Environment:
 *   POWERFAIL_DIR       watched directory (must exist); nothing outside it is touched
 *   POWERFAIL_IMAGE     image directory, outside the watched one; made from the watched directory's
 *                       contents by the first process that finds it missing
 *   POWERFAIL_MODE      strict (default) | metadata
 *   POWERFAIL_CRASH_AT  n ≥ 1: SIGKILL this process at the n-th durability event counted in the image,
 *                       before the event takes effect (a deterministic crash point)
 *   POWERFAIL_BOOT_ID   served as /proc/sys/kernel/random/boot_id: a power failure is a reboot, and
 *                       lmdb-js picks a store's meta page by comparing boot ids
 *
 * Image layout (read by power-failure.ts):
 *   root              id of the watched directory
 *   ids/<dev>.<ino>   id of the live inode with that number; a new id at every creation, because file
 *                     systems reuse inode numbers while the image may still name the old file
 *   dirs/<id>         durable entries of directory <id>: records "<type><id or link target>\0<name>\0",
 *                     type f (file), d (directory) or l (symlink); absent: no entry was ever synced
 *   data/<id>         durable bytes of file <id>; absent: empty
 *   event-count, events  durability events so far (count; one line each: number, kind, path)
 *   lock              flock'ed around every image change: children inherit LD_PRELOAD and share the image
 *
 * Limits: 64-bit Linux with glibc. Writes through descriptors it did not see opened (fcntl F_DUPFD,
 * inherited across exec), copy_file_range/sendfile, io_uring (run with UV_USE_IO_URING=0), raw syscall()
 * and stdio's fopen are not seen; two live processes writing one file each track only their own writes.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

/* Descriptors at or above this are never tracked; Node's default soft limit is far below it. */
#define FD_TABLE_SIZE 65536
/* Dirty ranges kept per file before they are merged; past it after merging, the whole file is copied. */
#define DIRTY_RANGES_MAX 4096
/* Writable shared mappings of watched files tracked at once (LMDB maps one lock file per environment). */
#define MAPPINGS_MAX 64
#define ID_CHARS 16
#define COPY_CHUNK_BYTES 65536
#define OFF_END ((off_t)INT64_MAX)
#define BOOT_ID_PATH "/proc/sys/kernel/random/boot_id"
#ifndef RWF_DSYNC
#define RWF_DSYNC 0x00000002
#endif
#ifndef RWF_SYNC
#define RWF_SYNC 0x00000004
#endif
#ifndef RWF_APPEND
#define RWF_APPEND 0x00000010
#endif

enum { FD_TRACKED = 1, FD_DSYNC = 2, FD_DIR = 4, FD_BOOT_ID = 8 };

typedef struct { off_t start, end; } range_t;

/* One inode of the watched tree that this process has seen (by dev and ino, so renames and links follow it). */
typedef struct {
  dev_t dev;
  ino_t ino;
  char id[ID_CHARS + 1]; /* "" until looked up */
  /* Copy the whole file at the next sync: this process cannot know what earlier ones left unsynced. */
  int whole;
  range_t *dirty;
  int dirty_count, dirty_cap;
  int image_fd; /* data/<id>, opened at first use */
} inode_t;

typedef struct { char *addr; size_t len; int inode; off_t offset; } mapping_t;

/* Read without the lock on hot paths (every write and close of the process); set under it. */
static unsigned char fd_flags[FD_TABLE_SIZE];
static int fd_inode[FD_TABLE_SIZE];
static int mapping_count;

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static inode_t *inodes;
static int inode_count, inode_cap;
static mapping_t mappings[MAPPINGS_MAX];

static int active;
static int metadata_mode;
static long long crash_at;
static char watch_dir[PATH_MAX];
static size_t watch_len;
static char image_dir[PATH_MAX];
static int image_lock_fd = -1;
static char boot_id_path[PATH_MAX];

/* ---------------------------------------------------------------- the real functions */

#define REAL(name) real_##name
#define DECLARE_REAL(ret, name, ...) static ret (*real_##name)(__VA_ARGS__)
#define RESOLVE(name) do { if (real_##name == NULL) real_##name = dlsym(RTLD_NEXT, #name); } while (0)

DECLARE_REAL(int, open, const char *, int, ...);
DECLARE_REAL(int, open64, const char *, int, ...);
DECLARE_REAL(int, openat, int, const char *, int, ...);
DECLARE_REAL(int, openat64, int, const char *, int, ...);
DECLARE_REAL(int, __open_2, const char *, int);
DECLARE_REAL(int, __open64_2, const char *, int);
DECLARE_REAL(int, __openat_2, int, const char *, int);
DECLARE_REAL(int, __openat64_2, int, const char *, int);
DECLARE_REAL(int, creat, const char *, mode_t);
DECLARE_REAL(int, creat64, const char *, mode_t);
DECLARE_REAL(int, close, int);
DECLARE_REAL(int, dup, int);
DECLARE_REAL(int, dup2, int, int);
DECLARE_REAL(int, dup3, int, int, int);
DECLARE_REAL(ssize_t, write, int, const void *, size_t);
DECLARE_REAL(ssize_t, writev, int, const struct iovec *, int);
DECLARE_REAL(ssize_t, pwrite, int, const void *, size_t, off_t);
DECLARE_REAL(ssize_t, pwrite64, int, const void *, size_t, off_t);
DECLARE_REAL(ssize_t, pwritev, int, const struct iovec *, int, off_t);
DECLARE_REAL(ssize_t, pwritev64, int, const struct iovec *, int, off_t);
DECLARE_REAL(ssize_t, pwritev2, int, const struct iovec *, int, off_t, int);
DECLARE_REAL(ssize_t, pwritev64v2, int, const struct iovec *, int, off_t, int);
DECLARE_REAL(int, ftruncate, int, off_t);
DECLARE_REAL(int, ftruncate64, int, off_t);
DECLARE_REAL(int, truncate, const char *, off_t);
DECLARE_REAL(int, truncate64, const char *, off_t);
DECLARE_REAL(int, fallocate, int, int, off_t, off_t);
DECLARE_REAL(int, fallocate64, int, int, off_t, off_t);
DECLARE_REAL(int, fsync, int);
DECLARE_REAL(int, fdatasync, int);
DECLARE_REAL(void, sync, void);
DECLARE_REAL(int, syncfs, int);
DECLARE_REAL(void *, mmap, void *, size_t, int, int, int, off_t);
DECLARE_REAL(void *, mmap64, void *, size_t, int, int, int, off_t);
DECLARE_REAL(int, munmap, void *, size_t);
DECLARE_REAL(int, msync, void *, size_t, int);
DECLARE_REAL(int, rename, const char *, const char *);
DECLARE_REAL(int, renameat, int, const char *, int, const char *);
DECLARE_REAL(int, renameat2, int, const char *, int, const char *, unsigned int);
DECLARE_REAL(int, unlink, const char *);
DECLARE_REAL(int, unlinkat, int, const char *, int);
DECLARE_REAL(int, rmdir, const char *);
DECLARE_REAL(int, mkdir, const char *, mode_t);
DECLARE_REAL(int, mkdirat, int, const char *, mode_t);
DECLARE_REAL(int, link, const char *, const char *);
DECLARE_REAL(int, linkat, int, const char *, int, const char *, int);
DECLARE_REAL(int, symlink, const char *, const char *);
DECLARE_REAL(int, symlinkat, const char *, int, const char *);
DECLARE_REAL(int, fstatfs, int, struct statfs *);
DECLARE_REAL(int, fstatfs64, int, struct statfs64 *);

/* ---------------------------------------------------------------- small helpers */

static void die(const char *what, const char *path) {
  char line[PATH_MAX + 256];
  int n = snprintf(line, sizeof line, "powerfail: %s %s: %s\n", what, path, strerror(errno));
  RESOLVE(write);
  if (n > 0) REAL(write)(2, line, (size_t)n);
  abort(); /* the image can no longer be trusted; a test must not pass on it */
}

static int image_path(char *out, const char *a, const char *b) {
  return snprintf(out, PATH_MAX, "%s/%s%s%s", image_dir, a, b == NULL ? "" : "/", b == NULL ? "" : b);
}

static int write_all_at(int fd, const char *buf, size_t len, off_t at) {
  while (len > 0) {
    ssize_t r = REAL(pwrite64)(fd, buf, len, at);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    buf += r, len -= (size_t)r, at += r;
  }
  return 0;
}

/* Writes a small image file whole: temp file and rename, so a kill leaves the old or the new one. */
static void write_image_file(const char *path, const char *buf, size_t len) {
  char tmp[PATH_MAX + 16];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  int fd = REAL(open64)(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0 || write_all_at(fd, buf, len, 0) != 0) die("cannot write", tmp);
  REAL(close)(fd);
  if (REAL(rename)(tmp, path) != 0) die("cannot rename", tmp);
}

/* The path behind a descriptor; -1 when it has none (pipes, sockets are "pipe:[…]", never under the watch). */
static int fd_path(int fd, char *out) {
  char link[64];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, out, PATH_MAX - 1);
  if (n < 0) return -1;
  out[n] = 0;
  return (int)n;
}

static int under_watch(const char *path) {
  return strncmp(path, watch_dir, watch_len) == 0 && (path[watch_len] == '/' || path[watch_len] == 0);
}

static int tracked(int fd) {
  return fd >= 0 && fd < FD_TABLE_SIZE && (__atomic_load_n(&fd_flags[fd], __ATOMIC_ACQUIRE) & FD_TRACKED);
}

/* Held around every change of the tables or the image: threads by the mutex, processes by flock. */
static void lock_all(void) {
  pthread_mutex_lock(&table_lock);
  while (flock(image_lock_fd, LOCK_EX) != 0 && errno == EINTR) {}
}

static void unlock_all(void) {
  flock(image_lock_fd, LOCK_UN);
  pthread_mutex_unlock(&table_lock);
}

/* ---------------------------------------------------------------- inodes and ids */

static int inode_find(dev_t dev, ino_t ino) {
  for (int i = 0; i < inode_count; i++)
    if (inodes[i].dev == dev && inodes[i].ino == ino) return i;
  if (inode_count == inode_cap) {
    inode_cap = inode_cap == 0 ? 64 : inode_cap * 2;
    inodes = realloc(inodes, sizeof(inode_t) * (size_t)inode_cap);
    if (inodes == NULL) die("out of memory for", "inodes");
  }
  inode_t *n = &inodes[inode_count];
  memset(n, 0, sizeof *n);
  n->dev = dev, n->ino = ino, n->whole = 1, n->image_fd = -1;
  return inode_count++;
}

static void ids_path(char *out, dev_t dev, ino_t ino) {
  char name[64];
  snprintf(name, sizeof name, "%llx.%llx", (unsigned long long)dev, (unsigned long long)ino);
  image_path(out, "ids", name);
}

static void new_id(char *out) {
  unsigned char raw[ID_CHARS / 2];
  if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) die("getrandom failed for", "an id");
  for (size_t i = 0; i < sizeof raw; i++) snprintf(out + 2 * i, 3, "%02x", raw[i]);
}

/* A new inode now has this number: a fresh id, and nothing of it is durable yet. */
static void inode_created(int i) {
  inode_t *n = &inodes[i];
  char path[PATH_MAX];
  new_id(n->id);
  ids_path(path, n->dev, n->ino);
  write_image_file(path, n->id, ID_CHARS);
  if (n->image_fd >= 0) REAL(close)(n->image_fd);
  n->image_fd = -1, n->whole = 1, n->dirty_count = 0;
}

static const char *inode_id(int i) {
  inode_t *n = &inodes[i];
  if (n->id[0] != 0) return n->id;
  char path[PATH_MAX];
  ids_path(path, n->dev, n->ino);
  int fd = REAL(open64)(path, O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ssize_t r = pread(fd, n->id, ID_CHARS, 0);
    REAL(close)(fd);
    if (r == ID_CHARS) return n->id;
  }
  inode_created(i); /* made by a call not interposed: its entries say what exists, its data nothing yet */
  return n->id;
}

static int inode_image_fd(int i) {
  inode_t *n = &inodes[i];
  if (n->image_fd < 0) {
    char path[PATH_MAX];
    image_path(path, "data", inode_id(i));
    n->image_fd = REAL(open64)(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (n->image_fd < 0) die("cannot open", path);
  }
  return n->image_fd;
}

static int range_compare(const void *a, const void *b) {
  off_t x = ((const range_t *)a)->start, y = ((const range_t *)b)->start;
  return x < y ? -1 : x > y;
}

static void dirty_merge(inode_t *n) {
  if (n->dirty_count < 2) return;
  qsort(n->dirty, (size_t)n->dirty_count, sizeof(range_t), range_compare);
  int k = 0;
  for (int j = 1; j < n->dirty_count; j++) {
    if (n->dirty[j].start <= n->dirty[k].end) {
      if (n->dirty[j].end > n->dirty[k].end) n->dirty[k].end = n->dirty[j].end;
    } else {
      n->dirty[++k] = n->dirty[j];
    }
  }
  n->dirty_count = k + 1;
}

static void dirty_add(int i, off_t start, off_t end) {
  inode_t *n = &inodes[i];
  if (n->whole || start >= end) return;
  if (n->dirty_count == n->dirty_cap) {
    dirty_merge(n);
    if (n->dirty_count >= DIRTY_RANGES_MAX) {
      n->whole = 1;
      n->dirty_count = 0;
      return;
    }
    if (n->dirty_count == n->dirty_cap) {
      n->dirty_cap = n->dirty_cap == 0 ? 16 : n->dirty_cap * 2;
      n->dirty = realloc(n->dirty, sizeof(range_t) * (size_t)n->dirty_cap);
      if (n->dirty == NULL) die("out of memory for", "dirty ranges");
    }
  }
  n->dirty[n->dirty_count++] = (range_t){start, end};
}

/* ---------------------------------------------------------------- durability events */

/*
 * Counts an event in the image and logs it; at POWERFAIL_CRASH_AT the process dies here, before the
 * event changes the image. Called with lock_all held.
 */
static void durability_event(const char *kind, const char *path) {
  char counter_path[PATH_MAX], log_path[PATH_MAX], line[PATH_MAX + 64];
  image_path(counter_path, "event-count", NULL);
  image_path(log_path, "events", NULL);
  int fd = REAL(open64)(counter_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) die("cannot open", counter_path);
  long long count = 0;
  if (pread(fd, &count, sizeof count, 0) != (ssize_t)sizeof count) count = 0;
  count++;
  if (write_all_at(fd, (const char *)&count, sizeof count, 0) != 0) die("cannot write", counter_path);
  REAL(close)(fd);
  int n = snprintf(line, sizeof line, "%lld %s %s\n", count, kind, path);
  fd = REAL(open64)(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0 || REAL(write)(fd, line, (size_t)n) != n) die("cannot append to", log_path);
  REAL(close)(fd);
  if (crash_at > 0 && count == crash_at) {
    kill(getpid(), SIGKILL);
    for (;;) pause();
  }
}

/* ---------------------------------------------------------------- what syncs do to the image */

static void copy_to_image(int src, int dst, off_t start, off_t end) {
  static char buf[COPY_CHUNK_BYTES]; /* only used under lock_all */
  while (start < end) {
    size_t want = end - start < COPY_CHUNK_BYTES ? (size_t)(end - start) : COPY_CHUNK_BYTES;
    ssize_t r = pread(src, buf, want, start);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return; /* past the end: the size below settles it */
    if (write_all_at(dst, buf, (size_t)r, start) != 0) die("cannot write to the image for", "a file");
    start += r;
  }
}

/* fsync or fdatasync of a file: its dirty ranges (or all of it) and its size reach the image. */
static void sync_file(int fd, int i) {
  inode_t *n = &inodes[i];
  char link[64];
  struct stat st;
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  /* The descriptor may be write-only (LMDB's meta fd, Node's 'w'); read the inode through a new one. */
  int src = REAL(open64)(link, O_RDONLY | O_CLOEXEC);
  if (src < 0 || fstat(src, &st) != 0) die("cannot reopen", link);
  int dst = inode_image_fd(i);
  if (n->whole) {
    copy_to_image(src, dst, 0, st.st_size);
  } else {
    dirty_merge(n);
    for (int j = 0; j < n->dirty_count; j++) copy_to_image(src, dst, n->dirty[j].start, n->dirty[j].end < st.st_size ? n->dirty[j].end : st.st_size);
    /* Writes through a shared mapping reach the page cache unseen; a file sync writes them back. */
    for (int j = 0; j < mapping_count; j++)
      if (mappings[j].inode == i) copy_to_image(src, dst, mappings[j].offset, mappings[j].offset + (off_t)mappings[j].len);
  }
  if (REAL(ftruncate64)(dst, st.st_size) != 0) die("cannot size the image of", link);
  REAL(close)(src);
  n->whole = 0, n->dirty_count = 0;
}

/* fsync of a directory: its entries now, by name and inode id, become its durable entries. */
static void sync_dir(int dirfd) {
  struct stat st;
  if (fstat(dirfd, &st) != 0) die("cannot stat", "a directory");
  const char *dir_id = inode_id(inode_find(st.st_dev, st.st_ino));
  char listing_path[PATH_MAX];
  image_path(listing_path, "dirs", dir_id);
  int fd = REAL(openat64)(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *d = fd < 0 ? NULL : fdopendir(fd);
  if (d == NULL) die("cannot read", "a directory");
  size_t used = 0, cap = 4096;
  char *records = malloc(cap);
  if (records == NULL) die("out of memory for", "a listing");
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    struct stat es;
    if (fstatat(dirfd, e->d_name, &es, AT_SYMLINK_NOFOLLOW) != 0) continue; /* removed meanwhile */
    char field[PATH_MAX];
    char type;
    if (S_ISREG(es.st_mode) || S_ISDIR(es.st_mode)) {
      type = S_ISREG(es.st_mode) ? 'f' : 'd';
      snprintf(field, sizeof field, "%s", inode_id(inode_find(es.st_dev, es.st_ino)));
    } else if (S_ISLNK(es.st_mode)) {
      type = 'l';
      ssize_t r = readlinkat(dirfd, e->d_name, field, sizeof field - 1);
      if (r < 0) continue;
      field[r] = 0;
    } else {
      continue; /* sockets, fifos: nothing a restart reads */
    }
    size_t need = 1 + strlen(field) + 1 + strlen(e->d_name) + 1;
    if (used + need > cap) {
      while (used + need > cap) cap *= 2;
      records = realloc(records, cap);
      if (records == NULL) die("out of memory for", "a listing");
    }
    records[used++] = type;
    memcpy(records + used, field, strlen(field) + 1), used += strlen(field) + 1;
    memcpy(records + used, e->d_name, strlen(e->d_name) + 1), used += strlen(e->d_name) + 1;
  }
  closedir(d);
  write_image_file(listing_path, records, used);
  free(records);
}

/* The directory holding `path` (relative to dirfd), opened, when it is under the watch; else -1. */
static int open_parent(int dirfd, const char *path) {
  char parent[PATH_MAX], where[PATH_MAX];
  snprintf(parent, sizeof parent, "%s", path);
  size_t len = strlen(parent);
  while (len > 1 && parent[len - 1] == '/') parent[--len] = 0;
  char *slash = strrchr(parent, '/');
  if (slash == NULL) snprintf(parent, sizeof parent, ".");
  else if (slash == parent) parent[1] = 0;
  else *slash = 0;
  int fd = REAL(openat64)(dirfd, parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0 && (fd_path(fd, where) < 0 || !under_watch(where))) {
    REAL(close)(fd);
    return -1;
  }
  return fd;
}

/*
 * Metadata mode: the entries of the directories holding `path` and `other` (a rename's two ends; NULL
 * otherwise) reach the image now, as one event named after `path`.
 */
static void sync_parents_now(const char *kind, int dirfd, const char *path, int other_dirfd, const char *other) {
  int fds[2] = {open_parent(dirfd, path), other == NULL ? -1 : open_parent(other_dirfd, other)};
  struct stat a, b;
  if (fds[0] >= 0 && fds[1] >= 0 && fstat(fds[0], &a) == 0 && fstat(fds[1], &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
    REAL(close)(fds[1]);
    fds[1] = -1;
  }
  if (fds[0] >= 0 || fds[1] >= 0) {
    char where[PATH_MAX], entry[PATH_MAX];
    const char *base = strrchr(path, '/');
    if (fd_path(fds[0] >= 0 ? fds[0] : fds[1], where) < 0) snprintf(where, sizeof where, "?");
    snprintf(entry, sizeof entry, "%s/%s", where, base == NULL ? path : base + 1);
    lock_all();
    durability_event(kind, entry);
    for (int k = 0; k < 2; k++) if (fds[k] >= 0) sync_dir(fds[k]);
    unlock_all();
  }
  for (int k = 0; k < 2; k++) if (fds[k] >= 0) REAL(close)(fds[k]);
}

/* ---------------------------------------------------------------- start: the image of what is there */

static void snapshot_tree(int dirfd) {
  struct stat st;
  fstat(dirfd, &st);
  inode_id(inode_find(st.st_dev, st.st_ino));
  sync_dir(dirfd);
  int fd = REAL(openat64)(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *d = fd < 0 ? NULL : fdopendir(fd);
  if (d == NULL) die("cannot read", watch_dir);
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    int child = REAL(openat64)(dirfd, e->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (child < 0) continue;
    struct stat cs;
    fstat(child, &cs);
    if (S_ISDIR(cs.st_mode)) snapshot_tree(child);
    else if (S_ISREG(cs.st_mode)) sync_file(child, inode_find(cs.st_dev, cs.st_ino));
    REAL(close)(child);
  }
  closedir(d);
}

__attribute__((constructor)) static void powerfail_start(void) {
  RESOLVE(open); RESOLVE(open64); RESOLVE(openat); RESOLVE(openat64); RESOLVE(__open_2); RESOLVE(__open64_2);
  RESOLVE(__openat_2); RESOLVE(__openat64_2); RESOLVE(creat); RESOLVE(creat64); RESOLVE(close); RESOLVE(dup);
  RESOLVE(dup2); RESOLVE(dup3); RESOLVE(write); RESOLVE(writev); RESOLVE(pwrite); RESOLVE(pwrite64);
  RESOLVE(pwritev); RESOLVE(pwritev64); RESOLVE(pwritev2); RESOLVE(pwritev64v2); RESOLVE(ftruncate);
  RESOLVE(ftruncate64); RESOLVE(truncate); RESOLVE(truncate64); RESOLVE(fallocate); RESOLVE(fallocate64);
  RESOLVE(fsync); RESOLVE(fdatasync); RESOLVE(sync); RESOLVE(syncfs); RESOLVE(mmap); RESOLVE(mmap64);
  RESOLVE(munmap); RESOLVE(msync); RESOLVE(rename); RESOLVE(renameat); RESOLVE(renameat2); RESOLVE(unlink);
  RESOLVE(unlinkat); RESOLVE(rmdir); RESOLVE(mkdir); RESOLVE(mkdirat); RESOLVE(link); RESOLVE(linkat);
  RESOLVE(symlink); RESOLVE(symlinkat); RESOLVE(fstatfs); RESOLVE(fstatfs64);

  const char *watch = getenv("POWERFAIL_DIR"), *image = getenv("POWERFAIL_IMAGE");
  if (watch == NULL || image == NULL || watch[0] == 0 || image[0] == 0) return;
  /* Image paths are the image directory plus a few dozen characters; bounded here so they always fit. */
  if (strlen(image) > PATH_MAX / 2) die("POWERFAIL_IMAGE is too long:", image);
  if (realpath(watch, watch_dir) == NULL) die("cannot resolve POWERFAIL_DIR", watch);
  watch_len = strlen(watch_dir);
  snprintf(image_dir, sizeof image_dir, "%s", image);
  const char *mode = getenv("POWERFAIL_MODE");
  metadata_mode = mode != NULL && strcmp(mode, "metadata") == 0;
  if (mode != NULL && mode[0] != 0 && !metadata_mode && strcmp(mode, "strict") != 0) die("POWERFAIL_MODE must be strict or metadata, got", mode);
  const char *crash = getenv("POWERFAIL_CRASH_AT");
  crash_at = crash == NULL ? 0 : atoll(crash);

  char path[PATH_MAX];
  REAL(mkdir)(image_dir, 0755);
  image_path(path, "lock", NULL);
  image_lock_fd = REAL(open64)(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (image_lock_fd < 0) die("cannot open", path);
  const char *boot_id = getenv("POWERFAIL_BOOT_ID");
  if (boot_id != NULL && boot_id[0] != 0) {
    char text[128];
    int n = snprintf(text, sizeof text, "%s\n", boot_id);
    snprintf(boot_id_path, sizeof boot_id_path, "%s/boot_id.%d", image_dir, getpid());
    write_image_file(boot_id_path, text, (size_t)n);
  }
  active = 1;
  lock_all();
  image_path(path, "root", NULL);
  if (access(path, F_OK) != 0) {
    /* A new image: everything in the watched directory now is durable (the harness just restored it). */
    const char *subdirs[] = {"ids", "dirs", "data"};
    for (int i = 0; i < 3; i++) {
      char sub[PATH_MAX];
      image_path(sub, subdirs[i], NULL);
      REAL(mkdir)(sub, 0755);
    }
    int root = REAL(open64)(watch_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) die("cannot open", watch_dir);
    snapshot_tree(root);
    struct stat st;
    fstat(root, &st);
    const char *id = inode_id(inode_find(st.st_dev, st.st_ino));
    write_image_file(path, id, ID_CHARS);
    REAL(close)(root);
  }
  unlock_all();
}

/* ---------------------------------------------------------------- opening and closing */

/* Forgets the descriptor before the real close: after it, another thread may get the same number. Lock-free
 * because it runs between fork and exec in libuv's spawn, where another thread may have held the mutex. */
static void forget_fd(int fd) {
  if (fd >= 0 && fd < FD_TABLE_SIZE) __atomic_store_n(&fd_flags[fd], 0, __ATOMIC_RELEASE);
}

/* A descriptor just opened: tracked when it names a regular file or directory under the watch. */
static int opened(int fd, int flags, int created) {
  char path[PATH_MAX];
  struct stat st;
  if (fd < 0 || fd >= FD_TABLE_SIZE) return fd;
  forget_fd(fd); /* in case the number was last closed by a call not interposed (glibc's own close) */
  if (fd_path(fd, path) < 0 || !under_watch(path)) return fd;
  if (fstat(fd, &st) != 0 || !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))) return fd;
  lock_all();
  int i = inode_find(st.st_dev, st.st_ino);
  if (created) inode_created(i);
  __atomic_store_n(&fd_inode[fd], i, __ATOMIC_RELAXED);
  /* O_SYNC includes O_DSYNC's bit on Linux. */
  unsigned char f = FD_TRACKED | (S_ISDIR(st.st_mode) ? FD_DIR : 0) | ((flags & O_DSYNC) ? FD_DSYNC : 0);
  __atomic_store_n(&fd_flags[fd], f, __ATOMIC_RELEASE);
  unlock_all();
  if (created && metadata_mode) sync_parents_now("create", AT_FDCWD, path, AT_FDCWD, NULL);
  return fd;
}

/* Whether open(O_CREAT) is about to create the file, so it gets a fresh id (inode numbers are reused). */
static int will_create(int dirfd, const char *path, int flags) {
  struct stat st;
  return active && (flags & O_CREAT) && fstatat(dirfd, path, &st, 0) != 0 && errno == ENOENT;
}

/* lmdb-js compares the boot id in a store's meta page with this one; a power failure changes it. */
static int is_boot_id(const char *path) {
  return boot_id_path[0] != 0 && strcmp(path, BOOT_ID_PATH) == 0;
}

static int open_boot_id(void) {
  int fd = REAL(open64)(boot_id_path, O_RDONLY | O_CLOEXEC);
  if (fd >= 0 && fd < FD_TABLE_SIZE) __atomic_store_n(&fd_flags[fd], FD_BOOT_ID, __ATOMIC_RELEASE);
  return fd;
}

static int open_common(int (*real)(int, const char *, int, ...), int dirfd, const char *path, int flags, mode_t mode) {
  if (!active) return real(dirfd, path, flags, mode);
  if (is_boot_id(path)) return open_boot_id();
  int create = will_create(dirfd, path, flags);
  return opened(real(dirfd, path, flags, mode), flags, create);
}

static mode_t mode_of(int flags, va_list ap) {
  return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char *path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  mode_t mode = mode_of(flags, ap);
  va_end(ap);
  RESOLVE(openat);
  return open_common(REAL(openat), AT_FDCWD, path, flags, mode);
}

int open64(const char *path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  mode_t mode = mode_of(flags, ap);
  va_end(ap);
  RESOLVE(openat64);
  return open_common(REAL(openat64), AT_FDCWD, path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  mode_t mode = mode_of(flags, ap);
  va_end(ap);
  RESOLVE(openat);
  return open_common(REAL(openat), dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  mode_t mode = mode_of(flags, ap);
  va_end(ap);
  RESOLVE(openat64);
  return open_common(REAL(openat64), dirfd, path, flags, mode);
}

/* The _FORTIFY_SOURCE entry points (two-argument open), which glibc does not route through open(). */
int __open_2(const char *path, int flags) { return open(path, flags); }
int __open64_2(const char *path, int flags) { return open64(path, flags); }
int __openat_2(int dirfd, const char *path, int flags) { return openat(dirfd, path, flags); }
int __openat64_2(int dirfd, const char *path, int flags) { return openat64(dirfd, path, flags); }
int creat(const char *path, mode_t mode) { return open(path, O_WRONLY | O_CREAT | O_TRUNC, mode); }
int creat64(const char *path, mode_t mode) { return open64(path, O_WRONLY | O_CREAT | O_TRUNC, mode); }

static int copy_fd(int from, int to) {
  if (to >= 0 && to < FD_TABLE_SIZE && from >= 0 && from < FD_TABLE_SIZE && from != to) {
    __atomic_store_n(&fd_inode[to], __atomic_load_n(&fd_inode[from], __ATOMIC_RELAXED), __ATOMIC_RELAXED);
    __atomic_store_n(&fd_flags[to], __atomic_load_n(&fd_flags[from], __ATOMIC_ACQUIRE), __ATOMIC_RELEASE);
  }
  return to;
}

int close(int fd) {
  RESOLVE(close);
  forget_fd(fd);
  return REAL(close)(fd);
}

int dup(int fd) {
  RESOLVE(dup);
  int r = REAL(dup)(fd);
  return r < 0 ? r : copy_fd(fd, r);
}

int dup2(int fd, int to) {
  RESOLVE(dup2);
  if (fd != to) forget_fd(to);
  int r = REAL(dup2)(fd, to);
  return r < 0 ? r : copy_fd(fd, r);
}

int dup3(int fd, int to, int flags) {
  RESOLVE(dup3);
  if (fd != to) forget_fd(to);
  int r = REAL(dup3)(fd, to, flags);
  return r < 0 ? r : copy_fd(fd, r);
}

/* ---------------------------------------------------------------- writes */

/*
 * `written` bytes from `iov` went to the file at `offset`: dirty until the file is synced, or durable at
 * once through an O_DSYNC descriptor or with RWF_DSYNC.
 */
static void wrote(int fd, const struct iovec *iov, int iovcnt, off_t offset, ssize_t written, int dsync) {
  char path[PATH_MAX];
  lock_all();
  int i = __atomic_load_n(&fd_inode[fd], __ATOMIC_RELAXED);
  if (dsync || (fd_flags[fd] & FD_DSYNC)) {
    if (fd_path(fd, path) < 0) snprintf(path, sizeof path, "fd %d", fd);
    durability_event("dsync-write", path);
    int dst = inode_image_fd(i);
    off_t at = offset;
    size_t left = (size_t)written;
    for (int k = 0; k < iovcnt && left > 0; k++) {
      size_t n = iov[k].iov_len < left ? iov[k].iov_len : left;
      if (write_all_at(dst, iov[k].iov_base, n, at) != 0) die("cannot write to the image for", path);
      at += (off_t)n, left -= n;
    }
  } else {
    dirty_add(i, offset, offset + written);
  }
  unlock_all();
}

/* write/writev use the file position: the bytes landed just below where it is now (O_APPEND too). */
static void wrote_at_position(int fd, const struct iovec *iov, int iovcnt, ssize_t written) {
  off_t end = lseek(fd, 0, SEEK_CUR);
  if (end >= written) wrote(fd, iov, iovcnt, end - written, written, 0);
}

ssize_t write(int fd, const void *buf, size_t len) {
  RESOLVE(write);
  ssize_t r = REAL(write)(fd, buf, len);
  if (r > 0 && tracked(fd)) wrote_at_position(fd, &(struct iovec){(void *)buf, len}, 1, r);
  return r;
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt) {
  RESOLVE(writev);
  ssize_t r = REAL(writev)(fd, iov, iovcnt);
  if (r > 0 && tracked(fd)) wrote_at_position(fd, iov, iovcnt, r);
  return r;
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t offset) {
  RESOLVE(pwrite);
  ssize_t r = REAL(pwrite)(fd, buf, len, offset);
  if (r > 0 && tracked(fd)) wrote(fd, &(struct iovec){(void *)buf, len}, 1, offset, r, 0);
  return r;
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off_t offset) {
  RESOLVE(pwrite64);
  ssize_t r = REAL(pwrite64)(fd, buf, len, offset);
  if (r > 0 && tracked(fd)) wrote(fd, &(struct iovec){(void *)buf, len}, 1, offset, r, 0);
  return r;
}

ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t offset) {
  RESOLVE(pwritev);
  ssize_t r = REAL(pwritev)(fd, iov, iovcnt, offset);
  if (r > 0 && tracked(fd)) wrote(fd, iov, iovcnt, offset, r, 0);
  return r;
}

ssize_t pwritev64(int fd, const struct iovec *iov, int iovcnt, off_t offset) {
  RESOLVE(pwritev64);
  ssize_t r = REAL(pwritev64)(fd, iov, iovcnt, offset);
  if (r > 0 && tracked(fd)) wrote(fd, iov, iovcnt, offset, r, 0);
  return r;
}

static ssize_t pwritev2_common(ssize_t (*real)(int, const struct iovec *, int, off_t, int), int fd, const struct iovec *iov, int iovcnt, off_t offset, int flags) {
  off_t before = offset == -1 && tracked(fd) ? lseek(fd, 0, SEEK_CUR) : offset;
  ssize_t r = real(fd, iov, iovcnt, offset, flags);
  if (r <= 0 || !tracked(fd)) return r;
  int dsync = (flags & (RWF_DSYNC | RWF_SYNC)) != 0;
  if (offset == -1 && (flags & RWF_APPEND) == 0) wrote(fd, iov, iovcnt, before, r, dsync);
  else if (offset == -1) wrote(fd, iov, iovcnt, lseek(fd, 0, SEEK_END) - r, r, dsync);
  else wrote(fd, iov, iovcnt, offset, r, dsync);
  return r;
}

ssize_t pwritev2(int fd, const struct iovec *iov, int iovcnt, off_t offset, int flags) {
  RESOLVE(pwritev2);
  return pwritev2_common(REAL(pwritev2), fd, iov, iovcnt, offset, flags);
}

ssize_t pwritev64v2(int fd, const struct iovec *iov, int iovcnt, off_t offset, int flags) {
  RESOLVE(pwritev64v2);
  return pwritev2_common(REAL(pwritev64v2), fd, iov, iovcnt, offset, flags);
}

/* A size change is dirty from the lower of the old and new size on: the image takes the size at the next sync. */
static void resized(int fd, off_t old_size, off_t new_size) {
  lock_all();
  dirty_add(__atomic_load_n(&fd_inode[fd], __ATOMIC_RELAXED), old_size < new_size ? old_size : new_size, OFF_END);
  unlock_all();
}

static int ftruncate_common(int (*real)(int, off_t), int fd, off_t length) {
  struct stat st;
  int watched = tracked(fd) && fstat(fd, &st) == 0;
  int r = real(fd, length);
  if (r == 0 && watched) resized(fd, st.st_size, length);
  return r;
}

int ftruncate(int fd, off_t length) { RESOLVE(ftruncate); return ftruncate_common(REAL(ftruncate), fd, length); }
int ftruncate64(int fd, off_t length) { RESOLVE(ftruncate64); return ftruncate_common(REAL(ftruncate64), fd, length); }

static int truncate_common(int (*real)(const char *, off_t), const char *path, off_t length) {
  if (!active) return real(path, length);
  int fd = REAL(open64)(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return real(path, length); /* let the real call report the error */
  opened(fd, 0, 0);
  int r = ftruncate_common(REAL(ftruncate64), fd, length);
  close(fd);
  return r;
}

int truncate(const char *path, off_t length) { RESOLVE(truncate); return truncate_common(REAL(truncate), path, length); }
int truncate64(const char *path, off_t length) { RESOLVE(truncate64); return truncate_common(REAL(truncate64), path, length); }

static int fallocate_common(int (*real)(int, int, off_t, off_t), int fd, int mode, off_t offset, off_t len) {
  int r = real(fd, mode, offset, len);
  if (r == 0 && tracked(fd)) {
    lock_all();
    dirty_add(__atomic_load_n(&fd_inode[fd], __ATOMIC_RELAXED), offset, offset + len);
    unlock_all();
  }
  return r;
}

int fallocate(int fd, int mode, off_t offset, off_t len) { RESOLVE(fallocate); return fallocate_common(REAL(fallocate), fd, mode, offset, len); }
int fallocate64(int fd, int mode, off_t offset, off_t len) { RESOLVE(fallocate64); return fallocate_common(REAL(fallocate64), fd, mode, offset, len); }

/* ---------------------------------------------------------------- syncs */

static void synced(int fd, const char *kind) {
  char path[PATH_MAX];
  if (fd_path(fd, path) < 0) snprintf(path, sizeof path, "fd %d", fd);
  int is_dir = fd_flags[fd] & FD_DIR;
  lock_all();
  durability_event(is_dir ? "fsync-dir" : kind, path);
  if (is_dir) sync_dir(fd);
  else sync_file(fd, __atomic_load_n(&fd_inode[fd], __ATOMIC_RELAXED));
  unlock_all();
}

int fsync(int fd) {
  RESOLVE(fsync);
  int r = REAL(fsync)(fd);
  if (r == 0 && tracked(fd)) synced(fd, "fsync");
  return r;
}

/* fdatasync also writes the size when the data needs it; the image keeps it too. */
int fdatasync(int fd) {
  RESOLVE(fdatasync);
  int r = REAL(fdatasync)(fd);
  if (r == 0 && tracked(fd)) synced(fd, "fdatasync");
  return r;
}

/* sync and syncfs write everything back: the whole watched tree becomes the image. */
static void sync_everything(void) {
  int root = REAL(open64)(watch_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) return;
  lock_all();
  durability_event("sync", watch_dir);
  snapshot_tree(root);
  unlock_all();
  REAL(close)(root);
}

void sync(void) {
  RESOLVE(sync);
  REAL(sync)();
  if (active) sync_everything();
}

int syncfs(int fd) {
  RESOLVE(syncfs);
  int r = REAL(syncfs)(fd);
  if (r == 0 && active) sync_everything();
  return r;
}

/* ---------------------------------------------------------------- shared mappings */

static void *mmap_common(void *(*real)(void *, size_t, int, int, int, off_t), void *addr, size_t len, int prot, int flags, int fd, off_t offset) {
  void *p = real(addr, len, prot, flags, fd, offset);
  if (p == MAP_FAILED || !(prot & PROT_WRITE) || !(flags & MAP_SHARED) || !tracked(fd)) return p;
  lock_all();
  if (mapping_count == MAPPINGS_MAX) {
    errno = ENOMEM;
    unlock_all();
    die("too many writable shared mappings of watched files, at", "mmap");
  }
  mappings[mapping_count] = (mapping_t){p, len, __atomic_load_n(&fd_inode[fd], __ATOMIC_RELAXED), offset};
  __atomic_store_n(&mapping_count, mapping_count + 1, __ATOMIC_RELEASE);
  unlock_all();
  return p;
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t offset) {
  RESOLVE(mmap);
  return mmap_common(REAL(mmap), addr, len, prot, flags, fd, offset);
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t offset) {
  RESOLVE(mmap64);
  return mmap_common(REAL(mmap64), addr, len, prot, flags, fd, offset);
}

static int overlaps(const mapping_t *m, const char *addr, size_t len) {
  return addr < m->addr + m->len && m->addr < addr + len;
}

/* An unmapped region's unsynced writes stay in the page cache: the file's next sync copies all of it. */
int munmap(void *addr, size_t len) {
  RESOLVE(munmap);
  if (__atomic_load_n(&mapping_count, __ATOMIC_ACQUIRE) > 0) {
    lock_all();
    for (int j = 0; j < mapping_count;) {
      if (overlaps(&mappings[j], addr, len)) {
        inodes[mappings[j].inode].whole = 1;
        mappings[j] = mappings[--mapping_count];
      } else {
        j++;
      }
    }
    unlock_all();
  }
  return REAL(munmap)(addr, len);
}

/* msync(MS_SYNC) makes the mapped bytes in the range durable; MS_ASYNC only schedules the write-back. */
int msync(void *addr, size_t len, int flags) {
  RESOLVE(msync);
  int r = REAL(msync)(addr, len, flags);
  if (r != 0 || !(flags & MS_SYNC) || __atomic_load_n(&mapping_count, __ATOMIC_ACQUIRE) == 0) return r;
  lock_all();
  for (int j = 0; j < mapping_count; j++) {
    mapping_t *m = &mappings[j];
    if (!overlaps(m, addr, len)) continue;
    char *from = (char *)addr > m->addr ? (char *)addr : m->addr;
    char *to = (char *)addr + len < m->addr + m->len ? (char *)addr + len : m->addr + m->len;
    durability_event("msync", inode_id(m->inode));
    if (write_all_at(inode_image_fd(m->inode), from, (size_t)(to - from), m->offset + (from - m->addr)) != 0) die("cannot write to the image at", "msync");
  }
  unlock_all();
  return r;
}

/* ---------------------------------------------------------------- directory entries */

/* A new directory gets a fresh id; in metadata mode its entry in the parent is durable at once. */
static int made_dir(int r, int dirfd, const char *path) {
  struct stat st;
  char where[PATH_MAX];
  if (r != 0 || !active) return r;
  int fd = REAL(openat64)(dirfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return r;
  if (fd_path(fd, where) >= 0 && under_watch(where) && fstat(fd, &st) == 0) {
    lock_all();
    inode_created(inode_find(st.st_dev, st.st_ino));
    unlock_all();
    if (metadata_mode) sync_parents_now("mkdir", dirfd, path, AT_FDCWD, NULL);
  }
  REAL(close)(fd);
  return r;
}

int mkdir(const char *path, mode_t mode) { RESOLVE(mkdir); return made_dir(REAL(mkdir)(path, mode), AT_FDCWD, path); }
int mkdirat(int dirfd, const char *path, mode_t mode) { RESOLVE(mkdirat); return made_dir(REAL(mkdirat)(dirfd, path, mode), dirfd, path); }

/* Strict mode: entry changes wait for a directory fsync. Metadata mode: they reach the image now. */
static int entry_changed(int r, const char *kind, int dirfd, const char *path) {
  if (r == 0 && active && metadata_mode) sync_parents_now(kind, dirfd, path, AT_FDCWD, NULL);
  return r;
}

static int renamed(int r, int olddirfd, const char *oldpath, int newdirfd, const char *newpath) {
  if (r == 0 && active && metadata_mode) sync_parents_now("rename", newdirfd, newpath, olddirfd, oldpath);
  return r;
}

int rename(const char *from, const char *to) { RESOLVE(rename); return renamed(REAL(rename)(from, to), AT_FDCWD, from, AT_FDCWD, to); }
int renameat(int fromdir, const char *from, int todir, const char *to) { RESOLVE(renameat); return renamed(REAL(renameat)(fromdir, from, todir, to), fromdir, from, todir, to); }
int renameat2(int fromdir, const char *from, int todir, const char *to, unsigned int flags) {
  RESOLVE(renameat2);
  return renamed(REAL(renameat2)(fromdir, from, todir, to, flags), fromdir, from, todir, to);
}
int unlink(const char *path) { RESOLVE(unlink); return entry_changed(REAL(unlink)(path), "unlink", AT_FDCWD, path); }
int unlinkat(int dirfd, const char *path, int flags) { RESOLVE(unlinkat); return entry_changed(REAL(unlinkat)(dirfd, path, flags), "unlink", dirfd, path); }
int rmdir(const char *path) { RESOLVE(rmdir); return entry_changed(REAL(rmdir)(path), "rmdir", AT_FDCWD, path); }
int link(const char *from, const char *to) { RESOLVE(link); return entry_changed(REAL(link)(from, to), "link", AT_FDCWD, to); }
int linkat(int fromdir, const char *from, int todir, const char *to, int flags) { RESOLVE(linkat); return entry_changed(REAL(linkat)(fromdir, from, todir, to, flags), "link", todir, to); }
int symlink(const char *target, const char *path) { RESOLVE(symlink); return entry_changed(REAL(symlink)(target, path), "symlink", AT_FDCWD, path); }
int symlinkat(const char *target, int dirfd, const char *path) { RESOLVE(symlinkat); return entry_changed(REAL(symlinkat)(target, dirfd, path), "symlink", dirfd, path); }

/* ---------------------------------------------------------------- the boot id's file system */

/* lmdb-js reads the boot id only from procfs (it checks with fstatfs); the served file claims to be there. */
int fstatfs(int fd, struct statfs *buf) {
  RESOLVE(fstatfs);
  if (fd >= 0 && fd < FD_TABLE_SIZE && (__atomic_load_n(&fd_flags[fd], __ATOMIC_ACQUIRE) & FD_BOOT_ID)) return statfs("/proc", buf);
  return REAL(fstatfs)(fd, buf);
}

int fstatfs64(int fd, struct statfs64 *buf) {
  RESOLVE(fstatfs64);
  if (fd >= 0 && fd < FD_TABLE_SIZE && (__atomic_load_n(&fd_flags[fd], __ATOMIC_ACQUIRE) & FD_BOOT_ID)) return statfs64("/proc", buf);
  return REAL(fstatfs64)(fd, buf);
}
