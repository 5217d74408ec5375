/*
 * execgate_native — the few Linux calls Node does not expose.
 *
 *   peerCred(fd)            getsockopt(SO_PEERCRED) on a connected AF_UNIX stream socket
 *   peerPidfd(fd)           getsockopt(SO_PEERPIDFD) (Linux >= 6.5), or null when unsupported
 *   pidfdIsAlive(pidfd)     poll(2) the pidfd: readable means the process has exited
 *   closeFd(fd)             close(2), for descriptors this module handed out
 *   lockExclusive(fd)       flock(fd, LOCK_EX | LOCK_NB): true if taken, false if another holds it
 *   sdNotify(path, msg)     one AF_UNIX datagram to $NOTIFY_SOCKET (sd_notify(3) protocol)
 *
 * Every failure is a thrown Error whose `code` is the errno name ("EBADF", …) and whose
 * `errno` is the number; the TypeScript wrapper (src/native/index.ts) maps these into
 * ExecgateError. Plain N-API only, so the binary does not depend on a V8 version.
 */
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* socket(7): SO_PEERPIDFD appeared in Linux 6.5; older headers lack the constant. */
#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

/* Keep a message that cannot possibly be a notification from turning into a huge malloc. */
#define SD_NOTIFY_MAX_MESSAGE (64 * 1024)

/* --- errors ------------------------------------------------------------------------------ */

static void throw_errno(napi_env env, const char *what, int err) {
  const char *name = strerrorname_np(err);
  char code[32];
  if (name == NULL) {
    snprintf(code, sizeof code, "E%d", err);
    name = code;
  }
  char message[256];
  snprintf(message, sizeof message, "%s: %s", what, strerror(err));

  napi_value js_code, js_message, js_error, js_errno, js_syscall;
  if (napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &js_code) != napi_ok ||
      napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &js_message) != napi_ok ||
      napi_create_error(env, js_code, js_message, &js_error) != napi_ok) {
    napi_throw_error(env, name, message);
    return;
  }
  if (napi_create_int32(env, err, &js_errno) == napi_ok) {
    napi_set_named_property(env, js_error, "errno", js_errno);
  }
  if (napi_create_string_utf8(env, what, NAPI_AUTO_LENGTH, &js_syscall) == napi_ok) {
    napi_set_named_property(env, js_error, "syscall", js_syscall);
  }
  napi_throw(env, js_error);
}

static void throw_type(napi_env env, const char *message) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
}

/* --- argument helpers -------------------------------------------------------------------- */

/* Reads argument `index` as a non-negative int32 file descriptor; throws and returns 0 if not. */
static int get_fd_arg(napi_env env, napi_callback_info info, size_t want, size_t index, napi_value *argv,
                      int *fd) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    throw_type(env, "cannot read arguments");
    return 0;
  }
  if (argc < want) {
    throw_type(env, "missing argument");
    return 0;
  }
  napi_valuetype type;
  if (napi_typeof(env, argv[index], &type) != napi_ok || type != napi_number) {
    throw_type(env, "file descriptor must be a number");
    return 0;
  }
  double d;
  /* range first: converting an out-of-range double to int is undefined behaviour */
  if (napi_get_value_double(env, argv[index], &d) != napi_ok || !(d >= 0 && d <= INT_MAX) || d != (double)(int)d) {
    throw_type(env, "file descriptor must be a non-negative integer");
    return 0;
  }
  *fd = (int)d;
  return 1;
}

/* Copies a JS string argument into a fresh NUL-terminated buffer; the caller frees it. */
static char *get_string_arg(napi_env env, napi_value value, size_t max, size_t *out_len, const char *what) {
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_string) {
    throw_type(env, what);
    return NULL;
  }
  size_t len = 0;
  if (napi_get_value_string_utf8(env, value, NULL, 0, &len) != napi_ok) {
    throw_type(env, what);
    return NULL;
  }
  if (len > max) {
    throw_errno(env, what, EMSGSIZE);
    return NULL;
  }
  char *buf = malloc(len + 1);
  if (buf == NULL) {
    throw_errno(env, "malloc", ENOMEM);
    return NULL;
  }
  size_t copied = 0;
  if (napi_get_value_string_utf8(env, value, buf, len + 1, &copied) != napi_ok || copied != len) {
    free(buf);
    throw_type(env, what);
    return NULL;
  }
  *out_len = len;
  return buf;
}

/*
 * SO_PEERCRED on anything but a connected AF_UNIX socket does not fail: the kernel reports
 * pid 0 and the overflow uid (65534), which would look like a real caller. So the socket's
 * domain and type are checked first.
 */
