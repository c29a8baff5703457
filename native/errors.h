// Failed syscalls and libbpf calls become JS errors whose message is
// `<operation> <object>: <errno text>`, with `errno` and `code` set, so
// callers can both log them and branch on them.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>

// Kernel-internal (absent from libc), yet batch map operations return it.
constexpr int kEnotsupp = 524;

Napi::Error ErrnoError(Napi::Env env, int err, const std::string& op, const std::string& object,
                       const std::string& detail = "");

// The same for an error number a protocol defines beyond errno's (ipset's
// from 4096), with the code and text the caller gives it.
Napi::Error CodedError(Napi::Env env, int err, const std::string& code, const std::string& text, const std::string& op,
                       const std::string& object);

[[noreturn]] void ThrowErrno(Napi::Env env, int err, const std::string& op, const std::string& object,
                             const std::string& detail = "");

// "map fd 12", "ifindex 7": how messages name objects known by a number.
inline std::string Numbered(const char* kind, int64_t n) {
  return std::string(kind) + " " + std::to_string(n);
}

// libbpf 1.x and its bpf.h wrappers return -errno on failure.
inline int Check(Napi::Env env, int ret, const std::string& op, const std::string& object) {
  if (ret < 0) ThrowErrno(env, -ret, op, object);
  return ret;
}
