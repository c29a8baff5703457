// libbpf explains why an open, load or pin failed (the verifier log
// included) only through its print callback. We keep what it printed since
// the last Clear() so the error thrown to JS can carry it.
#pragma once

#include <string>

namespace libbpf_log {

// Routes libbpf's warnings and info messages here; call once at module init.
void Install();
void Clear();
// The last ~8 KB printed since Clear(): the verifier's verdict is at the end.
std::string Tail();

}  // namespace libbpf_log
