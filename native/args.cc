#include "args.h"

#include <charconv>
#include <cmath>

Args::Args(const Napi::CallbackInfo& info, const char* fn) : env_(info.Env()), fn_(fn) {
  for (size_t i = 0; i < info.Length(); i++) values_.push_back(info[i]);
}

uint32_t Args::Uint32(size_t i, const char* name, uint32_t min, uint32_t max) const {
  Napi::Value v = At(i);
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (d >= min && d <= max && std::trunc(d) == d) return static_cast<uint32_t>(d);
  }
  Fail(name, "an integer from " + std::to_string(min) + " to " + std::to_string(max));
}

uint32_t Args::OptionalUint32(size_t i, const char* name, uint32_t fallback) const {
  return At(i).IsUndefined() ? fallback : Uint32(i, name);
}

std::string Args::String(size_t i, const char* name) const {
  if (!At(i).IsString()) Fail(name, "a string");
  return At(i).As<Napi::String>().Utf8Value();
}

std::vector<std::string> Args::Strings(size_t i, const char* name) const {
  if (!At(i).IsArray()) Fail(name, "an array of strings");
  Napi::Array array = At(i).As<Napi::Array>();
  std::vector<std::string> strings;
  for (uint32_t j = 0; j < array.Length(); j++) {
    Napi::Value v = array[j];
    if (!v.IsString()) Fail(name, "an array of strings");
    strings.push_back(v.As<Napi::String>().Utf8Value());
  }
  return strings;
}

Napi::Buffer<uint8_t> Args::Buffer(size_t i, const char* name) const {
  if (!At(i).IsBuffer()) Fail(name, "a Buffer");
  return At(i).As<Napi::Buffer<uint8_t>>();
}

namespace {

[[noreturn]] void FailArgument(const char* fn, const char* name, const std::string& expected) {
  throw ArgumentError(std::string(fn) + ": " + name + " must be " + expected);
}

}  // namespace

void Args::Fail(const char* name, const std::string& expected) const { FailArgument(fn_, name, expected); }

Fields::Fields(const std::string& line, size_t first, const char* fn) : fn_(fn) {
  size_t start = 0;
  for (size_t field = 0;; field++) {
    size_t end = line.find(' ', start);
    if (field >= first) fields_.push_back(line.substr(start, end - start));
    if (end == std::string::npos) break;
    start = end + 1;
  }
}

uint32_t Fields::Uint32(size_t i, const char* name, uint32_t min, uint32_t max) const {
  if (i < fields_.size()) {
    const std::string& text = fields_[i];
    uint32_t value = 0;
    auto [end, err] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (err == std::errc() && end == text.data() + text.size() && !text.empty() && value >= min && value <= max) return value;
  }
  Fail(name, "an integer from " + std::to_string(min) + " to " + std::to_string(max));
}

std::string Fields::String(size_t i, const char* name) const {
  if (i >= fields_.size() || fields_[i].empty()) Fail(name, "a string");
  return fields_[i];
}

void Fields::RequireCount(size_t count) const {
  if (fields_.size() != count) {
    throw ArgumentError(std::string(fn_) + ": change must have " + std::to_string(count) + " fields separated by single spaces, not " + std::to_string(fields_.size()));
  }
}

void Fields::Fail(const char* name, const std::string& expected) const { FailArgument(fn_, name, expected); }

