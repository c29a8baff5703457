// libbpf's option structs start with their own size (for ABI
// compatibility); LIBBPF_OPTS() does this in C, this does it in C++.
#pragma once

template <typename T>
T Opts() {
  T opts{};
  opts.sz = sizeof(T);
  return opts;
}
