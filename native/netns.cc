// The identity of the calling process's network namespace, which the
// kernel never reuses while it runs: kube-lb records it beside the
// interfaces it attaches to, whose ifindexes mean nothing elsewhere.
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

#include "errors.h"
#include "exports.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

namespace {

Napi::Value NetnsCookie(const Napi::CallbackInfo& info) {
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) ThrowErrno(info.Env(), errno, "socket", "AF_UNIX");
  uint64_t cookie = 0;
  socklen_t len = sizeof(cookie);
  int ret = getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len);
  int err = errno;
  close(fd);
  if (ret != 0) ThrowErrno(info.Env(), err, "getsockopt SO_NETNS_COOKIE", "the network namespace");
  return Napi::BigInt::New(info.Env(), cookie);
}

}  // namespace

void ExportNetns(Napi::Env env, Napi::Object exports) { Export(env, exports, "netnsCookie", NetnsCookie); }
