// Argument checks shared by every exported function. Each failure throws an
// ArgumentError naming the function, the parameter and what was expected,
// which reaches JS as a TypeError (Export).
#pragma once

#include <napi.h>

#include <climits>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

// A malformed argument. It carries no JS environment, so a batch can be
// read on a worker thread; at the addon's boundary it becomes a TypeError.
class ArgumentError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Args {
 public:
  Args(const Napi::CallbackInfo& info, const char* fn);

  Napi::Env Env() const { return env_; }

  uint32_t Uint32(size_t i, const char* name, uint32_t min = 0, uint32_t max = UINT32_MAX) const;
  // File descriptors, ifindexes and other values the C API takes as int.
  int Int(size_t i, const char* name) const { return static_cast<int>(Uint32(i, name, 0, INT_MAX)); }
  uint32_t OptionalUint32(size_t i, const char* name, uint32_t fallback) const;
  std::string String(size_t i, const char* name) const;
  std::vector<std::string> Strings(size_t i, const char* name) const;
  Napi::Buffer<uint8_t> Buffer(size_t i, const char* name) const;

  [[noreturn]] void Fail(const char* name, const std::string& expected) const;

 private:
  // The i-th argument; undefined past the last, as in a call.
  Napi::Value At(size_t i) const { return i < values_.size() ? values_[i] : env_.Undefined(); }

  Napi::Env env_;
  std::vector<Napi::Value> values_;
  const char* fn_;
};

// The fields of one change of a batch that crossed into the addon as a line
// of text, separated by single spaces: one string per change costs far
// less to read through N-API than each field of it. Read as Args reads a
// call's arguments, from field `first` on; a field is never empty. Touches
// no JS: a worker thread may read the batch.
class Fields {
 public:
  Fields(const std::string& line, size_t first, const char* fn);

  uint32_t Uint32(size_t i, const char* name, uint32_t min = 0, uint32_t max = UINT32_MAX) const;
  std::string String(size_t i, const char* name) const;
  // Throws unless the fields end at `count` (a field with a space in it ends later).
  void RequireCount(size_t count) const;

  [[noreturn]] void Fail(const char* name, const std::string& expected) const;

 private:
  std::vector<std::string> fields_;
  const char* fn_;
};

