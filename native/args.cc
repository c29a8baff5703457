#include "args.h"

#include <cmath>

uint32_t Args::Uint32(size_t i, const char* name, uint32_t min, uint32_t max) const {
  Napi::Value v = info_[i];
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (d >= min && d <= max && std::trunc(d) == d) return static_cast<uint32_t>(d);
  }
  Fail(name, "an integer from " + std::to_string(min) + " to " + std::to_string(max));
}

uint32_t Args::OptionalUint32(size_t i, const char* name, uint32_t fallback) const {
  return info_[i].IsUndefined() ? fallback : Uint32(i, name);
}

std::string Args::String(size_t i, const char* name) const {
  if (!info_[i].IsString()) Fail(name, "a string");
  return info_[i].As<Napi::String>().Utf8Value();
}

std::vector<std::string> Args::Strings(size_t i, const char* name) const {
  if (!info_[i].IsArray()) Fail(name, "an array of strings");
  Napi::Array array = info_[i].As<Napi::Array>();
  std::vector<std::string> strings;
  for (uint32_t j = 0; j < array.Length(); j++) {
    Napi::Value v = array[j];
    if (!v.IsString()) Fail(name, "an array of strings");
    strings.push_back(v.As<Napi::String>().Utf8Value());
  }
  return strings;
}

Napi::Buffer<uint8_t> Args::Buffer(size_t i, const char* name) const {
  if (!info_[i].IsBuffer()) Fail(name, "a Buffer");
  return info_[i].As<Napi::Buffer<uint8_t>>();
}

void Args::Fail(const char* name, const std::string& expected) const {
  throw Napi::TypeError::New(Env(), std::string(fn_) + ": " + name + " must be " + expected);
}
