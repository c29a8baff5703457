#include "libbpf_log.h"

#include <bpf/libbpf.h>

#include <cstdarg>
#include <cstdio>

namespace libbpf_log {

namespace {

constexpr size_t kTailBytes = 8 * 1024;

// libbpf prints synchronously on the calling thread, so each JS thread
// (main or worker) sees only its own calls' output.
thread_local std::string captured;

int Capture(enum libbpf_print_level level, const char* format, va_list ap) {
  if (level == LIBBPF_DEBUG) return 0;
  va_list copy;
  va_copy(copy, ap);
  int n = vsnprintf(nullptr, 0, format, copy);
  va_end(copy);
  if (n <= 0) return n;
  size_t end = captured.size();
  captured.resize(end + n + 1);  // room for vsnprintf's terminating NUL
  vsnprintf(captured.data() + end, n + 1, format, ap);
  captured.resize(end + n);
  // Trim now and then rather than on every message.
  if (captured.size() > 4 * kTailBytes) captured.erase(0, captured.size() - kTailBytes);
  return n;
}

}  // namespace

void Install() { libbpf_set_print(Capture); }

void Clear() { captured.clear(); }

std::string Tail() {
  size_t end = captured.find_last_not_of('\n') + 1;  // npos + 1 == 0
  size_t start = end > kTailBytes ? end - kTailBytes : 0;
  return (start > 0 ? "..." : "") + captured.substr(start, end - start);
}

}  // namespace libbpf_log