static int require_unix_stream(napi_env env, int fd) {
  int domain = 0, type = 0;
  socklen_t len = sizeof domain;
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0) {
    throw_errno(env, "getsockopt(SO_DOMAIN)", errno);
    return 0;
  }
  len = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) {
    throw_errno(env, "getsockopt(SO_TYPE)", errno);
    return 0;
  }
  if (domain != AF_UNIX) {
    throw_errno(env, "peer credentials need an AF_UNIX socket", EAFNOSUPPORT);
    return 0;
  }
  if (type != SOCK_STREAM && type != SOCK_SEQPACKET) {
    throw_errno(env, "peer credentials need a connection-oriented socket", EPROTOTYPE);
    return 0;
  }
  return 1;
}

static int set_int_property(napi_env env, napi_value obj, const char *name, double v) {
  napi_value js;
  if (napi_create_double(env, v, &js) != napi_ok) return 0;
  return napi_set_named_property(env, obj, name, js) == napi_ok;
}

/* --- peerCred(fd) -> { pid, uid, gid } ------------------------------------------------------ */

static napi_value peer_cred(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int fd;
  if (!get_fd_arg(env, info, 1, 0, argv, &fd)) return NULL;
  if (!require_unix_stream(env, fd)) return NULL;

  struct ucred cred;
  socklen_t len = sizeof cred;
  memset(&cred, 0, sizeof cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    throw_errno(env, "getsockopt(SO_PEERCRED)", errno);
    return NULL;
  }
  if (len != sizeof cred) {
    throw_errno(env, "getsockopt(SO_PEERCRED): short answer", EPROTO);
    return NULL;
  }

  napi_value out;
  if (napi_create_object(env, &out) != napi_ok || !set_int_property(env, out, "pid", (double)cred.pid) ||
      !set_int_property(env, out, "uid", (double)cred.uid) ||
      !set_int_property(env, out, "gid", (double)cred.gid)) {
    throw_errno(env, "peerCred: building the result", ENOMEM);
    return NULL;
  }
  return out;
}

/* --- peerPidfd(fd) -> number | null ------------------------------------------------------- */

static napi_value peer_pidfd(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int fd;
  if (!get_fd_arg(env, info, 1, 0, argv, &fd)) return NULL;
  if (!require_unix_stream(env, fd)) return NULL;

  int pidfd = -1;
  socklen_t len = sizeof pidfd;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) != 0) {
    int err = errno;
    if (err == ENOPROTOOPT) {
      /*
       * Kernel older than 6.5: no pidfd. EINVAL/ESRCH are not "unsupported": a kernel that has
       * the option returns them when the peer is already reaped, and falling back to the weaker
       * start-time check then would be wrong; they are thrown, and the caller fails closed
       * (peer_exited).
       */
      napi_value null_value;
      napi_get_null(env, &null_value);
      return null_value;
    }
    throw_errno(env, "getsockopt(SO_PEERPIDFD)", err);
    return NULL;
  }
  if (len != sizeof pidfd || pidfd < 0) {
    if (pidfd >= 0) close(pidfd);
    throw_errno(env, "getsockopt(SO_PEERPIDFD): bad answer", EPROTO);
    return NULL;
  }
  napi_value out;
  if (napi_create_int32(env, pidfd, &out) != napi_ok) {
    close(pidfd);
    throw_errno(env, "peerPidfd: building the result", ENOMEM);
    return NULL;
  }
  return out;
}

/* --- pidfdIsAlive(pidfd) -> boolean ---------------------------------------------------------- */

/*
 * pidfd_open(2): a pidfd becomes readable when the process it refers to has terminated. A
 * zero-timeout poll therefore answers "has it exited?" without needing permission to signal
 * the process (pidfd_send_signal(…, 0) would fail with EPERM across users).
 */
static napi_value pidfd_is_alive(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int pidfd;
  if (!get_fd_arg(env, info, 1, 0, argv, &pidfd)) return NULL;

  struct pollfd p = {.fd = pidfd, .events = POLLIN, .revents = 0};
  int rc;
  do {
    rc = poll(&p, 1, 0);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    throw_errno(env, "poll(pidfd)", errno);
    return NULL;
  }
  if (p.revents & POLLNVAL) {
    throw_errno(env, "poll(pidfd)", EBADF);
    return NULL;
  }
  bool alive = rc == 0 || (p.revents & (POLLIN | POLLHUP | POLLERR)) == 0;
  napi_value out;
  napi_get_boolean(env, alive, &out);
  return out;
}

