#include "errors.h"

#include <bpf/libbpf.h>

#include <cstring>

namespace {

// libbpf has errnos of its own (LIBBPF_ERRNO__*), e.g. for a malformed ELF.
bool IsLibbpfErrno(int err) { return err >= __LIBBPF_ERRNO__START; }

std::string ErrnoCode(int err) {
  if (err == kEnotsupp) return "ENOTSUPP";
  if (IsLibbpfErrno(err)) return "LIBBPF_ERRNO_" + std::to_string(err);
  const char* name = strerrorname_np(err);
  return name ? std::string(name) : std::string("E").append(std::to_string(err));
}

std::string ErrnoText(int err) {
  if (err == kEnotsupp) return "Operation not supported";
  if (IsLibbpfErrno(err)) {
    char text[128];
    libbpf_strerror(err, text, sizeof(text));
    return text;
  }
  const char* text = strerrordesc_np(err);
  return text ? text : "Unknown error " + std::to_string(err);
}

}  // namespace

Napi::Error ErrnoError(Napi::Env env, int err, const std::string& op, const std::string& object,
                       const std::string& detail) {
  return CodedError(env, err, ErrnoCode(err), detail.empty() ? ErrnoText(err) : ErrnoText(err) + "\n" + detail, op, object);
}

Napi::Error CodedError(Napi::Env env, int err, const std::string& code, const std::string& text, const std::string& op,
                       const std::string& object) {
  Napi::Error error = Napi::Error::New(env, op + " " + object + ": " + text);
  error.Set("errno", Napi::Number::New(env, err));
  error.Set("code", Napi::String::New(env, code));
  return error;
}

void ThrowErrno(Napi::Env env, int err, const std::string& op, const std::string& object,
                const std::string& detail) {
  throw ErrnoError(env, err, op, object, detail);
}
