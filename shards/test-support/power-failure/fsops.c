/*
 * fsops.c: runs file operations given as arguments, one libc call each, so the emulator's own tests
 * (power-failure-shim.test.ts) say exactly what reached the file system before the power failure.
 *
 *   write PATH TEXT          open(O_WRONLY|O_CREAT|O_TRUNC), write, close: no sync
 *   append PATH TEXT         open(O_WRONLY|O_APPEND), write, close
 *   pwrite PATH OFFSET TEXT  open(O_WRONLY|O_CREAT), pwrite, close
 *   writev PATH TEXT TEXT    open(O_WRONLY|O_CREAT|O_TRUNC), writev of the two, close
 *   dsync PATH OFFSET TEXT   open(O_WRONLY|O_CREAT|O_DSYNC), pwrite, close: durable at once
 *   truncate PATH LENGTH     open(O_WRONLY), ftruncate, close
 *   fsync PATH               open(O_RDONLY), fsync, close (a file or a directory)
 *   fdatasync PATH           open(O_RDONLY), fdatasync, close
 *   mmap PATH OFFSET TEXT    open(O_RDWR), mmap(MAP_SHARED) of the whole file, copy TEXT in, munmap
 *   msync PATH OFFSET TEXT   the same with msync(MS_SYNC) before munmap
 *   rename FROM TO | link FROM TO | unlink PATH | mkdir PATH | rmdir PATH | symlink TARGET PATH
 *   crash                    SIGKILL itself (the harness then restores the image)
 *
 * Exits 1 with the failing step on stderr.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

static void check(int ok, const char *op, const char *path) {
  if (ok) return;
  perror(path);
  fprintf(stderr, "fsops: %s failed\n", op);
  exit(1);
}

static int open_or_fail(const char *path, int flags) {
  int fd = open(path, flags, 0644);
  check(fd >= 0, "open", path);
  return fd;
}

static void write_text(int fd, const char *text, const char *path) {
  check(write(fd, text, strlen(text)) == (ssize_t)strlen(text), "write", path);
}

static void map_and_copy(const char *path, long offset, const char *text, int sync) {
  int fd = open_or_fail(path, O_RDWR);
  struct stat st;
  check(fstat(fd, &st) == 0 && offset + (long)strlen(text) <= st.st_size, "mmap (the text must fit in the file)", path);
  char *p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  check(p != MAP_FAILED, "mmap", path);
  memcpy(p + offset, text, strlen(text));
  if (sync) check(msync(p, (size_t)st.st_size, MS_SYNC) == 0, "msync", path);
  check(munmap(p, (size_t)st.st_size) == 0, "munmap", path);
  close(fd);
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc;) {
    const char *op = argv[i++];
    int need = strcmp(op, "crash") == 0 ? 0
      : strcmp(op, "fsync") == 0 || strcmp(op, "fdatasync") == 0 || strcmp(op, "unlink") == 0 || strcmp(op, "mkdir") == 0 || strcmp(op, "rmdir") == 0 ? 1
      : strcmp(op, "pwrite") == 0 || strcmp(op, "dsync") == 0 || strcmp(op, "mmap") == 0 || strcmp(op, "msync") == 0 || strcmp(op, "writev") == 0 ? 3
      : 2;
    check(i + need <= argc, "argument count of", op);
    const char *a = need > 0 ? argv[i] : NULL, *b = need > 1 ? argv[i + 1] : NULL, *c = need > 2 ? argv[i + 2] : NULL;
    i += need;
    if (strcmp(op, "write") == 0) {
      int fd = open_or_fail(a, O_WRONLY | O_CREAT | O_TRUNC);
      write_text(fd, b, a);
      close(fd);
    } else if (strcmp(op, "append") == 0) {
      int fd = open_or_fail(a, O_WRONLY | O_APPEND);
      write_text(fd, b, a);
      close(fd);
    } else if (strcmp(op, "pwrite") == 0 || strcmp(op, "dsync") == 0) {
      int fd = open_or_fail(a, O_WRONLY | O_CREAT | (strcmp(op, "dsync") == 0 ? O_DSYNC : 0));
      check(pwrite(fd, c, strlen(c), atol(b)) == (ssize_t)strlen(c), op, a);
      close(fd);
    } else if (strcmp(op, "writev") == 0) {
      int fd = open_or_fail(a, O_WRONLY | O_CREAT | O_TRUNC);
      struct iovec iov[2] = {{(void *)b, strlen(b)}, {(void *)c, strlen(c)}};
      check(writev(fd, iov, 2) == (ssize_t)(strlen(b) + strlen(c)), "writev", a);
      close(fd);
    } else if (strcmp(op, "truncate") == 0) {
      int fd = open_or_fail(a, O_WRONLY);
      check(ftruncate(fd, atol(b)) == 0, "ftruncate", a);
      close(fd);
    } else if (strcmp(op, "fsync") == 0 || strcmp(op, "fdatasync") == 0) {
      int fd = open_or_fail(a, O_RDONLY);
      check((strcmp(op, "fsync") == 0 ? fsync(fd) : fdatasync(fd)) == 0, op, a);
      close(fd);
    } else if (strcmp(op, "mmap") == 0 || strcmp(op, "msync") == 0) {
      map_and_copy(a, atol(b), c, strcmp(op, "msync") == 0);
    } else if (strcmp(op, "rename") == 0) {
      check(rename(a, b) == 0, op, a);
    } else if (strcmp(op, "link") == 0) {
      check(link(a, b) == 0, op, a);
    } else if (strcmp(op, "symlink") == 0) {
      check(symlink(a, b) == 0, op, b);
    } else if (strcmp(op, "unlink") == 0) {
      check(unlink(a) == 0, op, a);
    } else if (strcmp(op, "mkdir") == 0) {
      check(mkdir(a, 0755) == 0, op, a);
    } else if (strcmp(op, "rmdir") == 0) {
      check(rmdir(a) == 0, op, a);
    } else if (strcmp(op, "crash") == 0) {
      kill(getpid(), SIGKILL);
      pause();
    } else {
      check(0, "unknown operation", op);
    }
  }
  return 0;
}