/* --- closeFd(fd) ------------------------------------------------------------------------------ */

static napi_value close_fd(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int fd;
  if (!get_fd_arg(env, info, 1, 0, argv, &fd)) return NULL;
  /* close(2): on Linux the descriptor is released even when close reports EINTR; never retry. */
  if (close(fd) != 0 && errno != EINTR) {
    throw_errno(env, "close", errno);
    return NULL;
  }
  napi_value undefined;
  napi_get_undefined(env, &undefined);
  return undefined;
}

/* --- lockExclusive(fd) -> boolean ------------------------------------------------------------ */

/*
 * flock(2), exclusive and non-blocking: the kernel releases it when the last descriptor of that
 * open file description closes, however its process ends (crash, SIGKILL, container stopped).
 */
static napi_value lock_exclusive(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int fd;
  if (!get_fd_arg(env, info, 1, 0, argv, &fd)) return NULL;
  int rc;
  do {
    rc = flock(fd, LOCK_EX | LOCK_NB);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0 && errno != EWOULDBLOCK) {
    throw_errno(env, "flock", errno);
    return NULL;
  }
  napi_value out;
  napi_get_boolean(env, rc == 0, &out);
  return out;
}

/* --- sdNotify(path, message) -> boolean ----------------------------------------------------- */

/*
 * sd_notify(3): one datagram on an AF_UNIX SOCK_DGRAM socket to $NOTIFY_SOCKET, which is
 * either a filesystem path or, when it starts with '@', an abstract-namespace name (the '@'
 * stands for the leading NUL byte and the address length excludes any trailing NUL).
 */
static napi_value sd_notify(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2) {
    throw_type(env, "sdNotify(socketPath, message)");
    return NULL;
  }
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;

  size_t path_len = 0;
  char *path = get_string_arg(env, argv[0], sizeof addr.sun_path, &path_len, "socket path must be a string");
  if (path == NULL) return NULL;
  size_t msg_len = 0;
  char *msg = get_string_arg(env, argv[1], SD_NOTIFY_MAX_MESSAGE, &msg_len, "message must be a string");
  if (msg == NULL) {
    free(path);
    return NULL;
  }

  socklen_t addr_len = 0;
  int bad = 0;
  if (path_len >= 2 && path[0] == '@') {
    /* abstract: sun_path = "\0name", no terminator counted */
    if (path_len > sizeof addr.sun_path) bad = ENAMETOOLONG;
    else {
      memcpy(addr.sun_path + 1, path + 1, path_len - 1);
      addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + path_len);
    }
  } else if (path_len >= 2 && path[0] == '/') {
    if (path_len >= sizeof addr.sun_path) bad = ENAMETOOLONG;
    else if (memchr(path, '\0', path_len) != NULL) bad = EINVAL;
    else {
      memcpy(addr.sun_path, path, path_len);
      addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + path_len + 1);
    }
  } else {
    bad = EAFNOSUPPORT; /* relative paths, vsock: and anything else are not handled */
  }
  free(path);
  if (bad != 0) {
    free(msg);
    throw_errno(env, "sdNotify: NOTIFY_SOCKET address", bad);
    return NULL;
  }

  int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) {
    int err = errno;
    free(msg);
    throw_errno(env, "socket(AF_UNIX, SOCK_DGRAM)", err);
    return NULL;
  }
  ssize_t sent;
  do {
    sent = sendto(s, msg, msg_len, MSG_NOSIGNAL, (const struct sockaddr *)&addr, addr_len);
  } while (sent < 0 && errno == EINTR);
  int err = errno;
  close(s);
  free(msg);
  if (sent < 0) {
    throw_errno(env, "sendto(NOTIFY_SOCKET)", err);
    return NULL;
  }
  if ((size_t)sent != msg_len) {
    throw_errno(env, "sendto(NOTIFY_SOCKET): short datagram", EMSGSIZE);
    return NULL;
  }
  napi_value out;
  napi_get_boolean(env, true, &out);
  return out;
}

/* --- module ------------------------------------------------------------------------------------ */

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"peerCred", NULL, peer_cred, NULL, NULL, NULL, napi_enumerable, NULL},
      {"peerPidfd", NULL, peer_pidfd, NULL, NULL, NULL, napi_enumerable, NULL},
      {"pidfdIsAlive", NULL, pidfd_is_alive, NULL, NULL, NULL, napi_enumerable, NULL},
      {"closeFd", NULL, close_fd, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sdNotify", NULL, sd_notify, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lockExclusive", NULL, lock_exclusive, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
